package gateway

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strings"

	"connectrpc.com/connect"

	"github.com/shopbus/shopbus/gen/go/shopbus/inventory/v1/inventoryv1connect"
	orderv1 "github.com/shopbus/shopbus/gen/go/shopbus/order/v1"
	"github.com/shopbus/shopbus/gen/go/shopbus/order/v1/orderv1connect"
	"github.com/shopbus/shopbus/internal/auth"
	"github.com/shopbus/shopbus/internal/telemetry"
)

// Remote returns handlers that forward to services at their base URLs
// through the generated Connect clients (distributed mode). The generated
// client and handler interfaces have the same methods, so a client is a
// handler. Calls carry the caller's bearer token (which the service
// verifies again), the trace (traceparent) and a client span on t. A
// service's own errors reach the caller as it sent them; the gateway's
// failures to reach it (a refused connection, a DNS or certificate error:
// text that names internal addresses) are logged on log and reach the
// caller as "<service> is unavailable" (Unavailable, or their own code when
// it says more, such as DeadlineExceeded).
func Remote(client connect.HTTPClient, ordersURL, inventoryURL string, t *telemetry.Telemetry, log *slog.Logger) (orderv1connect.OrderServiceHandler, inventoryv1connect.InventoryServiceHandler) {
	opts := []connect.ClientOption{connect.WithInterceptors(upstream{log}, auth.ForwardToken(), otelInterceptor(t))}
	return remoteOrders{orderv1connect.NewOrderServiceClient(client, ordersURL, opts...)},
		inventoryv1connect.NewInventoryServiceClient(client, inventoryURL, opts...)
}

// remoteOrders is the OrderService client as a handler: the unary methods
// are the same, and WatchOrder relays the service's stream to the caller.
type remoteOrders struct {
	orderv1connect.OrderServiceClient
}

// WatchOrder implements orderv1connect.OrderServiceHandler.
func (r remoteOrders) WatchOrder(ctx context.Context, req *connect.Request[orderv1.WatchOrderRequest], stream *connect.ServerStream[orderv1.WatchOrderResponse]) error {
	// A new request: the caller's headers (cookies …) are not the
	// service's business; auth.ForwardToken adds its bearer token.
	in, err := r.OrderServiceClient.WatchOrder(ctx, connect.NewRequest(req.Msg))
	if err != nil {
		return err
	}
	defer in.Close()
	for in.Receive() {
		if err := stream.Send(in.Msg()); err != nil {
			return err
		}
	}
	return in.Err()
}

// upstream is the client interceptor that keeps the gateway's own failures
// to reach a service from its callers (Remote).
type upstream struct{ log *slog.Logger }

// hide returns err when the service sent it (or it ends a stream), and
// otherwise logs it and returns its code with a message that names the
// service only.
func (u upstream) hide(procedure string, err error) error {
	if err == nil || errors.Is(err, io.EOF) || connect.IsWireError(err) {
		return err
	}
	service, _, _ := strings.Cut(strings.TrimPrefix(procedure, "/"), "/")
	code := connect.CodeOf(err)
	if code == connect.CodeCanceled || code == connect.CodeDeadlineExceeded {
		return connect.NewError(code, fmt.Errorf("calling %s: %s", service, code))
	}
	u.log.Warn("gateway: calling a service failed", "procedure", procedure, "err", err)
	if code == connect.CodeUnknown || code == connect.CodeInternal {
		code = connect.CodeUnavailable
	}
	return connect.NewError(code, fmt.Errorf("%s is unavailable", service))
}

// WrapUnary implements connect.Interceptor.
func (u upstream) WrapUnary(next connect.UnaryFunc) connect.UnaryFunc {
	return func(ctx context.Context, req connect.AnyRequest) (connect.AnyResponse, error) {
		res, err := next(ctx, req)
		return res, u.hide(req.Spec().Procedure, err)
	}
}

// WrapStreamingClient implements connect.Interceptor.
func (u upstream) WrapStreamingClient(next connect.StreamingClientFunc) connect.StreamingClientFunc {
	return func(ctx context.Context, spec connect.Spec) connect.StreamingClientConn {
		return hiddenConn{next(ctx, spec), func(err error) error { return u.hide(spec.Procedure, err) }}
	}
}

// WrapStreamingHandler implements connect.Interceptor (nothing to do).
func (upstream) WrapStreamingHandler(next connect.StreamingHandlerFunc) connect.StreamingHandlerFunc {
	return next
}

// hiddenConn is a client stream whose errors pass through hide.
type hiddenConn struct {
	connect.StreamingClientConn
	hide func(error) error
}

// Send implements connect.StreamingClientConn.
func (c hiddenConn) Send(msg any) error { return c.hide(c.StreamingClientConn.Send(msg)) }

// Receive implements connect.StreamingClientConn.
func (c hiddenConn) Receive(msg any) error { return c.hide(c.StreamingClientConn.Receive(msg)) }

// CloseResponse implements connect.StreamingClientConn.
func (c hiddenConn) CloseResponse() error { return c.hide(c.StreamingClientConn.CloseResponse()) }
