package order

import (
	"context"
	"errors"
	"fmt"
	"time"

	"connectrpc.com/connect"
	"github.com/google/uuid"

	orderv1 "github.com/shopbus/shopbus/gen/go/shopbus/order/v1"
	"github.com/shopbus/shopbus/gen/go/shopbus/order/v1/orderv1connect"
	"github.com/shopbus/shopbus/internal/auth"
	"github.com/shopbus/shopbus/internal/servicekit"
)

// Handler serves the Connect OrderService from the Service. Requests are
// validated by the validation interceptor the server installs.
type Handler struct {
	svc    *Service
	limits Limits
	rate   rateLimiter
}

var _ orderv1connect.OrderServiceHandler = (*Handler)(nil)

// NewHandler returns the Connect handler of svc, holding each customer to
// limits (DefaultLimits where zero).
func NewHandler(svc *Service, limits Limits) (*Handler, error) {
	if err := limits.Validate(); err != nil {
		return nil, err
	}
	limits = limits.WithDefaults()
	return &Handler{svc: svc, limits: limits, rate: newRateLimiter(limits)}, nil
}

// CreateOrder implements orderv1connect.OrderServiceHandler. The order is
// the caller's: a customer may name only itself, an admin must name the
// customer.
func (h *Handler) CreateOrder(ctx context.Context, req *connect.Request[orderv1.CreateOrderRequest]) (*connect.Response[orderv1.CreateOrderResponse], error) {
	p, err := auth.Caller(ctx)
	if err != nil {
		return nil, err
	}
	switch {
	case !p.Admin:
		if req.Msg.CustomerId, err = ownCustomer(p, req.Msg.GetCustomerId(), "leave it empty"); err != nil {
			return nil, err
		}
	case req.Msg.GetCustomerId() == "":
		return nil, connect.NewError(connect.CodeInvalidArgument, errors.New("customer_id: an admin places an order for a customer: name it"))
	default:
		if id, err := uuid.Parse(req.Msg.GetCustomerId()); err == nil {
			req.Msg.CustomerId = id.String() // one customer, one bucket, however its id is cased
		}
	}
	if err := h.limits.checkUnits(req.Msg); err != nil {
		return nil, h.toConnect("CreateOrder", err)
	}
	if err := h.rate.allow(req.Msg.GetCustomerId(), time.Now()); err != nil {
		return nil, h.toConnect("CreateOrder", err)
	}
	o, replayed, err := h.svc.CreateOrder(ctx, req.Msg)
	if err != nil {
		return nil, h.toConnect("CreateOrder", err)
	}
	return connect.NewResponse(&orderv1.CreateOrderResponse{Order: seenBy(p, o), Replayed: replayed}), nil
}

// GetOrder implements orderv1connect.OrderServiceHandler.
func (h *Handler) GetOrder(ctx context.Context, req *connect.Request[orderv1.GetOrderRequest]) (*connect.Response[orderv1.GetOrderResponse], error) {
	p, err := auth.Caller(ctx)
	if err != nil {
		return nil, err
	}
	o, err := h.svc.GetOrder(ctx, req.Msg.GetOrderId())
	if err == nil && !p.ActsFor(o.GetCustomerId()) {
		err = notFound(req.Msg.GetOrderId()) // another's order is no business of the caller, nor is its existence
	}
	if err != nil {
		return nil, h.toConnect("GetOrder", err)
	}
	return connect.NewResponse(&orderv1.GetOrderResponse{Order: seenBy(p, o)}), nil
}

// ListOrders implements orderv1connect.OrderServiceHandler.
func (h *Handler) ListOrders(ctx context.Context, req *connect.Request[orderv1.ListOrdersRequest]) (*connect.Response[orderv1.ListOrdersResponse], error) {
	p, err := auth.Caller(ctx)
	if err != nil {
		return nil, err
	}
	if !p.Admin {
		if req.Msg.CustomerId, err = ownCustomer(p, req.Msg.GetCustomerId(), "a customer lists its own orders"); err != nil {
			return nil, err
		}
	}
	orders, next, err := h.svc.ListOrders(ctx, req.Msg)
	if err != nil {
		return nil, h.toConnect("ListOrders", err)
	}
	for i, o := range orders {
		orders[i] = seenBy(p, o)
	}
	return connect.NewResponse(&orderv1.ListOrdersResponse{Orders: orders, NextPageToken: next}), nil
}

