package stack_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	inventoryeventsv1 "github.com/shopbus/shopbus/gen/go/ecommerce/inventory/v1"
	orderv1 "github.com/shopbus/shopbus/gen/go/shopbus/order/v1"
	"github.com/shopbus/shopbus/internal/deadletter"
	"github.com/shopbus/shopbus/internal/messaging"
	"github.com/shopbus/shopbus/internal/servicekit"
	"github.com/shopbus/shopbus/internal/testenv"
	"github.com/shopbus/shopbus/services"
	"github.com/shopbus/shopbus/services/fraud"
	"github.com/shopbus/shopbus/services/inventory"
	"github.com/shopbus/shopbus/services/order"
)

// TestWatchdogRecoversStuckOrders: two orders lose an event on the way and
// stay PENDING; the order service's watchdog recovers both, each once
// (issue 12). Order A's order.created is deleted from its stream before
// inventory and fraud see it: the watchdog publishes it again from the
// outbox. Order B's inventory outcome is dead-lettered by the order
// service's consumer (its score arrives): the watchdog finds the outcome in
// the inventory stream and applies it. A second look
// finds nothing to do, and stock is reserved once per order.
func TestWatchdogRecoversStuckOrders(t *testing.T) {
	t.Parallel()
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	_, js := testenv.NATS(t)
	ctx, cancel := context.WithCancel(context.Background())
	orderDB, orderSchema := testenv.Postgres(t, services.Migrations("order"))
	invDB, invSchema := testenv.Postgres(t, services.Migrations("inventory"))
	fraudDB, fraudSchema := testenv.Postgres(t, services.Migrations("fraud"))
	ord := order.New(servicekit.NewRuntime("order", orderDB, js, orderSchema, quiet))
	inv := inventory.New(servicekit.NewRuntime("inventory", invDB, js, invSchema, quiet))
	model, err := fraud.DefaultModel()
	if err != nil {
		t.Fatal(err)
	}
	scorer := fraud.New(servicekit.NewRuntime("fraud", fraudDB, js, fraudSchema, quiet), model)
	const sku, stock = "WATCH-1", 10
	if err := inv.SeedStock(ctx, map[string]int64{sku: stock}); err != nil {
		t.Fatal(err)
	}
	if err := inv.SeedPrices(ctx, "EUR", map[string]int64{sku: 100}); err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	t.Cleanup(func() { cancel(); wg.Wait() })
	run := func(f func(context.Context) error) {
		wg.Go(func() {
			if err := f(ctx); err != nil && !errors.Is(err, context.Canceled) {
				t.Errorf("component: %v", err)
			}
		})
	}
	run(messaging.NewRelay(orderDB, js, orderSchema, messaging.WithRelayLogger(quiet)).Run)
	run(messaging.NewRelay(invDB, js, invSchema, messaging.WithRelayLogger(quiet)).Run)
	run(func(ctx context.Context) error {
		return messaging.ConsumeBatch(ctx, js, order.FraudScoreConsumer(), ord.ApplyFraudScore, quiet)
	})
	// The order service's consumer dead-letters order B's outcome, once.
	var orderB atomic.Value
	orderB.Store("")
	var dropped atomic.Bool
	outcome := order.InventoryOutcomeConsumer()
	outcome.DeadLetter = deadletter.Filer(js)
	run(func(ctx context.Context) error {
		return messaging.ConsumeBatch(ctx, js, outcome, func(ctx context.Context, batch []*messaging.Delivery) error {
			for _, d := range batch {
				if e, ok := d.Event.(*inventoryeventsv1.InventoryAdjusted); ok && e.GetOrderId() == orderB.Load() && dropped.CompareAndSwap(false, true) {
					return &messaging.EventError{Delivery: d, Err: messaging.Permanent(errors.New("test: outcome lost"))}
				}
			}
			return ord.ApplyInventoryOutcome(ctx, batch)
		}, quiet)
	})
	testenv.CheckFor(t, 30*time.Second, 20*time.Millisecond, func() error {
		var n int
		if err := orderDB.QueryRow(ctx, `SELECT count(*) FROM prices`).Scan(&n); err != nil || n == 0 {
			return fmt.Errorf("no price yet (%v)", err)
		}
		return nil
	})
	place := func(key string) string {
		o, _, err := ord.CreateOrder(ctx, &orderv1.CreateOrderRequest{IdempotencyKey: key, CustomerId: "6f1c2b3a-4d5e-4f60-8a7b-9c0d1e2f3a4b",
			Currency: "EUR", Lines: []*orderv1.OrderLine{{Sku: sku, Quantity: 1, UnitPriceMinor: 100}}})
		if err != nil {
			t.Fatal(err)
		}
		return o.GetOrderId()
	}
	orderEvents, err := js.Stream(ctx, "ECOMMERCE_ORDER")
	if err != nil {
		t.Fatal(err)
	}
	// A: published, then deleted from the stream before inventory runs.
	a := place("watchdog-a")
	var seq uint64
	testenv.CheckFor(t, 30*time.Second, 20*time.Millisecond, func() error {
		m, err := orderEvents.GetLastMsgForSubject(ctx, "ecommerce.order.created.*.*."+a)
		if err != nil {
			return err
		}
		seq = m.Sequence
		return nil
	})
	if err := orderEvents.DeleteMsg(ctx, seq); err != nil {
		t.Fatal(err)
	}
	// The order keeps its order.created's id, by which the watchdog finds
	// the outbox row to publish again.
	if n := testenv.Scalar(t, orderDB, `SELECT count(*) FROM orders o JOIN outbox e ON e.id = o.created_event
		WHERE o.id = '`+a+`' AND e.subject LIKE 'ecommerce.order.created.%'`); n != 1 {
		t.Fatalf("order A's created_event names %d order.created outbox rows, want 1", n)
	}
	// B: inventory decides it; the order service dead-letters the outcome.
	b := place("watchdog-b")
	orderB.Store(b)
	reserve := inventory.ReserveStockConsumer()
	run(func(ctx context.Context) error {
		return messaging.ConsumeBatch(ctx, js, reserve, inv.ReserveStock, quiet)
	})
	run(scorer.Run) // the fraud service: its relay and its consumer
	testenv.CheckFor(t, 30*time.Second, 20*time.Millisecond, func() error {
		if !dropped.Load() {
			return errors.New("order B's outcome not dead-lettered yet")
		}
		return nil
	})

	testenv.CheckFor(t, 30*time.Second, 20*time.Millisecond, func() error {
		if n := testenv.Scalar(t, orderDB, `SELECT count(*) FROM orders WHERE fraud <> 'PENDING'`); n != 1 {
			return fmt.Errorf("%d orders scored, want B alone (A's order.created is gone)", n)
		}
		return nil
	})

	status := func(id string) string {
		var s string
		if err := orderDB.QueryRow(ctx, `SELECT status FROM orders WHERE id = $1`, id).Scan(&s); err != nil {
			t.Fatal(err)
		}
		return s
	}
	if sa, sb := status(a), status(b); sa != "PENDING" || sb != "PENDING" {
		t.Fatalf("before the watchdog: A %s, B %s; want both PENDING", sa, sb)
	}
	w := order.Watchdog{After: time.Millisecond}
	n, err := ord.RecoverStuckOrders(ctx, w)
	if err != nil {
		t.Fatal(err)
	}
	if n != (order.Nudged{Reapplied: 1, Resent: 1}) {
		t.Errorf("the watchdog did %+v; want B's outcome reapplied and A's order.created resent", n)
	}
	testenv.CheckFor(t, 30*time.Second, 20*time.Millisecond, func() error {
		if sa, sb := status(a), status(b); sa != "CONFIRMED" || sb != "CONFIRMED" {
			return fmt.Errorf("A %s, B %s", sa, sb)
		}
		return nil
	})
	if n, err := ord.RecoverStuckOrders(ctx, w); err != nil || n != (order.Nudged{}) {
		t.Errorf("a second look did %+v (%v); want nothing", n, err)
	}
	var onHand, decisions int64
	if err := invDB.QueryRow(ctx, `SELECT (SELECT on_hand FROM stock WHERE sku = $1), (SELECT count(*) FROM decisions)`, sku).
		Scan(&onHand, &decisions); err != nil {
		t.Fatal(err)
	}
	if onHand != stock-2 || decisions != 2 {
		t.Errorf("on hand %d, decisions %d; want %d and 2: each order reserved once", onHand, decisions, stock-2)
	}
}
