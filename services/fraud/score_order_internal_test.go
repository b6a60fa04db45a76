package fraud

import (
	"context"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"google.golang.org/protobuf/types/known/timestamppb"

	ordereventsv2 "github.com/shopbus/shopbus/gen/go/ecommerce/order/v2"
	"github.com/shopbus/shopbus/internal/testenv"
	"github.com/shopbus/shopbus/services"
)

// TestHistoryCountsEachOrderOnce: a batch that names an order twice (a copy
// of its order.created) reads the customer's history before it once, not
// once per copy.
func TestHistoryCountsEachOrderOnce(t *testing.T) {
	t.Parallel()
	pool, _ := testenv.Postgres(t, services.Migrations("fraud"))
	ctx := context.Background()
	at := time.Now().Add(-time.Minute)
	order := func(id string, at time.Time) *ordereventsv2.OrderCreated {
		return &ordereventsv2.OrderCreated{OrderId: id, Customer: &ordereventsv2.Customer{CustomerId: "6f1c2b3a-4d5e-4f60-8a7b-9c0d1e2f3a4b"},
			Total: &ordereventsv2.Money{Currency: "EUR", AmountMinor: 2500}, CreatedAt: timestamppb.New(at)}
	}
	read := func(orders ...*ordereventsv2.OrderCreated) map[string]history {
		t.Helper()
		b := &pgx.Batch{}
		out, err := queueRecordAndRead(b, orders)
		if err != nil {
			t.Fatal(err)
		}
		if err := pool.SendBatch(ctx, b).Close(); err != nil {
			t.Fatal(err)
		}
		return out
	}
	read(order("0193a5e2-7c1d-7b3e-9f4a-000000000001", at))
	const second = "0193a5e2-7c1d-7b3e-9f4a-000000000002"
	dup := order(second, at.Add(time.Second))
	got := read(dup, dup)[second]
	if want := (history{orders: 1, spend: 2500}); got != want {
		t.Errorf("history of an order named twice in a batch: %+v; want %+v, the earlier order counted once", got, want)
	}
}
