package lag

import (
	"context"
	"errors"
	"fmt"

	"connectrpc.com/connect"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	lagv1 "github.com/shopbus/shopbus/gen/go/shopbus/lag/v1"
	"github.com/shopbus/shopbus/gen/go/shopbus/lag/v1/lagv1connect"
)

// ErrNotFound means the monitor watches no consumer group of the name asked
// for.
var ErrNotFound = errors.New("no such consumer group")

// Handler serves the admin LagService from a Monitor.
type Handler struct{ m *Monitor }

var _ lagv1connect.LagServiceHandler = (*Handler)(nil)

// NewHandler returns the Connect handler of m's figures.
func NewHandler(m *Monitor) *Handler { return &Handler{m: m} }

// ListConsumerLag implements lagv1connect.LagServiceHandler.
func (h *Handler) ListConsumerLag(_ context.Context, req *connect.Request[lagv1.ListConsumerLagRequest]) (*connect.Response[lagv1.ListConsumerLagResponse], error) {
	consumers, at := h.m.Consumers()
	if at.IsZero() {
		return nil, connect.NewError(connect.CodeUnavailable, errors.New("the lag monitor has not sampled the consumers yet; retry"))
	}
	res := &lagv1.ListConsumerLagResponse{SampledAt: timestamppb.New(at), Window: durationpb.New(h.m.Window())}
	group := req.Msg.GetGroup()
	for _, c := range consumers {
		if group == "" || c.Group == group {
			res.Consumers = append(res.Consumers, toProto(c))
		}
	}
	if group != "" && len(res.Consumers) == 0 {
		return nil, connect.NewError(connect.CodeNotFound, fmt.Errorf("%w: %q", ErrNotFound, group))
	}
	return connect.NewResponse(res), nil
}

func toProto(c Consumer) *lagv1.ConsumerLag {
	pc := &lagv1.ConsumerLag{
		Group: c.Group, Stream: c.Stream, Strategy: string(c.Strategy), Status: statusProto(c.Status),
		Lag: c.Lag, LagAge: durationpb.New(c.Age), Rate: c.Rate, Members: uint32(max(c.Members, 0)),
	}
	for _, p := range c.Partitions {
		pp := &lagv1.PartitionLag{
			Partition: p.Label, Consumer: p.Durable, Owner: p.Owner, Status: statusProto(p.Status),
			Pending: p.Latest.Pending, AckPending: p.Latest.AckPending, Redelivered: p.Latest.Redelivered,
			LagAge: durationpb.New(p.Latest.Age),
		}
		if p.Latest.Err != nil {
			pp.Error = p.Latest.Err.Error()
		}
		pc.Partitions = append(pc.Partitions, pp)
	}
	return pc
}

func statusProto(s Status) lagv1.Status {
	switch s {
	case OK:
		return lagv1.Status_STATUS_OK
	case WARN:
		return lagv1.Status_STATUS_WARN
	case STALL:
		return lagv1.Status_STATUS_STALL
	case STOP:
		return lagv1.Status_STATUS_STOP
	case ERR:
		return lagv1.Status_STATUS_ERR
	}
	return lagv1.Status_STATUS_UNSPECIFIED
}
