package stack_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"connectrpc.com/connect"
	"google.golang.org/protobuf/types/known/timestamppb"

	fraudv1 "github.com/shopbus/shopbus/gen/go/ml/fraud/v1"
	orderv1 "github.com/shopbus/shopbus/gen/go/shopbus/order/v1"
	"github.com/shopbus/shopbus/internal/auth"
	"github.com/shopbus/shopbus/internal/messaging"
	"github.com/shopbus/shopbus/internal/servicekit"
	"github.com/shopbus/shopbus/internal/testenv"
	"github.com/shopbus/shopbus/services"
	"github.com/shopbus/shopbus/services/fraud"
	"github.com/shopbus/shopbus/services/inventory"
	"github.com/shopbus/shopbus/services/order"
)

// sagaRig is the order saga's three services on the real nats-server and
// PostgreSQL, wired by hand so a test can stop the inventory consumer or
// the fraud service, and send scores of its own (as the fraud service).
type sagaRig struct {
	t      *testing.T
	ctx    context.Context
	ord    *order.Service
	inv    *inventory.Service
	scorer *fraud.Service
	run    func(f func(context.Context) error) (stop func())
}

const sagaSKU = "SAGA-1"

func newSagaRig(t *testing.T) *sagaRig {
	t.Helper()
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	_, js := testenv.NATS(t)
	orderDB, orderSchema := testenv.Postgres(t, services.Migrations("order"))
	invDB, invSchema := testenv.Postgres(t, services.Migrations("inventory"))
	fraudDB, fraudSchema := testenv.Postgres(t, services.Migrations("fraud"))
	model, err := fraud.DefaultModel()
	if err != nil {
		t.Fatal(err)
	}
	r := &sagaRig{t: t, ctx: context.Background(), ord: order.New(servicekit.NewRuntime("order", orderDB, js, orderSchema, quiet)),
		inv: inventory.New(servicekit.NewRuntime("inventory", invDB, js, invSchema, quiet)), scorer: fraud.New(servicekit.NewRuntime("fraud", fraudDB, js, fraudSchema, quiet), model)}
	var wg sync.WaitGroup
	var mu sync.Mutex
	var stops []func()
	t.Cleanup(func() {
		mu.Lock()
		for _, s := range stops {
			s()
		}
		mu.Unlock()
		wg.Wait()
	})
	r.run = func(f func(context.Context) error) func() {
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan struct{})
		wg.Go(func() {
			defer close(done)
			if err := f(ctx); err != nil && !errors.Is(err, context.Canceled) {
				t.Errorf("component: %v", err)
			}
		})
		stop := func() { cancel(); <-done }
		mu.Lock()
		stops = append(stops, stop)
		mu.Unlock()
		return stop
	}
	if err := r.inv.SeedStock(r.ctx, map[string]int64{sagaSKU: 10}); err != nil {
		t.Fatal(err)
	}
	if err := r.inv.SeedPrices(r.ctx, "EUR", map[string]int64{sagaSKU: 100, "SAGA-EMPTY": 100}); err != nil {
		t.Fatal(err)
	}
	r.run(r.ord.Run) // relay, inventory outcomes and scores, watchdog
	r.run(messaging.NewRelay(invDB, js, invSchema, messaging.WithRelayLogger(quiet)).Run)
	testenv.CheckFor(t, 30*time.Second, 20*time.Millisecond, func() error {
		if n := testenv.Scalar(t, orderDB, `SELECT count(*) FROM prices`); n != 2 {
			return fmt.Errorf("%d prices known", n)
		}
		return nil
	})
	return r
}

// inventory starts the inventory service's consumer of order.created and
// order.rejected.
func (r *sagaRig) inventory() (stop func()) {
	return r.run(func(ctx context.Context) error {
		return messaging.ConsumeBatch(ctx, r.inv.JS, inventory.ReserveStockConsumer(), r.inv.ReserveStock, r.inv.Log)
	})
}

func (r *sagaRig) place(sku string, qty uint32) string {
	r.t.Helper()
	return r.placeFor(customer, sku, qty)
}

