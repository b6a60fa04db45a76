package inventory

import (
	"context"
	"fmt"
	"slices"
	"time"

	"github.com/jackc/pgx/v5"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	inventoryeventsv1 "github.com/shopbus/shopbus/gen/go/ecommerce/inventory/v1"
	ordereventsv2 "github.com/shopbus/shopbus/gen/go/ecommerce/order/v2"
	"github.com/shopbus/shopbus/internal/event"
	"github.com/shopbus/shopbus/internal/messaging"
)

// ReserveStockConsumer is the consumer of order.created, every version (v1
// is upcast to v2 before the handler sees it). It is key-based, keyed by
// order id: the events of one order are handled in order, a batch of a
// partition's at a time (ReserveStock).
func ReserveStockConsumer() messaging.ConsumerConfig {
	return messaging.ConsumerConfig{
		Stream:   "ECOMMERCE_ORDER",
		Durable:  "inventory-reserve-stock",
		Subjects: []string{"ecommerce.order.created"},
		Strategy: messaging.KeyBased,
	}
}

// ReserveStock handles a batch of order.created (one partition's, in
// stream order), each once, in one transaction: it records the events as
// processed, reserves stock for every line of an order or for none, and
// writes each outcome event to the outbox. The stock rows the whole batch
// needs are locked first, in one order, so that batches of different
// partitions never deadlock. An event that is not an order.created is
// dead-lettered alone.
func (s *Service) ReserveStock(ctx context.Context, batch []*messaging.Delivery) error {
	locked := false
	return messaging.OnceBatch(ctx, s.pool, ReserveStockConsumer().Durable, batch, func(ctx context.Context, tx pgx.Tx, d *messaging.Delivery) error {
		order, ok := d.Event.(*ordereventsv2.OrderCreated)
		if !ok {
			return messaging.Permanent(fmt.Errorf("inventory: unexpected event %s", d.Spec))
		}
		if !locked {
			if err := lockStock(ctx, tx, batch); err != nil {
				return err
			}
			locked = true
		}
		outcome, err := reserve(ctx, tx, order)
		if err != nil || outcome == nil {
			return err
		}
		env, err := event.New(ctx, outcome, event.WithSource(Source), event.WithCause(d.Envelope))
		if err != nil {
			return err
		}
		return messaging.Enqueue(ctx, tx, env)
	})
}

// lockStock locks the stock rows of every SKU the orders of batch name, in
// SKU order.
func lockStock(ctx context.Context, tx pgx.Tx, batch []*messaging.Delivery) error {
	var skus []string
	for _, d := range batch {
		if order, ok := d.Event.(*ordereventsv2.OrderCreated); ok {
			for _, l := range order.GetLines() {
				skus = append(skus, l.GetSku())
			}
		}
	}
	slices.Sort(skus)
	skus = slices.Compact(skus)
	if _, err := tx.Exec(ctx, `SELECT 1 FROM stock WHERE sku = ANY($1) ORDER BY sku FOR UPDATE`, skus); err != nil {
		return fmt.Errorf("lock stock: %w", err)
	}
	return nil
}

// reserve decides and applies the reservation for order in tx, returning the
// outcome event: InventoryAdjusted, or InventoryRejected with nothing changed,
// or nil when the order was decided already (by another event for it).
func reserve(ctx context.Context, tx pgx.Tx, order *ordereventsv2.OrderCreated) (proto.Message, error) {
	// Claim the decision first: a concurrent transaction for the same order
	// waits here and then finds it taken.
	tag, err := tx.Exec(ctx, `INSERT INTO decisions (order_id) VALUES ($1) ON CONFLICT DO NOTHING`, order.GetOrderId())
	if err != nil {
		return nil, fmt.Errorf("claim decision: %w", err)
	}
	if tag.RowsAffected() == 0 {
		return nil, nil
	}
	outcome, err := decide(ctx, tx, order)
	if err != nil {
		return nil, err
	}
	name := "ADJUSTED"
	if _, ok := outcome.(*inventoryeventsv1.InventoryRejected); ok {
		name = "REJECTED"
	}
	if _, err := tx.Exec(ctx, `UPDATE decisions SET outcome = $2 WHERE order_id = $1`, order.GetOrderId(), name); err != nil {
		return nil, fmt.Errorf("record decision: %w", err)
	}
	return outcome, nil
}

func decide(ctx context.Context, tx pgx.Tx, order *ordereventsv2.OrderCreated) (proto.Message, error) {
	// The same SKU may appear on several lines: reserve the sum.
	want := map[string]int64{}
	for _, l := range order.GetLines() {
		want[l.GetSku()] += int64(l.GetQuantity())
	}
	skus := make([]string, 0, len(want))
	for sku := range want {
		skus = append(skus, sku)
	}
	slices.Sort(skus) // lock rows in one order: no deadlocks between orders

	onHand := map[string]int64{}
	rows, err := tx.Query(ctx, `SELECT sku, on_hand FROM stock WHERE sku = ANY($1) ORDER BY sku FOR UPDATE`, skus)
	if err != nil {
		return nil, fmt.Errorf("lock stock: %w", err)
	}
	for rows.Next() {
		var sku string
		var n int64
		if err := rows.Scan(&sku, &n); err != nil {
			rows.Close()
			return nil, fmt.Errorf("lock stock: %w", err)
		}
		onHand[sku] = n
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("lock stock: %w", err)
	}

	now := timestamppb.New(time.Now())
	rejected := &inventoryeventsv1.InventoryRejected{OrderId: order.GetOrderId(), RejectedAt: now}
	for _, sku := range skus {
		if _, known := onHand[sku]; !known {
			rejected.Reason = inventoryeventsv1.RejectionReason_REJECTION_REASON_UNKNOWN_SKU
			rejected.Shortages = append(rejected.Shortages, &inventoryeventsv1.Shortage{Sku: sku, Requested: uint32(want[sku])})
		}
	}
	if len(rejected.Shortages) == 0 {
		for _, sku := range skus {
			if onHand[sku] < want[sku] {
				rejected.Reason = inventoryeventsv1.RejectionReason_REJECTION_REASON_OUT_OF_STOCK
				rejected.Shortages = append(rejected.Shortages, &inventoryeventsv1.Shortage{
					Sku: sku, Requested: uint32(want[sku]), Available: onHand[sku],
				})
			}
		}
	}
	if len(rejected.Shortages) > 0 {
		return rejected, nil
	}

	adjusted := &inventoryeventsv1.InventoryAdjusted{OrderId: order.GetOrderId(), AdjustedAt: now}
	for _, sku := range skus {
		var remaining int64
		err := tx.QueryRow(ctx, `UPDATE stock SET on_hand = on_hand - $2, reserved = reserved + $2, updated_at = now()
			WHERE sku = $1 RETURNING on_hand`, sku, want[sku]).Scan(&remaining)
		if err != nil {
			return nil, fmt.Errorf("reserve %s: %w", sku, err)
		}
		if _, err := tx.Exec(ctx, `INSERT INTO reservations (order_id, sku, quantity) VALUES ($1, $2, $3)`,
			order.GetOrderId(), sku, want[sku]); err != nil {
			return nil, fmt.Errorf("record reservation %s: %w", sku, err)
		}
		adjusted.Reservations = append(adjusted.Reservations, &inventoryeventsv1.Reservation{
			Sku: sku, Quantity: uint32(want[sku]), Remaining: remaining,
		})
	}
	return adjusted, nil
}
