package main

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"

	"connectrpc.com/connect"

	inventoryv1 "github.com/shopbus/shopbus/gen/go/shopbus/inventory/v1"
	"github.com/shopbus/shopbus/gen/go/shopbus/inventory/v1/inventoryv1connect"
	orderv1 "github.com/shopbus/shopbus/gen/go/shopbus/order/v1"
	"github.com/shopbus/shopbus/gen/go/shopbus/order/v1/orderv1connect"
)

// failingGateway prices the catalog (the bench's first CreateOrder
// succeeds), then answers every CreateOrder with unavailable, counting them.
type failingGateway struct {
	orderv1connect.UnimplementedOrderServiceHandler
	inventoryv1connect.UnimplementedInventoryServiceHandler
	priced atomic.Bool
	failed atomic.Int64
}

func (g *failingGateway) CreateOrder(context.Context, *connect.Request[orderv1.CreateOrderRequest]) (*connect.Response[orderv1.CreateOrderResponse], error) {
	if g.priced.CompareAndSwap(false, true) {
		return connect.NewResponse(&orderv1.CreateOrderResponse{Order: &orderv1.Order{OrderId: "0193a5e2-7c1d-7b3e-9f4a-2d6c8e0f1a2b"}}), nil
	}
	g.failed.Add(1)
	return nil, connect.NewError(connect.CodeUnavailable, errors.New("down"))
}

func (g *failingGateway) SetStock(context.Context, *connect.Request[inventoryv1.SetStockRequest]) (*connect.Response[inventoryv1.SetStockResponse], error) {
	return connect.NewResponse(&inventoryv1.SetStockResponse{}), nil
}

func (g *failingGateway) SetPrice(context.Context, *connect.Request[inventoryv1.SetPriceRequest]) (*connect.Response[inventoryv1.SetPriceResponse], error) {
	return connect.NewResponse(&inventoryv1.SetPriceResponse{}), nil
}

// TestBenchBacksOff: against a gateway whose CreateOrder always fails, a
// closed-loop client waits longer after each failure (issue 12: it used to
// retry at once, 10-14k failed calls in a 3 s outage). The back-off's
// shortest waits (125, 250, 500, 1000 ms, then 2 s) allow at most five calls
// per client in 3 s; without it there are thousands.
func TestBenchBacksOff(t *testing.T) {
	g := &failingGateway{}
	mux := http.NewServeMux()
	mux.Handle(orderv1connect.NewOrderServiceHandler(g))
	mux.Handle(inventoryv1connect.NewInventoryServiceHandler(g))
	srv := httptest.NewServer(mux)
	defer srv.Close()
	t.Setenv("SHOPBUS_ADMIN_TOKEN", "")
	t.Setenv("SHOPBUS_ADMIN_TOKEN_FILE", "")
	const clients = 2
	err := bench(context.Background(), []string{"--url", srv.URL, "--clients", "2", "--duration", "3s", "--warmup", "0s", "--skus", "1", "--metrics", ""})
	if err == nil || !strings.Contains(err.Error(), "no order was confirmed") {
		t.Fatalf("bench against a failing gateway: %v; want no order confirmed", err)
	}
	if n := g.failed.Load(); n < clients || n > 5*clients {
		t.Errorf("%d failed CreateOrder calls from %d clients in 3 s; want between %d and %d (a back-off)", n, clients, clients, 5*clients)
	}
}
