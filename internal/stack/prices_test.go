package stack_test

import (
	"context"
	"testing"

	"connectrpc.com/connect"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"google.golang.org/protobuf/types/known/timestamppb"

	inventoryeventsv1 "github.com/shopbus/shopbus/gen/go/ecommerce/inventory/v1"
	orderv1 "github.com/shopbus/shopbus/gen/go/shopbus/order/v1"
	"github.com/shopbus/shopbus/internal/event"
)

// TestServerOwnsPrices: the catalog's price reaches the order service as an
// event, and the order service prices orders with it. An order of 4 units
// that says no price (0) is priced 1250 a unit by the server and CONFIRMED
// at the right total; a price change reaches the order service and the
// orders after it use it, while the orders before keep theirs; an older
// price revision delivered after a newer one does not roll the price back.
// (The refused prices are in TestBadRPCRequests.)
func TestServerOwnsPrices(t *testing.T) {
	t.Parallel()
	s := startStack(t)
	ctx := context.Background()
	s.setStock(t, "MUG-001", 100)         // revision 1: unitPrice
	s.setPrice(t, "MUG-001", 1250, "EUR") // revision 2

	first := s.create(t, orderRequest(&orderv1.OrderLine{Sku: "MUG-001", Quantity: 4}))
	if first.GetTotalMinor() != 4*1250 || first.GetLines()[0].GetUnitPriceMinor() != 1250 {
		t.Errorf("an order at price 0: total %d, unit price %d; want %d and 1250", first.GetTotalMinor(), first.GetLines()[0].GetUnitPriceMinor(), 4*1250)
	}
	if o := s.await(t, first.GetOrderId()); o.GetStatus() != orderv1.OrderStatus_ORDER_STATUS_CONFIRMED || o.GetTotalMinor() != 4*1250 {
		t.Errorf("order %v total %d, want CONFIRMED at %d", o.GetStatus(), o.GetTotalMinor(), 4*1250)
	}

	s.setPrice(t, "MUG-001", 1300, "EUR") // revision 3
	if p := s.stock(t, "MUG-001").GetPrice(); p.GetUnitPriceMinor() != 1300 || p.GetCurrency() != "EUR" || p.GetRevision() != 3 {
		t.Errorf("GetStock reports the price %v, want 1300 EUR revision 3", p)
	}
	second := s.create(t, orderRequest(&orderv1.OrderLine{Sku: "MUG-001", Quantity: 2}))
	if second.GetTotalMinor() != 2600 {
		t.Errorf("an order after the price change: total %d, want 2600", second.GetTotalMinor())
	}
	res, err := s.orders.GetOrder(ctx, connect.NewRequest(&orderv1.GetOrderRequest{OrderId: first.GetOrderId()}))
	if err != nil || res.Msg.GetOrder().GetTotalMinor() != 4*1250 {
		t.Errorf("the first order after the price change: %v, %v; want its total %d unchanged", res, err, 4*1250)
	}

	// Revision 2 again, as a new event (a replay, a redrive of an old copy).
	env, err := event.New(ctx, &inventoryeventsv1.InventoryPriced{
		Sku: "MUG-001", UnitPrice: &inventoryeventsv1.Money{Currency: "EUR", AmountMinor: 1250}, Revision: 2, PricedAt: timestamppb.Now(),
	}, event.WithSource("shopbus/inventory"))
	if err != nil {
		t.Fatal(err)
	}
	data, _ := event.Encode(env)
	if _, err := s.JS.PublishMsg(ctx, &nats.Msg{Subject: "ecommerce.inventory.priced.v1.MUG-001", Data: data, Header: event.Headers(env)},
		jetstream.WithMsgID(env.GetId())); err != nil {
		t.Fatal(err)
	}
	s.awaitConsumed(t, "ECOMMERCE_INVENTORY", "order-apply-inventory-outcome")
	if n := s.count(t, "order", "SELECT count(*) FROM prices WHERE sku = 'MUG-001' AND unit_price_minor = 1300 AND revision = 3"); n != 1 {
		t.Error("an older revision delivered after a newer one changed the order service's price")
	}
	if o := s.create(t, orderRequest(&orderv1.OrderLine{Sku: "MUG-001", Quantity: 1})); o.GetTotalMinor() != 1300 {
		t.Errorf("an order after the old revision arrived: total %d, want 1300", o.GetTotalMinor())
	}
}
