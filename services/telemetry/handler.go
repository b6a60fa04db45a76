package telemetry

import (
	"context"

	"connectrpc.com/connect"

	telemetryv1 "github.com/shopbus/shopbus/gen/go/shopbus/telemetry/v1"
	"github.com/shopbus/shopbus/gen/go/shopbus/telemetry/v1/telemetryv1connect"
	"github.com/shopbus/shopbus/internal/servicekit"
)

// Handler serves the Connect TelemetryService from the Service. Requests are
// validated by the validation interceptor the server installs.
type Handler struct {
	svc *Service
}

var _ telemetryv1connect.TelemetryServiceHandler = (*Handler)(nil)

// NewHandler returns the Connect handler of svc.
func NewHandler(svc *Service) *Handler { return &Handler{svc: svc} }

// GetTelemetryActivity implements telemetryv1connect.TelemetryServiceHandler.
func (h *Handler) GetTelemetryActivity(ctx context.Context, req *connect.Request[telemetryv1.GetTelemetryActivityRequest]) (*connect.Response[telemetryv1.GetTelemetryActivityResponse], error) {
	a, err := h.svc.GetTelemetryActivity(ctx, req.Msg.GetKey())
	if err != nil {
		return nil, h.toConnect("GetTelemetryActivity", err)
	}
	return connect.NewResponse(&telemetryv1.GetTelemetryActivityResponse{Activity: a}), nil
}

// toConnect maps domain errors to Connect codes; anything unexpected is
// logged in full and reaches the client without database text.
func (h *Handler) toConnect(method string, err error) error {
	return servicekit.Errors{Service: "telemetry", Log: h.svc.Log, Codes: []servicekit.Code{
		{Err: ErrNotFound, Code: connect.CodeNotFound},
	}}.Connect(method, err)
}