func (r *sagaRig) placeFor(customer, sku string, qty uint32) string {
	r.t.Helper()
	o, _, err := r.ord.CreateOrder(r.ctx, &orderv1.CreateOrderRequest{IdempotencyKey: testenv.Schema(), CustomerId: customer, Currency: "EUR",
		Lines: []*orderv1.OrderLine{{Sku: sku, Quantity: qty}}})
	if err != nil {
		r.t.Fatal(err)
	}
	return o.GetOrderId()
}

// seenBy checks what the customer whose orders they are and an admin read
// through the Connect handler (GetOrder, ListOrders) of declined (the fraud
// score declined it), blocked (a reviewer rejected it, noting why) and
// confirmed: the admin everything, the customer no fraud score and, for the
// first two, order.Declined as the reason.
func (r *sagaRig) seenBy(declined, blocked, confirmed string) {
	r.t.Helper()
	h, err := order.NewHandler(r.ord, order.Limits{})
	if err != nil {
		r.t.Fatal(err)
	}
	asCustomer := auth.WithPrincipal(r.ctx, auth.Principal{Subject: customer})
	asAdmin := auth.WithPrincipal(r.ctx, auth.Principal{Subject: "test-admin", Admin: true})
	read := func(ctx context.Context, id string) *orderv1.Order {
		res, err := h.GetOrder(ctx, connect.NewRequest(&orderv1.GetOrderRequest{OrderId: id}))
		if err != nil {
			r.t.Fatalf("GetOrder %s: %v", id, err)
		}
		return res.Msg.GetOrder()
	}
	for id, admin := range map[string]string{declined: "fraud: declined (score 0.99: HIGH_TOTAL)", blocked: "rejected by review: card reported stolen"} {
		if o := read(asAdmin, id); o.GetRejectReason() != admin || o.GetFraud() == nil {
			r.t.Errorf("an admin reads %s: reason %q, score %v; want %q and the score", id, o.GetRejectReason(), o.GetFraud(), admin)
		}
		if o := read(asCustomer, id); o.GetRejectReason() != order.Declined || o.GetFraud() != nil || o.GetStatus() != orderv1.OrderStatus_ORDER_STATUS_REJECTED {
			r.t.Errorf("its customer reads %s: %v, reason %q, score %v; want REJECTED, %q and no score", id, o.GetStatus(), o.GetRejectReason(), o.GetFraud(), order.Declined)
		}
	}
	if o := read(asCustomer, confirmed); o.GetFraud() != nil || o.GetStatus() != orderv1.OrderStatus_ORDER_STATUS_CONFIRMED {
		r.t.Errorf("its customer reads %s: %v, score %v; want CONFIRMED and no score", confirmed, o.GetStatus(), o.GetFraud())
	}
	res, err := h.ListOrders(asCustomer, connect.NewRequest(&orderv1.ListOrdersRequest{}))
	if err != nil {
		r.t.Fatal(err)
	}
	for _, o := range res.Msg.GetOrders() {
		if o.GetFraud() != nil || strings.Contains(o.GetRejectReason(), "card reported stolen") || strings.Contains(o.GetRejectReason(), "score") {
			r.t.Errorf("ListOrders shows its customer %s: reason %q, score %v", o.GetOrderId(), o.GetRejectReason(), o.GetFraud())
		}
	}
}

// score publishes order.scored for id as the fraud service would.
func (r *sagaRig) score(id string, d fraudv1.Decision) {
	r.t.Helper()
	testenv.Publish(r.t, r.ord.JS, &fraudv1.OrderScored{OrderId: id, Model: fraud.ModelName, ModelVersion: "test", Score: map[fraudv1.Decision]float64{
		fraudv1.Decision_DECISION_APPROVE: 0.01, fraudv1.Decision_DECISION_REVIEW: 0.5, fraudv1.Decision_DECISION_DECLINE: 0.99}[d],
		Decision: d, ReasonCodes: []string{"HIGH_TOTAL"}, ScoredAt: timestamppb.Now()})
}

// facts reads an order's status and stock fact.
func (r *sagaRig) facts(id string) (status, stock string) {
	r.t.Helper()
	if err := r.ord.Events().QueryRow(r.ctx, `SELECT status, stock FROM orders WHERE id = $1`, id).Scan(&status, &stock); err != nil {
		r.t.Fatal(err)
	}
	return status, stock
}

