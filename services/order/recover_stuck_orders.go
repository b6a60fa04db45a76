package order

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/shopbus/shopbus/internal/messaging"
)

// Watchdog configures the search for stuck orders: orders still PENDING
// After their creation, whose outcome or score was lost on the way (an
// order.created, an inventory outcome or a score dead-lettered, expired or
// deleted); and the fraud deadline, which decides what happens to an order
// that no score reached in time (the fraud service down).
type Watchdog struct {
	// After is how long an order may stay PENDING before it is nudged
	// (DefaultWatchdog.After when 0); each later nudge of the same order
	// waits twice as long as the one before, up to 64 times After.
	After time.Duration
	// Every is how often the watchdog looks (DefaultWatchdog.Every when 0).
	Every time.Duration
	// Batch bounds the orders nudged per look (DefaultWatchdog.Batch when 0).
	Batch int
	// FraudDeadline is how long an order waits for its fraud score
	// (DefaultWatchdog.FraudDeadline when 0); then OnFraudDeadline decides.
	FraudDeadline time.Duration
	// OnFraudDeadline is what an order without a score becomes at the
	// deadline (DeadlineReview when empty).
	OnFraudDeadline FraudDeadlineAction
}

// FraudDeadlineAction is what the fraud deadline does to an order no score
// reached: a late score still counts where the order waits for a person.
type FraudDeadlineAction string

const (
	// DeadlineReview holds the order for a person (REVIEW, reason
	// NO_SCORE_IN_TIME): nothing is sold unscored, no customer is refused
	// for an outage; a score that arrives before the review decides it.
	DeadlineReview FraudDeadlineAction = "review"
	// DeadlineApprove lets the order through unscored (fail open).
	DeadlineApprove FraudDeadlineAction = "approve"
	// DeadlineReject rejects it (fail closed), releasing its stock.
	DeadlineReject FraudDeadlineAction = "reject"
)

// ParseFraudDeadlineAction reads "review", "approve" or "reject".
func ParseFraudDeadlineAction(s string) (FraudDeadlineAction, error) {
	switch a := FraudDeadlineAction(s); a {
	case DeadlineReview, DeadlineApprove, DeadlineReject:
		return a, nil
	}
	return "", fmt.Errorf("fraud deadline action %q: want review, approve or reject", s)
}

// DefaultWatchdog looks every 30 s for orders PENDING for 5 minutes: far
// beyond a decision's usual milliseconds and the consumers' retry budget
// (about 90 s), so it acts only on orders whose events were lost. An order
// waits 10 minutes for its fraud score, then a person decides.
var DefaultWatchdog = Watchdog{After: 5 * time.Minute, Every: 30 * time.Second, Batch: 100,
	FraudDeadline: 10 * time.Minute, OnFraudDeadline: DeadlineReview}

func (w Watchdog) withDefaults() Watchdog {
	if w.After <= 0 {
		w.After = DefaultWatchdog.After
	}
	if w.Every <= 0 {
		w.Every = DefaultWatchdog.Every
	}
	if w.Batch <= 0 {
		w.Batch = DefaultWatchdog.Batch
	}
	if w.FraudDeadline <= 0 {
		w.FraudDeadline = DefaultWatchdog.FraudDeadline
	}
	if w.OnFraudDeadline == "" {
		w.OnFraudDeadline = DefaultWatchdog.OnFraudDeadline
	}
	return w
}

// Nudged counts what one RecoverStuckOrders did.
type Nudged struct {
	// Reapplied orders had an outcome in the inventory stream that never
	// took effect here: it was applied now.
	Reapplied int
	// Resent orders had no outcome yet: their order.created was published
	// again, for an inventory service that never handled it.
	Resent int
	// Unresolved orders could be neither (an outcome that cannot be
	// handled, an order.created no longer in the outbox, NATS down): they
	// are nudged again later and logged.
	Unresolved int
	// Deadline orders had no score at the fraud deadline: OnFraudDeadline
	// decided them.
	Deadline int
}

// RecoverStuckOrders first decides the orders that no fraud score reached
// within w.FraudDeadline (w.OnFraudDeadline), then nudges the orders
// PENDING for longer than w.After (with a back-off per order), at most
// w.Batch of each, each claimed by one instance. A nudge looks for the
// events the order lacks: the inventory outcome or the fraud score that
// the streams hold is applied as its consumer would have (idempotently,
// under the consumer's processed_events record); when one is missing from
// its stream, the order's order.created is published again, same event id,
// so that a service that already handled it skips it and one that lost it
// handles it.
func (s *Service) RecoverStuckOrders(ctx context.Context, w Watchdog) (Nudged, error) {
	w = w.withDefaults()
	var n Nudged
	var err error
	if n.Deadline, err = s.passFraudDeadline(ctx, w); err != nil {
		return n, err
	}
	rows, err := s.Events().Query(ctx, `UPDATE orders SET nudges = nudges + 1, nudged_at = now()
		WHERE id IN (SELECT id FROM orders WHERE status = 'PENDING' AND created_at < now() - make_interval(secs => $1)
			AND (nudged_at IS NULL OR nudged_at < now() - make_interval(secs => $1 * power(2, least(nudges, 6))))
			ORDER BY created_at LIMIT $2 FOR UPDATE SKIP LOCKED)
		RETURNING id::text, nudges, stock, fraud, coalesce(created_event::text, '')`, w.After.Seconds(), w.Batch)
	if err != nil {
		return n, fmt.Errorf("stuck orders: %w", err)
	}
	var orders []stuckOrder
	for rows.Next() {
		var o stuckOrder
		if err := rows.Scan(&o.id, &o.nudges, &o.stock, &o.fraud, &o.createdEvent); err != nil {
			rows.Close()
			return n, fmt.Errorf("stuck orders: %w", err)
		}
		orders = append(orders, o)
	}
	if err := rows.Err(); err != nil {
		return n, fmt.Errorf("stuck orders: %w", err)
	}
	for _, o := range orders {
		action, err := s.nudge(ctx, o)
		switch action {
		case nudgeReapplied:
			n.Reapplied++
		case nudgeResent:
			n.Resent++
		default:
			n.Unresolved++
		}
		s.metrics.nudged(ctx, action)
		log := s.Log.Info
		if err != nil {
			log = s.Log.Warn
		}
		log("watchdog: order stuck in PENDING nudged", "order_id", o.id, "nudge", o.nudges, "stock", o.stock, "fraud", o.fraud,
			"action", action, "err", err)
	}
	return n, nil
}

