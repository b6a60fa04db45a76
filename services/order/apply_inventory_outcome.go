package order

import (
	"context"
	"fmt"
	"strings"

	"github.com/jackc/pgx/v5"

	inventoryeventsv1 "github.com/shopbus/shopbus/gen/go/ecommerce/inventory/v1"
	"github.com/shopbus/shopbus/internal/messaging"
)

// InventoryOutcomeConsumer is the consumer of the inventory service's
// events: its outcomes (inventory.adjusted, inventory.rejected) and its
// releases (inventory.released), keyed by order id like the order.created
// that caused them, and its prices (inventory.priced), keyed by SKU. It is
// key-based: the events of one order, or of one SKU, are handled in the
// order they were published.
func InventoryOutcomeConsumer() messaging.ConsumerConfig {
	return messaging.KeyBasedConsumer("order-apply-inventory-outcome",
		"ecommerce.inventory.adjusted", "ecommerce.inventory.rejected", "ecommerce.inventory.released", "ecommerce.inventory.priced")
}

// ApplyInventoryOutcome handles a batch of the inventory service's events
// (one partition's, in stream order) in one transaction, each once: a
// redelivered event changes nothing. It records each outcome as the order's
// stock (RESERVED or REJECTED, saga.go), which confirms the order when its
// fraud score approved it and rejects it with the reason, records a release
// (RELEASED), and keeps the newest price of each SKU (inventory.priced,
// apply_price.go) with one upsert. An outcome for an unknown order, an
// outcome that contradicts the one recorded, or an event of another type is
// dead-lettered alone.
func (s *Service) ApplyInventoryOutcome(ctx context.Context, batch []*messaging.Delivery) error {
	var moved []transition
	read := readSaga(batch, outcomeOrder)
	err := messaging.OnceBatchReading(ctx, s.Events(), InventoryOutcomeConsumer().Durable, batch, read.queue, func(ctx context.Context, tx pgx.Tx, fresh []*messaging.Delivery) (err error) {
		if read.err != nil {
			return read.err
		}
		orders := read.orders
		for _, d := range fresh { // each event's span, in its trace
			_, end := messaging.EventContext(ctx, d)
			defer func() { end(err) }()
		}
		var priced []*inventoryeventsv1.InventoryPriced
		outcomes := 0
		for _, d := range fresh {
			if e, ok := d.Event.(*inventoryeventsv1.InventoryPriced); ok {
				priced = append(priced, e)
			} else if outcomeOrder(d) != "" {
				outcomes++
			} else {
				return s.UnexpectedEvent(d)
			}
		}
		if len(priced) > 0 { // with the COMMIT
			b := &pgx.Batch{}
			queuePrices(b, priced)
			if err := messaging.SendWithEvents(ctx, tx, b, nil); err != nil {
				return fmt.Errorf("update prices: %w", err)
			}
		}
		if outcomes == 0 {
			return nil
		}
		for _, d := range fresh {
			var orderID string
			var apply func(o *sagaOrder) error
			switch e := d.Event.(type) {
			case *inventoryeventsv1.InventoryAdjusted:
				orderID, apply = e.GetOrderId(), func(o *sagaOrder) error { return o.stockOutcome(stockReserved, "") }
			case *inventoryeventsv1.InventoryRejected:
				orderID, apply = e.GetOrderId(), func(o *sagaOrder) error { return o.stockOutcome(stockRejected, rejectReason(e)) }
			case *inventoryeventsv1.InventoryReleased:
				orderID, apply = e.GetOrderId(), func(o *sagaOrder) error { o.released(len(e.GetLines()) > 0); return nil }
			default:
				continue
			}
			o, ok := orders[orderID]
			if !ok {
				return &messaging.EventError{Delivery: d, Err: messaging.Permanent(fmt.Errorf("order: %s for unknown order %s", d.Spec, orderID))}
			}
			if err := apply(o); err != nil {
				return &messaging.EventError{Delivery: d, Err: messaging.Permanent(err)}
			}
		}
		moved, err = s.saveSaga(ctx, tx, orders)
		return err
	})
	if err == nil {
		s.afterCommit(ctx, moved)
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

// outcomeOrder returns the order an inventory outcome or release names, or
// "" for another event.
func outcomeOrder(d *messaging.Delivery) string {
	switch e := d.Event.(type) {
	case *inventoryeventsv1.InventoryAdjusted:
		return e.GetOrderId()
	case *inventoryeventsv1.InventoryRejected:
		return e.GetOrderId()
	case *inventoryeventsv1.InventoryReleased:
		return e.GetOrderId()
	}
	return ""
}
