package inventory_test

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"sync/atomic"
	"testing"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/nats-io/nats.go/jetstream"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	ordereventsv1 "github.com/shopbus/shopbus/gen/go/ecommerce/order/v1"
	ordereventsv2 "github.com/shopbus/shopbus/gen/go/ecommerce/order/v2"
	"github.com/shopbus/shopbus/internal/messaging"
	"github.com/shopbus/shopbus/internal/testenv"
	"github.com/shopbus/shopbus/services/inventory"
)

var quiet = slog.New(slog.NewTextHandler(io.Discard, nil))

type fixture struct {
	pool    *pgxpool.Pool
	js      jetstream.JetStream
	svc     *inventory.Service
	lastSeq uint64 // stream sequence of the last event published
}

func newFixture(t *testing.T) *fixture {
	svc := inventory.New(testenv.Runtime(t, "inventory"))
	if _, err := svc.SetStock(context.Background(), "MUG-001", 10); err != nil {
		t.Fatal(err)
	}
	return &fixture{pool: svc.Pool, js: svc.JS, svc: svc}
}

const orderID = "0193a5e2-7c1d-7b3e-9f4a-2d6c8e0f1a2b"

func orderCreatedV2(qty uint32) *ordereventsv2.OrderCreated {
	eur := func(n int64) *ordereventsv2.Money { return &ordereventsv2.Money{Currency: "EUR", AmountMinor: n} }
	return &ordereventsv2.OrderCreated{
		OrderId:   orderID,
		Customer:  &ordereventsv2.Customer{CustomerId: "6f1c2b3a-4d5e-4f60-8a7b-9c0d1e2f3a4b"},
		Lines:     []*ordereventsv2.OrderLine{{Sku: "MUG-001", Quantity: qty, UnitPrice: eur(1250)}},
		Total:     eur(1250 * int64(qty)),
		CreatedAt: timestamppb.Now(),
	}
}

func orderCreatedV1(qty uint32) *ordereventsv1.OrderCreated {
	return &ordereventsv1.OrderCreated{
		OrderId: orderID, CustomerId: "6f1c2b3a-4d5e-4f60-8a7b-9c0d1e2f3a4b", Currency: "EUR",
		Items: []*ordereventsv1.LineItem{{Sku: "MUG-001", Quantity: qty, UnitPriceMinor: 1250}}, TotalMinor: 1250 * int64(qty),
		CreatedAt: timestamppb.Now(),
	}
}

func (f *fixture) publish(t *testing.T, msg proto.Message) {
	t.Helper()
	f.lastSeq = testenv.Publish(t, f.js, msg)
}

// consume runs the reserve-stock consumer with h until every message
// published so far is acked or terminated.
func (f *fixture) consume(t *testing.T, h messaging.BatchHandler) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	cfg := inventory.ReserveStockConsumer()
	go func() { done <- messaging.ConsumeBatch(ctx, f.js, cfg, h, quiet) }()
	defer func() {
		cancel()
		<-done
	}()
	testenv.WaitSettled(t, f.js, cfg.Stream, cfg.Durable, f.lastSeq)
}

func (f *fixture) scalar(t *testing.T, sql string) int64 {
	t.Helper()
	return testenv.Scalar(t, f.pool, sql)
}

// TestRedeliveryAfterCommit: the effect commits but the ack is lost (the
// handler fails after commit, so the message is nak'ed and redelivered). The
// redelivery finds the event in processed_events: stock moves once, one
// outcome is written.
func TestRedeliveryAfterCommit(t *testing.T) {
	f := newFixture(t)
	f.publish(t, orderCreatedV2(3))
	var calls atomic.Int32
	f.consume(t, func(ctx context.Context, batch []*messaging.Delivery) error {
		if err := f.svc.ReserveStock(ctx, batch); err != nil {
			return err
		}
		if calls.Add(1) == 1 {
			return errors.New("injected: the ack is lost after commit")
		}
		return nil
	})
	if calls.Load() < 2 {
		t.Fatalf("handled %d times, want a redelivery", calls.Load())
	}
	if n := f.scalar(t, "SELECT on_hand FROM stock WHERE sku = 'MUG-001'"); n != 7 {
		t.Errorf("on hand %d, want 7 (reserved once)", n)
	}
	if n := f.scalar(t, "SELECT count(*) FROM outbox"); n != 1 {
		t.Errorf("%d outcome events, want 1", n)
	}
}

// TestBothVersionsOneDecision: consumers read order.created v1 (upcast) and
// v2; two events for the same order (a v1 and a v2 published during a
// migration, with different event ids) reserve stock once.
func TestBothVersionsOneDecision(t *testing.T) {
	f := newFixture(t)
	f.publish(t, orderCreatedV1(2))
	f.publish(t, orderCreatedV2(2))
	var seen []uint32
	f.consume(t, func(ctx context.Context, batch []*messaging.Delivery) error {
		for _, d := range batch {
			seen = append(seen, d.Envelope.GetVersion())
			if _, ok := d.Event.(*ordereventsv2.OrderCreated); !ok {
				t.Errorf("handler got %T, want the upcast v2", d.Event)
			}
		}
		return f.svc.ReserveStock(ctx, batch)
	})
	if len(seen) != 2 {
		t.Fatalf("handled versions %v, want both", seen)
	}
	if n := f.scalar(t, "SELECT on_hand FROM stock WHERE sku = 'MUG-001'"); n != 8 {
		t.Errorf("on hand %d, want 8 (one reservation of 2)", n)
	}
	if n := f.scalar(t, "SELECT count(*) FROM outbox"); n != 1 {
		t.Errorf("%d outcome events, want 1", n)
	}
}
