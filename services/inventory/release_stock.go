package inventory

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"google.golang.org/protobuf/types/known/timestamppb"

	inventoryeventsv1 "github.com/shopbus/shopbus/gen/go/ecommerce/inventory/v1"
	ordereventsv1 "github.com/shopbus/shopbus/gen/go/ecommerce/order/v1"
	"github.com/shopbus/shopbus/internal/event"
	"github.com/shopbus/shopbus/internal/messaging"
)

// release handles a run of order.rejected, the saga's compensation, in the
// batch's transaction: for each order it claims the decision (so an
// order.created that comes later, a copy or a stray, reserves nothing),
// deletes the order's reservations, puts their units back on hand (the
// stock rows locked in SKU order, as reserve locks them), and writes
// inventory.released with what it released, empty when nothing was
// reserved (the inventory service rejected the order itself, or released
// it before). A reservation is deleted once, so stock comes back once
// however often the rejection arrives.
func (s *Service) release(ctx context.Context, tx pgx.Tx, fresh []*messaging.Delivery) error {
	ids := make([]string, len(fresh))
	for i, d := range fresh {
		ids[i] = d.Event.(*ordereventsv1.OrderRejected).GetOrderId()
	}
	type line struct {
		order, sku string
		qty        int64
	}
	var lines []line
	b := &pgx.Batch{}
	b.Queue(`INSERT INTO decisions (order_id) SELECT DISTINCT unnest($1::uuid[]) ON CONFLICT DO NOTHING`, ids)
	b.Queue(`DELETE FROM reservations WHERE order_id = ANY($1::uuid[]) RETURNING order_id::text, sku, quantity`, ids).Query(func(rows pgx.Rows) error {
		var l line
		_, err := pgx.ForEachRow(rows, []any{&l.order, &l.sku, &l.qty}, func() error { lines = append(lines, l); return nil })
		return err
	})
	if err := tx.SendBatch(ctx, b).Close(); err != nil {
		return fmt.Errorf("release stock: %w", err)
	}
	units := map[string]int64{}
	byOrder := map[string][]*inventoryeventsv1.ReleasedLine{}
	for _, l := range lines {
		units[l.sku] += l.qty
		byOrder[l.order] = append(byOrder[l.order], &inventoryeventsv1.ReleasedLine{Sku: l.sku, Quantity: uint32(l.qty)})
	}
	b = &pgx.Batch{}
	if len(units) > 0 {
		skus := make([]string, 0, len(units))
		for sku := range units {
			skus = append(skus, sku)
		}
		slices.Sort(skus)
		qty := make([]int64, len(skus))
		for i, sku := range skus {
			qty[i] = units[sku]
		}
		b.Queue(`SELECT sku FROM stock WHERE sku = ANY($1) ORDER BY sku FOR UPDATE`, skus)
		b.Queue(`UPDATE stock SET on_hand = stock.on_hand + v.qty, reserved = stock.reserved - v.qty, updated_at = now()
			FROM unnest($1::text[], $2::bigint[]) AS v(sku, qty) WHERE stock.sku = v.sku AND stock.sku = ANY($1::text[])`, skus, qty)
	}
	now := timestamppb.New(time.Now())
	var outgoing []messaging.Outgoing
	var ends []func(error)
	done := map[string]bool{}
	for i, d := range fresh {
		id := ids[i]
		if done[id] {
			continue // one release per order, should the run hold it twice
		}
		done[id] = true
		ectx, end := messaging.EventContext(ctx, d)
		ends = append(ends, end)
		slices.SortFunc(byOrder[id], func(a, b *inventoryeventsv1.ReleasedLine) int { return strings.Compare(a.GetSku(), b.GetSku()) })
		env, err := s.NewEvent(ectx, &inventoryeventsv1.InventoryReleased{OrderId: id, Lines: byOrder[id], ReleasedAt: now},
			event.WithCause(d.Envelope))
		if err != nil {
			return err
		}
		outgoing = append(outgoing, messaging.Outgoing{Ctx: ectx, Env: env})
	}
	err := messaging.SendWithEvents(ctx, tx, b, outgoing)
	for _, e := range ends {
		e(err)
	}
	if err != nil {
		return fmt.Errorf("release stock: %w", err)
	}
	return nil
}
