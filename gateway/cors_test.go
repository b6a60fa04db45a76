package gateway_test

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"connectrpc.com/connect"

	"github.com/shopbus/shopbus/gateway"
	orderv1 "github.com/shopbus/shopbus/gen/go/shopbus/order/v1"
	"github.com/shopbus/shopbus/gen/go/shopbus/order/v1/orderv1connect"
	"github.com/shopbus/shopbus/internal/auth"
)

// TestCORSAllowlist: without allowed origins the gateway sends no CORS
// headers, so a browser on any other origin is refused; with a list, only
// its origins are allowed.
func TestCORSAllowlist(t *testing.T) {
	t.Parallel()
	preflight := func(h http.Handler, origin string) string {
		req := httptest.NewRequest(http.MethodOptions, "/shopbus.inventory.v1.InventoryService/SetStock", nil)
		req.Header.Set("Origin", origin)
		req.Header.Set("Access-Control-Request-Method", http.MethodPost)
		req.Header.Set("Access-Control-Request-Headers", "authorization,content-type") // as browsers send them: lower case, sorted
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		return rec.Header().Get("Access-Control-Allow-Origin")
	}
	closed := gateway.Handler(gateway.Config{})
	if got := preflight(closed, "https://evil.example"); got != "" {
		t.Errorf("no allowed origins: a preflight from evil.example got Access-Control-Allow-Origin %q", got)
	}
	listed := gateway.Handler(gateway.Config{AllowedOrigins: []string{"https://shop.example"}})
	if got := preflight(listed, "https://shop.example"); got != "https://shop.example" {
		t.Errorf("an allowed origin got Access-Control-Allow-Origin %q", got)
	}
	if got := preflight(listed, "https://evil.example"); got != "" {
		t.Errorf("an origin not in the list got Access-Control-Allow-Origin %q", got)
	}
}

// deadlineSeen reports the deadline GetOrder's context had.
type deadlineSeen struct {
	orderv1connect.UnimplementedOrderServiceHandler
	left chan time.Duration
}

func (d deadlineSeen) GetOrder(ctx context.Context, _ *connect.Request[orderv1.GetOrderRequest]) (*connect.Response[orderv1.GetOrderResponse], error) {
	deadline, ok := ctx.Deadline()
	if !ok {
		d.left <- -1
	} else {
		d.left <- time.Until(deadline)
	}
	return nil, connect.NewError(connect.CodeNotFound, errors.New("none"))
}

// TestEveryCallHasADeadline: a call whose client sets no deadline still has
// one on the server, at most MaxCallDuration.
func TestEveryCallHasADeadline(t *testing.T) {
	t.Parallel()
	seen := deadlineSeen{left: make(chan time.Duration, 1)}
	srv := httptest.NewServer(gateway.Handler(gateway.Config{Orders: seen, Auth: auth.Config{Insecure: true}}))
	defer srv.Close()
	client := orderv1connect.NewOrderServiceClient(srv.Client(), srv.URL)
	_, _ = client.GetOrder(context.Background(), connect.NewRequest(&orderv1.GetOrderRequest{OrderId: "0193a5e2-7c1d-7b3e-9f4a-2d6c8e0f1a2b"}))
	if left := <-seen.left; left <= 0 || left > gateway.MaxCallDuration {
		t.Errorf("the handler's context had %v left, want a deadline within %v", left, gateway.MaxCallDuration)
	}
}
