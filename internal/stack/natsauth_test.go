package stack_test

import (
	"context"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"google.golang.org/protobuf/types/known/timestamppb"

	inventoryeventsv1 "github.com/shopbus/shopbus/gen/go/ecommerce/inventory/v1"
	orderv1 "github.com/shopbus/shopbus/gen/go/shopbus/order/v1"
	"github.com/shopbus/shopbus/internal/event"
	"github.com/shopbus/shopbus/internal/natsauth"
	"github.com/shopbus/shopbus/internal/stack"
)

// TestNATSIdentities: with the embedded server closed to all but shopbus's
// identities (what shopbus dev runs, and every test stack), orders flow,
// an anonymous client cannot connect, and the order service's identity
// cannot publish an inventory event: the server refuses the forgery,
// nothing is stored.
func TestNATSIdentities(t *testing.T) {
	var keys string
	s := startStack(t, func(c *stack.Config) { keys = c.NATSKeysDir })
	s.setStock(t, "MUG-001", 5)
	if o := s.await(t, s.create(t, orderRequest(line("MUG-001", 2))).GetOrderId()); o.GetStatus() != orderv1.OrderStatus_ORDER_STATUS_CONFIRMED {
		t.Fatalf("order %v with identities on, want CONFIRMED", o.GetStatus())
	}

	if nc, err := nats.Connect(s.NATS.ClientURL()); err == nil {
		nc.Close()
		t.Error("an anonymous client connected")
	}

	k, err := natsauth.LoadOrCreate(keys)
	if err != nil {
		t.Fatal(err)
	}
	asOrder, err := k.Option(natsauth.Order)
	if err != nil {
		t.Fatal(err)
	}
	nc, err := nats.Connect(s.NATS.ClientURL(), asOrder)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, _ := jetstream.New(nc)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	before := streamMsgs(t, s.JS, "ECOMMERCE_INVENTORY")
	forged, err := event.New(ctx, &inventoryeventsv1.InventoryAdjusted{
		OrderId: "0193a5e2-7c1d-7b3e-9f4a-2d6c8e0f1a2b", AdjustedAt: timestamppb.Now(),
		Reservations: []*inventoryeventsv1.Reservation{{Sku: "MUG-001", Quantity: 1}},
	}, event.WithSource("shopbus/inventory")) // the right name: only the identity gives it away
	if err != nil {
		t.Fatal(err)
	}
	data, _ := event.Encode(forged)
	if _, err := js.PublishMsg(ctx, &nats.Msg{Subject: "ecommerce.inventory.adjusted.v1." + forged.GetPartitionKey(), Data: data, Header: event.Headers(forged)}); err == nil {
		t.Error("the order service's identity published an inventory event")
	}
	if after := streamMsgs(t, s.JS, "ECOMMERCE_INVENTORY"); after != before {
		t.Errorf("ECOMMERCE_INVENTORY went from %d to %d messages", before, after)
	}
}

func streamMsgs(t *testing.T, js jetstream.JetStream, name string) uint64 {
	t.Helper()
	st, err := js.Stream(context.Background(), name)
	if err != nil {
		t.Fatal(err)
	}
	info, err := st.Info(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return info.State.Msgs
}