// WatchOrder implements orderv1connect.OrderServiceHandler.
func (h *Handler) WatchOrder(ctx context.Context, req *connect.Request[orderv1.WatchOrderRequest], stream *connect.ServerStream[orderv1.WatchOrderResponse]) error {
	p, err := auth.Caller(ctx)
	if err != nil {
		return err
	}
	var sendErr error
	err = h.svc.WatchOrder(ctx, req.Msg.GetOrderId(), func(o *orderv1.Order) error {
		if !p.ActsFor(o.GetCustomerId()) {
			return notFound(o.GetOrderId())
		}
		sendErr = stream.Send(&orderv1.WatchOrderResponse{Order: seenBy(p, o)})
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

// ownCustomer is the customer a caller without the admin role acts for:
// itself, whatever a request names; a request naming another customer is
// PermissionDenied (hint says what to do instead), and so is a token whose
// subject is no customer.
func ownCustomer(p auth.Principal, named, hint string) (string, error) {
	own, err := p.Customer()
	if err != nil {
		return "", connect.NewError(connect.CodePermissionDenied, err)
	}
	if named != "" && !p.ActsFor(named) {
		return "", connect.NewError(connect.CodePermissionDenied, errors.New("customer_id names another customer than the bearer token's: "+hint))
	}
	return own, nil
}

// ReviewOrder implements orderv1connect.OrderServiceHandler. The gateway
// keeps it to the admin role (gateway.IsAdmin).
func (h *Handler) ReviewOrder(ctx context.Context, req *connect.Request[orderv1.ReviewOrderRequest]) (*connect.Response[orderv1.ReviewOrderResponse], error) {
	o, err := h.svc.ReviewOrder(ctx, req.Msg.GetOrderId(), req.Msg.GetApprove(), req.Msg.GetNote())
	if err != nil {
		return nil, h.toConnect("ReviewOrder", err)
	}
	return connect.NewResponse(&orderv1.ReviewOrderResponse{Order: o}), nil
}

// notFound is GetOrder's error for an order that does not exist.
func notFound(id string) error { return fmt.Errorf("%w: %s", ErrNotFound, id) }

// toConnect maps domain errors to Connect codes. Anything unexpected is
// logged in full and reaches the client as Unavailable (retry) or Internal,
// without database text.
func (h *Handler) toConnect(method string, err error) error {
	return servicekit.Errors{Service: "order", Log: h.svc.Log, Retry: "retry (with the same idempotency key)", Codes: []servicekit.Code{
		{Err: ErrNotFound, Code: connect.CodeNotFound},
		{Err: ErrIdempotencyKeyReused, Code: connect.CodeAlreadyExists},
		{Err: ErrBadPageToken, Code: connect.CodeInvalidArgument},
		{Err: ErrInvalidOrder, Code: connect.CodeInvalidArgument},
		{Err: ErrTooManyUnits, Code: connect.CodeInvalidArgument},
		{Err: ErrPriceMismatch, Code: connect.CodeFailedPrecondition},
		{Err: ErrCurrencyMismatch, Code: connect.CodeFailedPrecondition},
		{Err: ErrUnpriced, Code: connect.CodeFailedPrecondition},
		{Err: ErrStopping, Code: connect.CodeUnavailable},
		{Err: ErrNotInReview, Code: connect.CodeFailedPrecondition},
	}}.Connect(method, err)
}

// seenBy is o as p may see it: whole for the admin role, customerView for
// anyone else.
func seenBy(p auth.Principal, o *orderv1.Order) *orderv1.Order {
	if p.Admin {
		return o
	}
	return customerView(o)
}
