package gateway_test

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"connectrpc.com/connect"

	"github.com/shopbus/shopbus/gateway"
	inventoryv1 "github.com/shopbus/shopbus/gen/go/shopbus/inventory/v1"
	"github.com/shopbus/shopbus/gen/go/shopbus/inventory/v1/inventoryv1connect"
	orderv1 "github.com/shopbus/shopbus/gen/go/shopbus/order/v1"
	"github.com/shopbus/shopbus/gen/go/shopbus/order/v1/orderv1connect"
	"github.com/shopbus/shopbus/internal/auth"
)

// notFound is an inventory service whose every GetStock is NotFound.
type notFound struct {
	inventoryv1connect.UnimplementedInventoryServiceHandler
}

func (notFound) GetStock(_ context.Context, req *connect.Request[inventoryv1.GetStockRequest]) (*connect.Response[inventoryv1.GetStockResponse], error) {
	return nil, connect.NewError(connect.CodeNotFound, errors.New("SKU not found: "+req.Msg.GetSku()))
}

// TestRemoteHidesTransportErrors: in distributed mode, a caller reads a
// service's own error as the service sent it, and the gateway's failure to
// reach a service as Unavailable naming the service, never the internal
// address it dialled (which the log keeps), for unary calls and streams.
func TestRemoteHidesTransportErrors(t *testing.T) {
	t.Parallel()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	dead := "http://" + l.Addr().String() // an internal address, closed
	l.Close()
	mux := http.NewServeMux()
	mux.Handle(inventoryv1connect.NewInventoryServiceHandler(notFound{}))
	live := httptest.NewServer(mux)
	defer live.Close()

	var log strings.Builder
	call := func(ordersURL, inventoryURL string) (inventoryv1connect.InventoryServiceClient, orderv1connect.OrderServiceClient) {
		orders, inventory := gateway.Remote(http.DefaultClient, ordersURL, inventoryURL, nil, slog.New(slog.NewTextHandler(&log, nil)))
		srv := httptest.NewServer(gateway.Handler(gateway.Config{Orders: orders, Inventory: inventory, Auth: auth.Config{AdminToken: "s3cret-admin"}}))
		t.Cleanup(srv.Close)
		opt := connect.WithInterceptors(gateway.BearerToken("s3cret-admin"))
		return inventoryv1connect.NewInventoryServiceClient(srv.Client(), srv.URL, opt), orderv1connect.NewOrderServiceClient(srv.Client(), srv.URL, opt)
	}
	ctx := context.Background()

	inventory, orders := call(dead, dead)
	_, err = inventory.GetStock(ctx, connect.NewRequest(&inventoryv1.GetStockRequest{Sku: "MUG-001"}))
	if connect.CodeOf(err) != connect.CodeUnavailable || !strings.Contains(err.Error(), "shopbus.inventory.v1.InventoryService is unavailable") ||
		strings.Contains(err.Error(), l.Addr().String()) {
		t.Errorf("GetStock, inventory down: %v, want unavailable naming the service and not its address", err)
	}
	stream, err := orders.WatchOrder(ctx, connect.NewRequest(&orderv1.WatchOrderRequest{OrderId: "0190b1a8-7c2e-7d3f-9a4b-5c6d7e8f9a0b"}))
	if err == nil {
		for stream.Receive() {
		}
		err = stream.Err()
		stream.Close()
	}
	if connect.CodeOf(err) != connect.CodeUnavailable || strings.Contains(err.Error(), l.Addr().String()) {
		t.Errorf("WatchOrder, orders down: %v, want unavailable without the service's address", err)
	}
	if !strings.Contains(log.String(), l.Addr().String()) {
		t.Errorf("the log does not name the address the gateway could not reach:\n%s", log.String())
	}

	inventory, _ = call(dead, live.URL)
	_, err = inventory.GetStock(ctx, connect.NewRequest(&inventoryv1.GetStockRequest{Sku: "NOPE-404"}))
	if connect.CodeOf(err) != connect.CodeNotFound || !strings.Contains(err.Error(), "SKU not found: NOPE-404") {
		t.Errorf("GetStock, the service's NotFound: %v, want it as the service sent it", err)
	}
}