// await waits until the order's status and stock are as given.
func (r *sagaRig) await(id, status, stock string) {
	r.t.Helper()
	testenv.CheckFor(r.t, 30*time.Second, 20*time.Millisecond, func() error {
		if s, st := r.facts(id); s != status || st != stock {
			return fmt.Errorf("order %s: %s, stock %s; want %s, stock %s", id, s, st, status, stock)
		}
		return nil
	})
}

// onHand is what inventory has of sku: on hand and reserved.
func (r *sagaRig) onHand(sku string) (int64, int64) {
	r.t.Helper()
	var onHand, reserved int64
	if err := r.inv.Events().QueryRow(r.ctx, `SELECT on_hand, reserved FROM stock WHERE sku = $1`, sku).Scan(&onHand, &reserved); err != nil {
		r.t.Fatal(err)
	}
	return onHand, reserved
}

// TestSaga: the order saga across inventory, fraud and order (issue 13),
// every path against the real nats-server and PostgreSQL: an approved and
// reserved order is CONFIRMED; a decline after the reservation rejects it
// and gives its stock back exactly once, however often the decline comes;
// an order out of stock is REJECTED whatever its score, with nothing to
// release; a review approves or rejects (releasing the stock); the score
// may come before the stock or after; duplicates change nothing; without a
// score the fraud deadline holds the order for review, and a late score
// still decides it; the fraud service down then back scores what waited.
func TestSaga(t *testing.T) {
	t.Parallel()
	r := newSagaRig(t)
	stopInventory := r.inventory()
	inv, ord := r.inv.Events(), r.ord.Events()
	releases := func(id string) int64 {
		return testenv.Scalar(t, inv, `SELECT count(*) FROM outbox WHERE subject = 'ecommerce.inventory.released.v1.`+id+`'`)
	}

	// Approved, then reserved: CONFIRMED.
	a := r.place(sagaSKU, 1)
	r.await(a, "PENDING", "RESERVED")
	r.score(a, fraudv1.Decision_DECISION_APPROVE)
	r.await(a, "CONFIRMED", "RESERVED")

	// Reserved, then declined: REJECTED, the stock back once. The same
	// decline again (another event id) changes nothing.
	b := r.place(sagaSKU, 2)
	r.await(b, "PENDING", "RESERVED")
	if onHand, reserved := r.onHand(sagaSKU); onHand != 7 || reserved != 3 {
		t.Fatalf("before the decline: %d on hand, %d reserved; want 7 and 3", onHand, reserved)
	}
	r.score(b, fraudv1.Decision_DECISION_DECLINE)
	r.await(b, "REJECTED", "RELEASED")
	r.score(b, fraudv1.Decision_DECISION_DECLINE)
	testenv.WaitSettled(t, r.ord.JS, "ML_FRAUD", order.FraudScoreConsumer().Durable)
	if onHand, reserved := r.onHand(sagaSKU); onHand != 9 || reserved != 1 || releases(b) != 1 {
		t.Errorf("after the decline: %d on hand, %d reserved, %d releases; want 9, 1 (order A's) and one", onHand, reserved, releases(b))
	}
	o, err := r.ord.GetOrder(r.ctx, b)
	if err != nil || o.GetFraud().GetDecision() != orderv1.FraudDecision_FRAUD_DECISION_DECLINE || o.GetRejectReason() != "fraud: declined (score 0.99: HIGH_TOTAL)" {
		t.Errorf("declined order %v (%v)", o, err)
	}
	// updated_at is when the status last changed: the rejection's
	// transaction, which wrote order.rejected, not the release that came
	// back after it, nor the second decline.
	if n := testenv.Scalar(t, ord, `SELECT count(*) FROM orders o JOIN outbox x ON x.subject = 'ecommerce.order.rejected.v1.' || o.id
		WHERE o.id = '`+b+`' AND o.updated_at = x.created_at`); n != 1 {
		t.Errorf("the rejected order's updated_at is not its rejection's time (%d rows match)", n)
	}

	// Out of stock and approved: REJECTED, nothing to release.
	c := r.place("SAGA-EMPTY", 1) // priced, never stocked
	r.score(c, fraudv1.Decision_DECISION_APPROVE)
	r.await(c, "REJECTED", "REJECTED")
	if n := testenv.Scalar(t, ord, `SELECT count(*) FROM outbox WHERE subject = 'ecommerce.order.rejected.v1.`+c+`'`); n != 0 {
		t.Errorf("an order inventory rejected published order.rejected %d times, want never", n)
	}

	// Review: approved → CONFIRMED; rejected → REJECTED, stock released.
	d, e := r.place(sagaSKU, 1), r.place(sagaSKU, 1)
	r.score(d, fraudv1.Decision_DECISION_REVIEW)
	r.score(e, fraudv1.Decision_DECISION_REVIEW)
	r.await(d, "REVIEW", "RESERVED")
	r.await(e, "REVIEW", "RESERVED")
	if _, err := r.ord.ReviewOrder(r.ctx, d, true, ""); err != nil {
		t.Fatal(err)
	}
	r.await(d, "CONFIRMED", "RESERVED")
	if _, err := r.ord.ReviewOrder(r.ctx, e, false, "card reported stolen"); err != nil {
		t.Fatal(err)
	}
	r.await(e, "REJECTED", "RELEASED")
	if _, err := r.ord.ReviewOrder(r.ctx, e, false, ""); err != nil {
		t.Errorf("the same review again: %v, want the order unchanged", err)
	}
	r.seenBy(b, e, d)
	if _, err := r.ord.ReviewOrder(r.ctx, e, true, ""); !errors.Is(err, order.ErrNotInReview) {
		t.Errorf("approving a rejected order: %v, want ErrNotInReview", err)
	}

	// Duplicates of a final order's events change nothing.
	r.score(a, fraudv1.Decision_DECISION_DECLINE)
	testenv.WaitSettled(t, r.ord.JS, "ML_FRAUD", order.FraudScoreConsumer().Durable)
	if status, _ := r.facts(a); status != "CONFIRMED" {
		t.Errorf("a decline after the confirmation made the order %s", status)
	}

	// The score first, the stock after: the inventory consumer is down.
	stopInventory()
	f := r.place(sagaSKU, 1)
	r.score(f, fraudv1.Decision_DECISION_APPROVE)
	testenv.CheckFor(t, 30*time.Second, 20*time.Millisecond, func() error {
		if n := testenv.Scalar(t, ord, `SELECT count(*) FROM orders WHERE id = '`+f+`' AND fraud = 'APPROVE'`); n != 1 {
			return errors.New("the score is not applied yet")
		}
		return nil
	})
	if status, stock := r.facts(f); status != "PENDING" || stock != "PENDING" {
		t.Errorf("approved, stock unknown: %s, stock %s; want PENDING", status, stock)
	}
	stopInventory = r.inventory()
	r.await(f, "CONFIRMED", "RESERVED")

	// No score within the fraud deadline: held for review; a late score
	// still decides it.
	g := r.place(sagaSKU, 1)
	r.await(g, "PENDING", "RESERVED")
	n, err := r.ord.RecoverStuckOrders(r.ctx, order.Watchdog{After: time.Hour, FraudDeadline: time.Millisecond, OnFraudDeadline: order.DeadlineReview})
	if err != nil || n.Deadline < 1 {
		t.Fatalf("the fraud deadline: %+v, %v; want the order decided", n, err)
	}
	r.await(g, "REVIEW", "RESERVED")
	r.score(g, fraudv1.Decision_DECISION_APPROVE)
	r.await(g, "CONFIRMED", "RESERVED")

	// The fraud service down, then back: it scores what waited (a new
	// customer's small order: the committed model approves it).
	h := r.placeFor("0193a5e2-0000-7000-8000-00000000000a", sagaSKU, 1)
	r.await(h, "PENDING", "RESERVED")
	r.run(r.scorer.Run)
	r.await(h, "CONFIRMED", "RESERVED")
	if onHand, reserved := r.onHand(sagaSKU); onHand+reserved != 10 || reserved != 5 {
		t.Errorf("stock at the end: %d on hand, %d reserved; want 10 in all, 5 reserved (orders A, D, F, G, H)", onHand, reserved)
	}
}
