package order

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"

	inventoryeventsv1 "github.com/shopbus/shopbus/gen/go/ecommerce/inventory/v1"
	"github.com/shopbus/shopbus/internal/messaging"
)

// InventoryOutcomeConsumer is the consumer of the inventory service's
// outcomes (inventory.adjusted, inventory.rejected). It is key-based, keyed
// by order id, like the order.created that caused them.
func InventoryOutcomeConsumer() messaging.ConsumerConfig {
	return messaging.ConsumerConfig{
		Stream:   "ECOMMERCE_INVENTORY",
		Durable:  "order-apply-inventory-outcome",
		Subjects: []string{"ecommerce.inventory.adjusted", "ecommerce.inventory.rejected"},
		Strategy: messaging.KeyBased,
	}
}

// ApplyInventoryOutcome moves orders from PENDING to CONFIRMED
// (inventory.adjusted) or REJECTED with the reason (inventory.rejected), for
// a batch of outcomes (one partition's, in stream order) in one
// transaction, each once: a redelivered outcome changes nothing. An outcome
// for an unknown order, a second different outcome for an order, or an
// event that is not an outcome is dead-lettered alone.
func (s *Service) ApplyInventoryOutcome(ctx context.Context, batch []*messaging.Delivery) error {
	type decision struct {
		status string
		took   float64 // seconds from the order's creation, on PostgreSQL's clock
	}
	var decided []decision
	err := messaging.OnceBatch(ctx, s.pool, InventoryOutcomeConsumer().Durable, batch, func(ctx context.Context, tx pgx.Tx, d *messaging.Delivery) error {
		var orderID, status, reason string
		switch e := d.Event.(type) {
		case *inventoryeventsv1.InventoryAdjusted:
			orderID, status = e.GetOrderId(), "CONFIRMED"
		case *inventoryeventsv1.InventoryRejected:
			orderID, status, reason = e.GetOrderId(), "REJECTED", rejectReason(e)
		default:
			return messaging.Permanent(fmt.Errorf("order: unexpected event %s", d.Spec))
		}
		var took float64
		err := tx.QueryRow(ctx, `UPDATE orders SET status = $2, reject_reason = $3, updated_at = now()
			WHERE id = $1 AND status = 'PENDING'
			RETURNING extract(epoch FROM clock_timestamp() - created_at)::float8`, orderID, status, reason).Scan(&took)
		if err == nil {
			decided = append(decided, decision{status, took})
			return nil
		}
		if !errors.Is(err, pgx.ErrNoRows) {
			return fmt.Errorf("update order %s: %w", orderID, err)
		}
		var current string
		err = tx.QueryRow(ctx, `SELECT status FROM orders WHERE id = $1`, orderID).Scan(&current)
		if errors.Is(err, pgx.ErrNoRows) {
			return messaging.Permanent(fmt.Errorf("order: %s for unknown order %s", d.Spec, orderID))
		}
		if err != nil {
			return fmt.Errorf("read order %s: %w", orderID, err)
		}
		if current != status {
			// Two different outcomes for one order: the inventory service
			// decides once per order, so this is a bug worth a dead letter.
			return messaging.Permanent(fmt.Errorf("order: %s says %s but order %s is already %s", d.Spec, status, orderID, current))
		}
		return nil
	})
	if err == nil {
		for _, d := range decided {
			s.metrics.decided(ctx, d.status, time.Duration(d.took*float64(time.Second)))
		}
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
