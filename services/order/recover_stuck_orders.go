package order

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/shopbus/shopbus/internal/messaging"
)

// Watchdog configures the search for stuck orders: orders still PENDING
// After their creation, whose outcome was lost on the way (an
// order.created or an inventory outcome dead-lettered, expired or deleted).
type Watchdog struct {
	// After is how long an order may stay PENDING before it is nudged
	// (DefaultWatchdog.After when 0); each later nudge of the same order
	// waits twice as long as the one before, up to 64 times After.
	After time.Duration
	// Every is how often the watchdog looks (DefaultWatchdog.Every when 0).
	Every time.Duration
	// Batch bounds the orders nudged per look (DefaultWatchdog.Batch when 0).
	Batch int
}

// DefaultWatchdog looks every 30 s for orders PENDING for 5 minutes: far
// beyond a decision's usual milliseconds and the consumers' retry budget
// (about 90 s), so it acts only on orders whose events were lost.
var DefaultWatchdog = Watchdog{After: 5 * time.Minute, Every: 30 * time.Second, Batch: 100}

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
}

// RecoverStuckOrders nudges the orders PENDING for longer than w.After
// (with a back-off per order), at most w.Batch of them, each claimed by one
// instance: the inventory outcome of an order that the inventory stream
// holds is applied as the outcome consumer would have (idempotently, under
// its processed_events record); an order without one has its order.created
// published again, same event id, so that an inventory service that
// already handled it skips it and one that lost it decides it.
func (s *Service) RecoverStuckOrders(ctx context.Context, w Watchdog) (Nudged, error) {
	w = w.withDefaults()
	var n Nudged
	rows, err := s.Events().Query(ctx, `UPDATE orders SET nudges = nudges + 1, nudged_at = now()
		WHERE id IN (SELECT id FROM orders WHERE status = 'PENDING' AND created_at < now() - make_interval(secs => $1)
			AND (nudged_at IS NULL OR nudged_at < now() - make_interval(secs => $1 * power(2, least(nudges, 6))))
			ORDER BY created_at LIMIT $2 FOR UPDATE SKIP LOCKED)
		RETURNING id::text, nudges`, w.After.Seconds(), w.Batch)
	if err != nil {
		return n, fmt.Errorf("stuck orders: %w", err)
	}
	type stuck struct {
		id     string
		nudges int
	}
	var orders []stuck
	for rows.Next() {
		var o stuck
		if err := rows.Scan(&o.id, &o.nudges); err != nil {
			rows.Close()
			return n, fmt.Errorf("stuck orders: %w", err)
		}
		orders = append(orders, o)
	}
	if err := rows.Err(); err != nil {
		return n, fmt.Errorf("stuck orders: %w", err)
	}
	for _, o := range orders {
		action, err := s.nudge(ctx, o.id, o.nudges)
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
		log("watchdog: order stuck in PENDING nudged", "order_id", o.id, "nudge", o.nudges, "action", action, "err", err)
	}
	return n, nil
}

// Actions of a nudge, the action label of shopbus_order_nudged_total.
const (
	nudgeReapplied  = "reapplied"
	nudgeResent     = "resent"
	nudgeUnresolved = "unresolved"
)

// nudge recovers one stuck order and says how.
func (s *Service) nudge(ctx context.Context, orderID string, nudges int) (string, error) {
	cfg := InventoryOutcomeConsumer()
	var d *messaging.Delivery
	var err error
	for _, kind := range []string{"adjusted", "rejected"} {
		// Outcomes are keyed by order id: <type>.v<N>.<partition>.<order id>.
		d, err = messaging.LastEvent(ctx, s.JS, cfg.Stream, "ecommerce.inventory."+kind+".*.*."+orderID, cfg.Durable)
		if !errors.Is(err, messaging.ErrNoEvent) {
			break
		}
	}
	switch {
	case err == nil:
		if err := s.ApplyInventoryOutcome(ctx, []*messaging.Delivery{d}); err != nil {
			return nudgeUnresolved, fmt.Errorf("apply %s: %w", d.Spec, err)
		}
		return nudgeReapplied, nil
	case !errors.Is(err, messaging.ErrNoEvent):
		return nudgeUnresolved, err
	}
	if _, err := messaging.Resend(ctx, s.Events(), s.JS, "ecommerce.order.created.%."+orderID, ":watchdog-"+strconv.Itoa(nudges)); err != nil {
		return nudgeUnresolved, err
	}
	return nudgeResent, nil
}

// watch runs RecoverStuckOrders every w.Every until ctx is done.
func (s *Service) watch(ctx context.Context, w Watchdog) {
	w = w.withDefaults()
	t := time.NewTicker(w.Every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		if _, err := s.RecoverStuckOrders(ctx, w); err != nil && ctx.Err() == nil {
			s.Log.Warn("watchdog: cannot look for stuck orders", "err", err)
		}
	}
}
