package telemetry

import (
	"context"
	"errors"
	"fmt"

	"connectrpc.com/connect"

	telemetryv1 "github.com/shopbus/shopbus/gen/go/shopbus/telemetry/v1"
	"github.com/shopbus/shopbus/gen/go/shopbus/telemetry/v1/telemetryv1connect"
	"github.com/shopbus/shopbus/internal/auth"
	"github.com/shopbus/shopbus/internal/servicekit"
)

// Handler serves the Connect TelemetryService from the Service. Requests are
// validated by the validation interceptor the server installs; the
// gateway keeps GetDeviceStats to the admin role (gateway.IsAdmin), and
// Handler lets a caller ingest only for the devices it acts for: a
// device's token its own, the admin role any (auth.Principal.ActsForDevice).
type Handler struct {
	svc *Service
}

var _ telemetryv1connect.TelemetryServiceHandler = (*Handler)(nil)

// NewHandler returns the Connect handler of svc.
func NewHandler(svc *Service) *Handler { return &Handler{svc: svc} }

// IngestReadings implements telemetryv1connect.TelemetryServiceHandler.
func (h *Handler) IngestReadings(ctx context.Context, stream *connect.ClientStream[telemetryv1.IngestReadingsRequest]) (*connect.Response[telemetryv1.IngestReadingsResponse], error) {
	p, err := auth.Caller(ctx)
	if err != nil {
		return nil, err
	}
	in := h.svc.NewIngestion()
	for stream.Receive() {
		b := stream.Msg().GetBatch()
		if err := mayIngest(p, b); err != nil {
			return nil, err
		}
		if err := in.Add(ctx, b); err != nil {
			return nil, h.toConnect("IngestReadings", err)
		}
	}
	if err := stream.Err(); err != nil {
		return nil, err // a bad message (InvalidArgument), a message too large, the client gone
	}
	n, err := in.Wait(ctx)
	if err != nil {
		return nil, h.toConnect("IngestReadings", err)
	}
	return connect.NewResponse(&telemetryv1.IngestReadingsResponse{Accepted: n.Accepted, Duplicates: n.Duplicates, Readings: n.Readings}), nil
}

// IngestBatch implements telemetryv1connect.TelemetryServiceHandler.
func (h *Handler) IngestBatch(ctx context.Context, req *connect.Request[telemetryv1.IngestBatchRequest]) (*connect.Response[telemetryv1.IngestBatchResponse], error) {
	p, err := auth.Caller(ctx)
	if err != nil {
		return nil, err
	}
	for _, b := range req.Msg.GetBatches() {
		if err := mayIngest(p, b); err != nil {
			return nil, err
		}
	}
	n, err := h.svc.IngestBatch(ctx, req.Msg.GetBatches())
	if err != nil {
		return nil, h.toConnect("IngestBatch", err)
	}
	return connect.NewResponse(&telemetryv1.IngestBatchResponse{Accepted: n.Accepted, Duplicates: n.Duplicates, Readings: n.Readings}), nil
}

// GetDeviceStats implements telemetryv1connect.TelemetryServiceHandler.
func (h *Handler) GetDeviceStats(ctx context.Context, req *connect.Request[telemetryv1.GetDeviceStatsRequest]) (*connect.Response[telemetryv1.GetDeviceStatsResponse], error) {
	rollups, next, err := h.svc.GetDeviceStats(ctx, req.Msg)
	if err != nil {
		return nil, h.toConnect("GetDeviceStats", err)
	}
	return connect.NewResponse(&telemetryv1.GetDeviceStatsResponse{Rollups: rollups, NextPageToken: next}), nil
}

// mayIngest refuses a batch of a device p does not act for: a device's
// token ("kind": "device", its subject the device id) sends its own
// readings, the admin role (a device gateway) anyone's, and a user's token
// none.
func mayIngest(p auth.Principal, b *telemetryv1.ReadingBatch) error {
	if p.ActsForDevice(b.GetDeviceId()) {
		return nil
	}
	if _, err := p.Device(); err != nil {
		return connect.NewError(connect.CodePermissionDenied, fmt.Errorf("device_id %s: %w", b.GetDeviceId(), err))
	}
	return connect.NewError(connect.CodePermissionDenied,
		errors.New("device_id "+b.GetDeviceId()+" is not the bearer token's device: a device sends its own readings, a device gateway needs the admin role"))
}

// toConnect maps domain errors to Connect codes; anything unexpected is
// logged in full and reaches the client without database text.
func (h *Handler) toConnect(method string, err error) error {
	return servicekit.Errors{Service: "telemetry", Log: h.svc.Log, Retry: "send the batches again (those stored are dropped as duplicates)", Codes: []servicekit.Code{
		{Err: ErrInvalid, Code: connect.CodeInvalidArgument},
		{Err: ErrRateLimited, Code: connect.CodeResourceExhausted},
		{Err: ErrTooManyDevices, Code: connect.CodeResourceExhausted},
		{Err: ErrBacklog, Code: connect.CodeUnavailable},
	}}.Connect(method, err)
}
