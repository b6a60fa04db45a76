package order

import (
	"context"
	"errors"
	"log/slog"

	"connectrpc.com/connect"

	orderv1 "github.com/shopbus/shopbus/gen/go/shopbus/order/v1"
	"github.com/shopbus/shopbus/gen/go/shopbus/order/v1/orderv1connect"
	"github.com/shopbus/shopbus/internal/postgres"
)

// Handler serves the Connect OrderService from the Service. Requests are
// validated by the validation interceptor the server installs.
type Handler struct {
	svc *Service
}

var _ orderv1connect.OrderServiceHandler = (*Handler)(nil)

// NewHandler returns the Connect handler of svc.
func NewHandler(svc *Service) *Handler { return &Handler{svc: svc} }

// CreateOrder implements orderv1connect.OrderServiceHandler.
func (h *Handler) CreateOrder(ctx context.Context, req *connect.Request[orderv1.CreateOrderRequest]) (*connect.Response[orderv1.CreateOrderResponse], error) {
	o, replayed, err := h.svc.CreateOrder(ctx, req.Msg)
	if err != nil {
		return nil, h.toConnect("CreateOrder", err)
	}
	return connect.NewResponse(&orderv1.CreateOrderResponse{Order: o, Replayed: replayed}), nil
}

// GetOrder implements orderv1connect.OrderServiceHandler.
func (h *Handler) GetOrder(ctx context.Context, req *connect.Request[orderv1.GetOrderRequest]) (*connect.Response[orderv1.GetOrderResponse], error) {
	o, err := h.svc.GetOrder(ctx, req.Msg.GetOrderId())
	if err != nil {
		return nil, h.toConnect("GetOrder", err)
	}
	return connect.NewResponse(&orderv1.GetOrderResponse{Order: o}), nil
}

// ListOrders implements orderv1connect.OrderServiceHandler.
func (h *Handler) ListOrders(ctx context.Context, req *connect.Request[orderv1.ListOrdersRequest]) (*connect.Response[orderv1.ListOrdersResponse], error) {
	orders, next, err := h.svc.ListOrders(ctx, req.Msg)
	if err != nil {
		return nil, h.toConnect("ListOrders", err)
	}
	return connect.NewResponse(&orderv1.ListOrdersResponse{Orders: orders, NextPageToken: next}), nil
}

// WatchOrder implements orderv1connect.OrderServiceHandler.
func (h *Handler) WatchOrder(ctx context.Context, req *connect.Request[orderv1.WatchOrderRequest], stream *connect.ServerStream[orderv1.WatchOrderResponse]) error {
	var sendErr error
	err := h.svc.WatchOrder(ctx, req.Msg.GetOrderId(), func(o *orderv1.Order) error {
		sendErr = stream.Send(&orderv1.WatchOrderResponse{Order: o})
		return sendErr
	})
	if sendErr != nil {
		return sendErr // the caller is gone: nothing to map
	}
	if err != nil {
		return h.toConnect("WatchOrder", err)
	}
	return nil
}

// toConnect maps domain errors to Connect codes. Anything unexpected is
// logged in full and reaches the client as Unavailable (retry) or Internal,
// without database text.
func (h *Handler) toConnect(method string, err error) error {
	switch {
	case errors.Is(err, ErrNotFound):
		return connect.NewError(connect.CodeNotFound, err)
	case errors.Is(err, ErrIdempotencyKeyReused):
		return connect.NewError(connect.CodeAlreadyExists, err)
	case errors.Is(err, ErrBadPageToken), errors.Is(err, ErrInvalidOrder):
		return connect.NewError(connect.CodeInvalidArgument, err)
	case errors.Is(err, ErrPriceMismatch), errors.Is(err, ErrCurrencyMismatch), errors.Is(err, ErrUnpriced):
		return connect.NewError(connect.CodeFailedPrecondition, err)
	case errors.Is(err, ErrStopping):
		return connect.NewError(connect.CodeUnavailable, err)
	case errors.Is(err, context.Canceled):
		return connect.NewError(connect.CodeCanceled, err)
	case errors.Is(err, context.DeadlineExceeded):
		return connect.NewError(connect.CodeDeadlineExceeded, err)
	}
	h.svc.log.Error("order: "+method+" failed", slog.Any("err", err))
	if postgres.IsUnavailable(err) {
		return connect.NewError(connect.CodeUnavailable, errors.New("the order database is unavailable; retry (with the same idempotency key)"))
	}
	return connect.NewError(connect.CodeInternal, errors.New("internal error in the order service"))
}
