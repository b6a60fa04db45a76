package fraud_test

import (
	"errors"
	"slices"
	"testing"
	"time"

	"google.golang.org/protobuf/types/known/timestamppb"

	ordereventsv2 "github.com/shopbus/shopbus/gen/go/ecommerce/order/v2"
	fraudeventsv1 "github.com/shopbus/shopbus/gen/go/ml/fraud/v1"
	"github.com/shopbus/shopbus/internal/testenv"
	"github.com/shopbus/shopbus/services/fraud"
)

// TestScoreOrders: the fraud service scores each order once from its
// order.created, with the customer's history from its own read model (a
// first order says FIRST_ORDER; the customer's next order in the hour counts
// the first), publishes order.scored, and answers GetScore; an order it has
// not scored is ErrNotFound; a second order.created of the same order (a
// copy under another event id) is not scored again.
func TestScoreOrders(t *testing.T) {
	t.Parallel()
	model, err := fraud.DefaultModel()
	if err != nil {
		t.Fatal(err)
	}
	svc := fraud.New(testenv.Runtime(t, "fraud"), model)
	pool, js := svc.Pool, svc.JS
	ctx := testenv.Run(t, svc)
	const customer = "6f1c2b3a-4d5e-4f60-8a7b-9c0d1e2f3a4b"
	first, second := "0193a5e2-7c1d-7b3e-9f4a-000000000001", "0193a5e2-7c1d-7b3e-9f4a-000000000002"
	created := time.Now().Add(-time.Minute)
	order := func(id string, at time.Time) *ordereventsv2.OrderCreated {
		eur := &ordereventsv2.Money{Currency: "EUR", AmountMinor: 2500}
		return &ordereventsv2.OrderCreated{OrderId: id, Customer: &ordereventsv2.Customer{CustomerId: customer},
			Lines: []*ordereventsv2.OrderLine{{Sku: "MUG-001", Quantity: 2, UnitPrice: &ordereventsv2.Money{Currency: "EUR", AmountMinor: 1250}}},
			Total: eur, CreatedAt: timestamppb.New(at)}
	}
	if _, err := svc.GetScore(ctx, first); !errors.Is(err, fraud.ErrNotFound) {
		t.Errorf("before any order: %v, want ErrNotFound", err)
	}
	scored := func(id string) {
		t.Helper()
		testenv.CheckFor(t, 30*time.Second, 20*time.Millisecond, func() error {
			_, err := svc.GetScore(ctx, id)
			return err
		})
	}
	// The second once the first is in the read model: the two are keyed
	// to different partitions, which may be handled in either order (the
	// model's documented limit).
	testenv.Publish(t, js, order(first, created))
	scored(first)
	testenv.Publish(t, js, order(second, created.Add(time.Second)))
	testenv.Publish(t, js, order(first, created)) // a copy, another event id
	scored(second)
	sa, _ := svc.GetScore(ctx, first)
	sb, _ := svc.GetScore(ctx, second)
	if sa.GetDecision() != fraudeventsv1.Decision_DECISION_APPROVE || !slices.Contains(sa.GetReasonCodes(), "FIRST_ORDER") {
		t.Errorf("the customer's first order: %v, want APPROVE with FIRST_ORDER", sa)
	}
	if slices.Contains(sb.GetReasonCodes(), "FIRST_ORDER") || !slices.Contains(sb.GetReasonCodes(), "MANY_ORDERS_LAST_HOUR") {
		t.Errorf("the customer's second order in the hour: %v, want the first counted (MANY_ORDERS_LAST_HOUR, no FIRST_ORDER)", sb)
	}
	testenv.WaitSettled(t, js, "ECOMMERCE_ORDER", fraud.ScoreOrderConsumer().Durable)
	if n := testenv.Scalar(t, pool, `SELECT count(*) FROM outbox`); n != 2 {
		t.Errorf("%d order.scored written, want 2: one per order, the copy not scored again", n)
	}
	if n := testenv.Scalar(t, pool, `SELECT count(*) FROM customer_orders`); n != 2 {
		t.Errorf("read model holds %d orders, want 2", n)
	}
	// Retention: the first order (a second older) goes, the second stays;
	// its score stays.
	if n, err := svc.PruneHistory(ctx, created.Add(time.Second/2)); err != nil || n != 1 {
		t.Errorf("PruneHistory: %d, %v; want the older order pruned", n, err)
	}
	if _, err := svc.GetScore(ctx, first); err != nil {
		t.Errorf("the score of a pruned order: %v, want it kept", err)
	}
}