// stuckOrder is an order the watchdog claimed, with the facts it lacks.
type stuckOrder struct {
	id           string
	nudges       int
	stock, fraud string
	createdEvent string // its order.created's id ("" for an order placed before it was kept)
}

// Actions of the watchdog, the action label of shopbus_order_nudged_total.
const (
	nudgeReapplied  = "reapplied"
	nudgeResent     = "resent"
	nudgeUnresolved = "unresolved"
	nudgeDeadline   = "fraud_deadline"
)

// passFraudDeadline decides the orders still waiting for their score
// w.FraudDeadline after their creation, as w.OnFraudDeadline says, in one
// transaction, and says how many.
func (s *Service) passFraudDeadline(ctx context.Context, w Watchdog) (int, error) {
	var moved []transition
	var decided int
	err := messaging.InTx(ctx, s.Events(), func(tx pgx.Tx) error {
		rows, err := tx.Query(ctx, `SELECT id::text FROM orders WHERE status = 'PENDING' AND fraud = 'PENDING'
			AND created_at < now() - make_interval(secs => $1) ORDER BY created_at LIMIT $2 FOR UPDATE SKIP LOCKED`,
			w.FraudDeadline.Seconds(), w.Batch)
		if err != nil {
			return err
		}
		ids, err := pgx.CollectRows(rows, pgx.RowTo[string])
		if err != nil || len(ids) == 0 {
			return err
		}
		orders, err := loadSaga(ctx, tx, ids)
		if err != nil {
			return err
		}
		for _, o := range orders {
			o.deadlinePassed(w.OnFraudDeadline, w.FraudDeadline)
		}
		decided = len(orders)
		moved, err = s.saveSaga(ctx, tx, orders)
		return err
	})
	if err != nil {
		return 0, fmt.Errorf("fraud deadline: %w", err)
	}
	for range decided {
		s.metrics.nudged(ctx, nudgeDeadline)
	}
	if decided > 0 {
		s.Log.Warn("watchdog: orders without a fraud score at the deadline", "orders", decided,
			"deadline", w.FraudDeadline, "action", w.OnFraudDeadline)
	}
	s.afterCommit(ctx, moved)
	return decided, nil
}

// nudge recovers one stuck order and says how: each fact it lacks is
// looked for in its stream and applied; when one is not there, the order's
// order.created is published again.
func (s *Service) nudge(ctx context.Context, o stuckOrder) (string, error) {
	missing := false
	if o.stock == stockPending {
		found, err := s.reapply(ctx, InventoryOutcomeConsumer(), s.ApplyInventoryOutcome,
			"ecommerce.inventory.adjusted.*.*."+o.id, "ecommerce.inventory.rejected.*.*."+o.id)
		if err != nil {
			return nudgeUnresolved, err
		}
		missing = missing || !found
	}
	if o.fraud == fraudPending {
		found, err := s.reapply(ctx, FraudScoreConsumer(), s.ApplyFraudScore, "ml.order.scored.*.*."+o.id)
		if err != nil {
			return nudgeUnresolved, err
		}
		missing = missing || !found
	}
	if !missing {
		return nudgeReapplied, nil
	}
	if _, err := messaging.Resend(ctx, s.Events(), s.JS, o.createdEvent, "ecommerce.order.created.%."+o.id, ":watchdog-"+strconv.Itoa(o.nudges)); err != nil {
		return nudgeUnresolved, err
	}
	return nudgeResent, nil
}

// reapply looks for the newest event on the first of subjects (keyed by
// the order's id: <type>.v<N>.<partition>.<order id>) that cfg's stream
// holds, and hands it to h as cfg's consumer would. It reports whether it
// found one.
func (s *Service) reapply(ctx context.Context, cfg messaging.ConsumerConfig, h messaging.BatchHandler, subjects ...string) (bool, error) {
	for _, subject := range subjects {
		d, err := messaging.LastEvent(ctx, s.JS, cfg.Stream, subject, cfg.Durable)
		switch {
		case errors.Is(err, messaging.ErrNoEvent):
			continue
		case err != nil:
			return false, err
		}
		if err := h(ctx, []*messaging.Delivery{d}); err != nil {
			return false, fmt.Errorf("apply %s: %w", d.Spec, err)
		}
		return true, nil
	}
	return false, nil
}
