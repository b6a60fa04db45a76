package order

import (
	"fmt"
	"testing"
	"time"

	ordereventsv1 "github.com/shopbus/shopbus/gen/go/ecommerce/order/v1"
)

// TestSagaInEitherOrder: an order's status depends on its facts, not on
// the order the events bring them in, nor on how often they come; a
// rejection by the score or a reviewer asks for the stock back unless
// inventory refused it.
func TestSagaInEitherOrder(t *testing.T) {
	type step func(o *sagaOrder)
	reserved := func(o *sagaOrder) { _ = o.stockOutcome(stockReserved, "") }
	outOfStock := func(o *sagaOrder) { _ = o.stockOutcome(stockRejected, "out of stock: X") }
	score := func(d string) step {
		return func(o *sagaOrder) { o.scored(d, 0.5, []string{"HIGH_TOTAL"}, "fraud-logreg", "v", time.Now()) }
	}
	review := func(ok bool) step { return func(o *sagaOrder) { o.reviewed(ok, "note") } }
	for _, tc := range []struct {
		name       string
		steps      []step
		status     string
		compensate bool
	}{
		{"reserved, approved", []step{reserved, score(fraudApprove)}, statusConfirmed, false},
		{"approved, reserved", []step{score(fraudApprove), reserved}, statusConfirmed, false},
		{"approved twice, reserved twice", []step{score(fraudApprove), score(fraudApprove), reserved, reserved}, statusConfirmed, false},
		{"reserved, declined", []step{reserved, score(fraudDecline)}, statusRejected, true},
		{"declined, reserved", []step{score(fraudDecline), reserved}, statusRejected, true},
		{"out of stock, approved", []step{outOfStock, score(fraudApprove)}, statusRejected, false},
		{"declined, out of stock", []step{score(fraudDecline), outOfStock}, statusRejected, true},
		{"reserved, review", []step{reserved, score(fraudReview)}, statusReview, false},
		{"review approved, then reserved", []step{score(fraudReview), review(true), reserved}, statusConfirmed, false},
		{"review rejected", []step{reserved, score(fraudReview), review(false)}, statusRejected, true},
		{"confirmed, then a decline", []step{reserved, score(fraudApprove), score(fraudDecline)}, statusConfirmed, false},
		{"stock only", []step{reserved}, statusPending, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			o := &sagaOrder{id: "o", status: statusPending, stock: stockPending, fraud: fraudPending}
			for _, s := range tc.steps {
				s(o)
			}
			if o.status != tc.status || (o.compensate != 0) != tc.compensate {
				t.Errorf("status %s, compensate %v; want %s, %v", o.status, o.compensate, tc.status, tc.compensate)
			}
		})
	}
}

// TestSagaReleaseBeforeReservation: a declined order whose release comes
// before its reservation (the reservation dead-lettered, then redriven)
// ends as it does in stream order: REJECTED, its stock RELEASED; a release
// that gave nothing back leaves the stock to come.
func TestSagaReleaseBeforeReservation(t *testing.T) {
	declined := func() *sagaOrder {
		o := &sagaOrder{id: "o", status: statusPending, stock: stockPending, fraud: fraudPending}
		o.scored(fraudDecline, 0.99, []string{"HIGH_TOTAL"}, "m", "v", time.Now())
		return o
	}
	inOrder, swapped := declined(), declined()
	_ = inOrder.stockOutcome(stockReserved, "")
	inOrder.released(true)
	swapped.released(true)
	if err := swapped.stockOutcome(stockReserved, ""); err != nil {
		t.Fatal(err)
	}
	for name, o := range map[string]*sagaOrder{"in stream order": inOrder, "release first": swapped} {
		if o.status != statusRejected || o.stock != stockReleased {
			t.Errorf("%s: %s, stock %s; want REJECTED, stock RELEASED", name, o.status, o.stock)
		}
	}
	empty := declined()
	empty.released(false)
	if err := empty.stockOutcome(stockRejected, "out of stock"); err != nil || empty.stock != stockRejected {
		t.Errorf("a release of nothing, then out of stock: stock %s, %v; want REJECTED", empty.stock, err)
	}
}

// TestSagaContradiction: inventory decides once per order; a second,
// different outcome is an error (dead-lettered by the consumer).
func TestSagaContradiction(t *testing.T) {
	o := &sagaOrder{id: "o", status: statusPending, stock: stockPending, fraud: fraudPending}
	if err := o.stockOutcome(stockReserved, ""); err != nil {
		t.Fatal(err)
	}
	if err := o.stockOutcome(stockRejected, "out of stock"); err == nil {
		t.Error("a rejection after a reservation was accepted")
	}
}

// TestFraudDeadline: each action, and a late score after the deadline's
// review placeholder.
func TestFraudDeadline(t *testing.T) {
	for action, want := range map[FraudDeadlineAction]string{DeadlineReview: statusReview, DeadlineApprove: statusConfirmed, DeadlineReject: statusRejected} {
		t.Run(string(action), func(t *testing.T) {
			o := &sagaOrder{id: "o", status: statusPending, stock: stockReserved, fraud: fraudPending}
			o.deadlinePassed(action, time.Minute)
			if o.status != want || (o.compensate == ordereventsv1.RejectionReason_REJECTION_REASON_FRAUD_DEADLINE) != (action == DeadlineReject) {
				t.Errorf("%s: %s, compensate %v", action, o.status, o.compensate)
			}
		})
	}
	o := &sagaOrder{id: "o", status: statusPending, stock: stockReserved, fraud: fraudPending}
	o.deadlinePassed(DeadlineReview, time.Minute)
	o.scored(fraudApprove, 0.01, nil, "m", "v", time.Now())
	if o.status != statusConfirmed {
		t.Errorf("a late approval after the deadline: %s, want CONFIRMED", o.status)
	}
	if _, err := ParseFraudDeadlineAction("maybe"); err == nil {
		t.Error(fmt.Errorf("ParseFraudDeadlineAction accepted maybe"))
	}
}
