package inventory_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	ordereventsv1 "github.com/shopbus/shopbus/gen/go/ecommerce/order/v1"
	ordereventsv2 "github.com/shopbus/shopbus/gen/go/ecommerce/order/v2"
	"github.com/shopbus/shopbus/internal/event"
	"github.com/shopbus/shopbus/internal/messaging"
	"github.com/shopbus/shopbus/internal/testenv"
)

// delivery returns msg as the consumer would hand it to a handler.
func delivery(t *testing.T, msg proto.Message) *messaging.Delivery {
	t.Helper()
	env, err := event.New(context.Background(), msg, event.WithSource("shopbus/order"))
	if err != nil {
		t.Fatal(err)
	}
	return &messaging.Delivery{Envelope: env, Event: msg}
}

// created returns order.created for one line of qty units of sku.
func created(orderID, sku string, qty uint32) *ordereventsv2.OrderCreated {
	o := orderCreatedV2(qty)
	o.OrderId = orderID
	o.Lines[0].Sku = sku
	return o
}

// TestBatchLocksStockInOrder: a batch that reserves one SKU and then
// releases another takes its stock locks in SKU order across its runs, so
// batches of two partitions cannot deadlock. The batch reserves BBB-001
// and releases an order's AAA-001 while another transaction holds
// AAA-001: it must wait for AAA-001 before it locks BBB-001, which a third
// transaction can still lock at once. (Locking BBB-001 first, then waiting
// for AAA-001, is half of a deadlock: PostgreSQL breaks one after
// deadlock_timeout, 1 s, and the orders wait.)
func TestBatchLocksStockInOrder(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	ctx := context.Background()
	for _, sku := range []string{"AAA-001", "BBB-001"} {
		if _, err := f.svc.SetStock(ctx, sku, 10); err != nil {
			t.Fatal(err)
		}
	}
	rejectedOrder, newOrder := uuid.NewString(), uuid.NewString()
	if err := f.svc.ReserveStock(ctx, []*messaging.Delivery{delivery(t, created(rejectedOrder, "AAA-001", 2))}); err != nil {
		t.Fatal(err)
	}

	holder, err := f.pool.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer holder.Rollback(ctx) //nolint:errcheck // released below; a second rollback does nothing
	var holderPID int32
	if err := holder.QueryRow(ctx, "SELECT pg_backend_pid()").Scan(&holderPID); err != nil {
		t.Fatal(err)
	}
	if _, err := holder.Exec(ctx, "SELECT sku FROM stock WHERE sku = 'AAA-001' FOR UPDATE"); err != nil {
		t.Fatal(err)
	}

	done := make(chan error, 1)
	go func() {
		done <- f.svc.ReserveStock(ctx, []*messaging.Delivery{
			delivery(t, created(newOrder, "BBB-001", 1)),
			delivery(t, &ordereventsv1.OrderRejected{OrderId: rejectedOrder,
				Reason: ordereventsv1.RejectionReason_REJECTION_REASON_FRAUD_DECLINED, RejectedAt: timestamppb.Now()}),
		})
	}()
	testenv.CheckFor(t, 10*time.Second, 10*time.Millisecond, func() error {
		var waiting int
		if err := f.pool.QueryRow(ctx, "SELECT count(*) FROM pg_stat_activity WHERE $1::int = ANY(pg_blocking_pids(pid))", holderPID).Scan(&waiting); err != nil {
			return err
		}
		if waiting == 0 {
			return errors.New("the batch is not waiting for AAA-001 yet")
		}
		return nil
	})

	err = pgx.BeginFunc(ctx, f.pool, func(tx pgx.Tx) error {
		_, err := tx.Exec(ctx, "SELECT sku FROM stock WHERE sku = 'BBB-001' FOR UPDATE NOWAIT")
		return err
	})
	if err != nil {
		t.Errorf("BBB-001 is locked while the batch waits for AAA-001 (locks out of SKU order): %v", err)
	}

	if err := holder.Rollback(ctx); err != nil {
		t.Fatal(err)
	}
	if err := <-done; err != nil {
		t.Fatalf("batch: %v", err)
	}
	if n := f.scalar(t, "SELECT on_hand FROM stock WHERE sku = 'AAA-001'"); n != 10 {
		t.Errorf("AAA-001 on hand %d, want 10 (released)", n)
	}
	if n := f.scalar(t, "SELECT on_hand FROM stock WHERE sku = 'BBB-001'"); n != 9 {
		t.Errorf("BBB-001 on hand %d, want 9 (reserved)", n)
	}
}
