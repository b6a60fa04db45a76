package order

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"

	inventoryeventsv1 "github.com/shopbus/shopbus/gen/go/ecommerce/inventory/v1"
	"github.com/shopbus/shopbus/internal/messaging"
)

// InventoryOutcomeConsumer is the consumer of the inventory service's
// events: its outcomes (inventory.adjusted, inventory.rejected), keyed by
// order id like the order.created that caused them, and its prices
// (inventory.priced), keyed by SKU. It is key-based: the events of one order,
// or of one SKU, are handled in the order they were published.
func InventoryOutcomeConsumer() messaging.ConsumerConfig {
	return messaging.ConsumerConfig{
		Stream:   "ECOMMERCE_INVENTORY",
		Durable:  "order-apply-inventory-outcome",
		Subjects: []string{"ecommerce.inventory.adjusted", "ecommerce.inventory.rejected", "ecommerce.inventory.priced"},
		Strategy: messaging.KeyBased,
	}
}

// ApplyInventoryOutcome handles a batch of the inventory service's events
// (one partition's, in stream order) in one transaction, each once: a
// redelivered event changes nothing. It moves orders from PENDING to
// CONFIRMED (inventory.adjusted) or REJECTED with the reason
// (inventory.rejected), with one update for the whole batch, and keeps the
// newest price of each SKU (inventory.priced, apply_price.go) with one
// upsert. An outcome for an unknown order, a second different outcome for
// an order, or an event of another type is dead-lettered alone.
func (s *Service) ApplyInventoryOutcome(ctx context.Context, batch []*messaging.Delivery) error {
	type decision struct {
		status string
		took   float64 // seconds from the order's creation, on PostgreSQL's clock
	}
	var decided []decision
	var notify []string // the orders decided, for their WatchOrder streams
	err := messaging.OnceBatchAll(ctx, s.Events(), InventoryOutcomeConsumer().Durable, batch, func(ctx context.Context, tx pgx.Tx, fresh []*messaging.Delivery) (err error) {
		decided, notify = decided[:0], notify[:0]
		for _, d := range fresh { // each event's span, in its trace
			_, end := messaging.EventContext(ctx, d)
			defer func() { end(err) }()
		}
		var ids, statuses, reasons []string
		var priced []*inventoryeventsv1.InventoryPriced
		first := map[string]*messaging.Delivery{} // the batch's first outcome of each order
		statusOf := map[string]string{}
		for _, d := range fresh {
			var orderID, status, reason string
			switch e := d.Event.(type) {
			case *inventoryeventsv1.InventoryAdjusted:
				orderID, status = e.GetOrderId(), "CONFIRMED"
			case *inventoryeventsv1.InventoryRejected:
				orderID, status, reason = e.GetOrderId(), "REJECTED", rejectReason(e)
			case *inventoryeventsv1.InventoryPriced:
				priced = append(priced, e)
				continue
			default:
				return &messaging.EventError{Delivery: d, Err: messaging.Permanent(fmt.Errorf("order: unexpected event %s", d.Spec))}
			}
			if prev, ok := statusOf[orderID]; ok {
				if prev != status {
					return &messaging.EventError{Delivery: d, Err: messaging.Permanent(fmt.Errorf("order: %s says %s but order %s is already %s", d.Spec, status, orderID, prev))}
				}
				continue // the same outcome twice
			}
			statusOf[orderID], first[orderID] = status, d
			ids, statuses, reasons = append(ids, orderID), append(statuses, status), append(reasons, reason)
		}
		updated := map[string]bool{}
		b := &pgx.Batch{}
		queuePrices(b, priced)
		// With no outcome in the batch (only prices), this updates nothing.
		b.Queue(`UPDATE orders SET status = v.status, reject_reason = v.reason, updated_at = now()
			FROM unnest($1::uuid[], $2::text[], $3::text[]) AS v(id, status, reason)
			WHERE orders.id = v.id AND orders.id = ANY($1::uuid[]) AND orders.status = 'PENDING'
			RETURNING orders.id::text, v.status, extract(epoch FROM clock_timestamp() - orders.created_at)::float8`,
			ids, statuses, reasons).Query(func(rows pgx.Rows) error {
			var id string
			var d decision
			_, err := pgx.ForEachRow(rows, []any{&id, &d.status, &d.took}, func() error {
				updated[id] = true
				decided = append(decided, d)
				notify = append(notify, id)
				return nil
			})
			return err
		})
		if err := tx.SendBatch(ctx, b).Close(); err != nil {
			return fmt.Errorf("update orders and prices: %w", err)
		}
		if len(updated) == len(ids) {
			return nil
		}
		// The rest were decided before: by this outcome (a redelivery under
		// another event id), or by a different one, or the order is unknown.
		var rest []string
		for _, id := range ids {
			if !updated[id] {
				rest = append(rest, id)
			}
		}
		current := map[string]string{}
		rows, err := tx.Query(ctx, `SELECT id::text, status FROM orders WHERE id = ANY($1::uuid[])`, rest)
		if err != nil {
			return fmt.Errorf("read orders: %w", err)
		}
		for rows.Next() {
			var id, status string
			if err := rows.Scan(&id, &status); err != nil {
				rows.Close()
				return fmt.Errorf("read orders: %w", err)
			}
			current[id] = status
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return fmt.Errorf("read orders: %w", err)
		}
		for _, id := range rest {
			d := first[id]
			switch cur, ok := current[id]; {
			case !ok:
				return &messaging.EventError{Delivery: d, Err: messaging.Permanent(fmt.Errorf("order: %s for unknown order %s", d.Spec, id))}
			case cur != statusOf[id]:
				// Two different outcomes for one order: the inventory
				// service decides once per order, so this is a bug worth a
				// dead letter.
				return &messaging.EventError{Delivery: d, Err: messaging.Permanent(fmt.Errorf("order: %s says %s but order %s is already %s", d.Spec, statusOf[id], id, cur))}
			}
		}
		return nil
	})
	if err == nil {
		for _, d := range decided {
			s.metrics.decided(ctx, d.status, time.Duration(d.took*float64(time.Second)))
		}
		// After the commit and outside it: a notification inside the
		// transaction would hold PostgreSQL's notify lock until the commit,
		// serialising these commits. Best effort: a watch that misses it
		// reads its order again within watchRecheck.
		s.decided.notify(ctx, s.Events(), notify, s.Log)
	}
	return err
}

// rejectReason renders a rejection for people: "out of stock: TEE-BLK-M
// (requested 3, available 1)".
func rejectReason(e *inventoryeventsv1.InventoryRejected) string {
	var b strings.Builder
	switch e.GetReason() {
	case inventoryeventsv1.RejectionReason_REJECTION_REASON_UNKNOWN_SKU:
		b.WriteString("unknown SKU: ")
	default:
		b.WriteString("out of stock: ")
	}
	for i, sh := range e.GetShortages() {
		if i > 0 {
			b.WriteString(", ")
		}
		if e.GetReason() == inventoryeventsv1.RejectionReason_REJECTION_REASON_UNKNOWN_SKU {
			b.WriteString(sh.GetSku())
		} else {
			fmt.Fprintf(&b, "%s (requested %d, available %d)", sh.GetSku(), sh.GetRequested(), sh.GetAvailable())
		}
	}
	return b.String()
}
