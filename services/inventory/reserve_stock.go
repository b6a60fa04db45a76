package inventory

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"time"

	"github.com/jackc/pgx/v5"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	inventoryeventsv1 "github.com/shopbus/shopbus/gen/go/ecommerce/inventory/v1"
	ordereventsv1 "github.com/shopbus/shopbus/gen/go/ecommerce/order/v1"
	ordereventsv2 "github.com/shopbus/shopbus/gen/go/ecommerce/order/v2"
	"github.com/shopbus/shopbus/internal/event"
	"github.com/shopbus/shopbus/internal/messaging"
	"github.com/shopbus/shopbus/internal/postgres"
)

// ReserveStockConsumer is the consumer of the order service's events:
// order.created, every version (v1 is upcast to v2 before the handler sees
// it), and order.rejected, the saga's compensation. It is key-based, keyed
// by order id: the events of one order are handled in order (an order's
// rejection after its creation), a batch of a partition's at a time
// (ReserveStock).
func ReserveStockConsumer() messaging.ConsumerConfig {
	return messaging.KeyBasedConsumer("inventory-reserve-stock", "ecommerce.order.created", "ecommerce.order.rejected")
}

// ReserveStock handles a batch of the order service's events (one
// partition's, in stream order), each once, in one transaction: each run of
// order.created is reserved (reserve), each run of order.rejected released
// (release_stock.go), in stream order. An event of another type is
// dead-lettered alone.
//
// Each run locks the stock rows it changes in SKU order. A batch of several
// runs first locks every row its runs may change, in SKU order, in one
// statement (lockBatch): two runs each locking in order would not make the
// batch lock in order, and batches of two partitions would deadlock (each
// deadlock cost its orders PostgreSQL's deadlock_timeout, 1 s by default).
func (s *Service) ReserveStock(ctx context.Context, batch []*messaging.Delivery) error {
	// A batch of order.created only, the common case, claims its decisions
	// and locks its stock in the round trip of the claim (for every event:
	// an order decided before claims nothing).
	var pre *claim
	var preErr error
	read := func(b *pgx.Batch) {
		if slices.IndexFunc(batch, func(d *messaging.Delivery) bool { return !isCreated(d) }) < 0 {
			pre, preErr = queueClaimAndLock(b, batch)
		}
	}
	return messaging.OnceBatchReading(ctx, s.Events(), ReserveStockConsumer().Durable, batch, read, func(ctx context.Context, tx pgx.Tx, fresh []*messaging.Delivery) error {
		if preErr != nil {
			return preErr
		}
		if pre != nil {
			return s.reserve(ctx, tx, fresh, pre)
		}
		if err := lockBatch(ctx, tx, fresh); err != nil {
			return err
		}
		for len(fresh) > 0 {
			created := isCreated(fresh[0])
			if !created && !isRejected(fresh[0]) {
				return s.UnexpectedEvent(fresh[0])
			}
			n := 1
			for n < len(fresh) && isCreated(fresh[n]) == created && (created || isRejected(fresh[n])) {
				n++
			}
			run := fresh[:n]
			fresh = fresh[n:]
			var err error
			if created {
				err = s.reserve(ctx, tx, run, nil)
			} else {
				err = s.release(ctx, tx, run)
			}
			if err != nil {
				return err
			}
		}
		return nil
	})
}

// lockBatch locks, in SKU order, the stock rows that the runs of fresh may
// change: the SKUs of its orders' lines and those reserved for the orders
// it rejects. A batch of one run needs no more than the run's own lock, and
// gets nothing here.
func lockBatch(ctx context.Context, tx pgx.Tx, fresh []*messaging.Delivery) error {
	runs := 1
	for i := 1; i < len(fresh); i++ {
		if isCreated(fresh[i]) != isCreated(fresh[i-1]) {
			runs++
		}
	}
	if runs == 1 {
		return nil
	}
	var skus, rejected []string
	for _, d := range fresh {
		switch e := d.Event.(type) {
		case *ordereventsv2.OrderCreated:
			for _, l := range e.GetLines() {
				skus = append(skus, l.GetSku())
			}
		case *ordereventsv1.OrderRejected:
			rejected = append(rejected, e.GetOrderId())
		}
	}
	// One array of SKUs, so that the primary key finds them: "= ANY(…) OR
	// sku IN (subquery)" read the whole stock table.
	_, err := tx.Exec(ctx, `SELECT sku FROM stock
		WHERE sku = ANY($1::text[] || ARRAY(SELECT sku FROM reservations WHERE order_id = ANY($2::uuid[])))
		ORDER BY sku FOR UPDATE`, skus, rejected)
	if err != nil {
		return fmt.Errorf("lock stock of the batch: %w", err)
	}
	return nil
}

func isCreated(d *messaging.Delivery) bool {
	_, ok := d.Event.(*ordereventsv2.OrderCreated)
	return ok
}

func isRejected(d *messaging.Delivery) bool {
	_, ok := d.Event.(*ordereventsv1.OrderRejected)
	return ok
}

// reserve handles a run of order.created in the batch's transaction, in a
// few statements for the whole run: it claims a decision per order (two
// events for one order, a v1 and a v2 say, decide once; an order rejected
// before is decided already), locks and reads the stock of every SKU the
// run names (in SKU order, so batches of different partitions never
// deadlock), decides each order in stream order against what the orders
// before it left, reserves stock for every line of an order or for none,
// and writes each outcome event to the outbox. pre is the claim made in
// the round trip of the batch's claim, when it was; else reserve makes it.
func (s *Service) reserve(ctx context.Context, tx pgx.Tx, fresh []*messaging.Delivery, pre *claim) error {
	if pre == nil {
		b := &pgx.Batch{}
		var err error
		if pre, err = queueClaimAndLock(b, fresh); err != nil {
			return err
		}
		if err := tx.SendBatch(ctx, b).Close(); err != nil {
			return err
		}
	}
	claimed, onHand := pre.claimed, pre.onHand
	var (
		b        stockChanges
		outgoing []messaging.Outgoing
		ends     []func(error)
		now      = timestamppb.New(time.Now())
	)
	for _, d := range fresh {
		o := d.Event.(*ordereventsv2.OrderCreated)
		if !claimed[o.GetOrderId()] {
			continue // decided already, by another event for the order
		}
		delete(claimed, o.GetOrderId())
		outcome := decide(o, onHand, &b, now)
		ectx, end := messaging.EventContext(ctx, d)
		ends = append(ends, end)
		env, err := s.NewEvent(ectx, outcome, event.WithCause(d.Envelope))
		if err != nil {
			return err
		}
		outgoing = append(outgoing, messaging.Outgoing{Ctx: ectx, Env: env})
	}
	err := b.apply(ctx, tx, onHand, outgoing)
	for _, end := range ends {
		end(err)
	}
	return err
}

// claim is what queueClaimAndLock reads: the orders whose decision it
// claimed, and what is on hand of each SKU that exists.
type claim struct {
	claimed map[string]bool
	onHand  map[string]int64
}

// queueClaimAndLock queues on b, in one round trip, the claim of the
// decision of each order that the order.created of events name and that
// has none yet, and the lock of the stock rows of their SKUs, in SKU order.
// A concurrent transaction claiming the same order waits for this one and
// then finds it taken. The SKUs of every order are locked: an order decided
// before (a second event for it, or an event handled before, sent with the
// batch's claim) locks its SKUs for nothing, which is rare and harmless.
//
// Sent with the processed-events claim for every event of a batch, it
// claims no order whose event is not fresh: the transaction that recorded
// an order.created as handled claimed its order's decision too, decisions
// are never deleted, and the claim of the event waits for any transaction
// still holding it before this statement runs.
func queueClaimAndLock(b *pgx.Batch, events []*messaging.Delivery) (*claim, error) {
	ids := make([]string, len(events))
	var skus []string
	for i, d := range events {
		o := d.Event.(*ordereventsv2.OrderCreated)
		ids[i] = o.GetOrderId()
		for _, l := range o.GetLines() {
			skus = append(skus, l.GetSku())
		}
	}
	slices.Sort(skus)
	skus = slices.Compact(skus)
	orders, err := postgres.UUIDs(ids)
	if err != nil {
		return nil, fmt.Errorf("claim decisions: order id: %w", err)
	}
	c := &claim{claimed: make(map[string]bool, len(ids)), onHand: make(map[string]int64, len(skus))}
	b.Queue(`INSERT INTO decisions (order_id) SELECT DISTINCT unnest($1::uuid[])
		ON CONFLICT DO NOTHING RETURNING order_id::text`, orders).Query(func(rows pgx.Rows) error {
		var id string
		_, err := pgx.ForEachRow(rows, []any{&id}, func() error { c.claimed[id] = true; return nil })
		if err != nil {
			return fmt.Errorf("claim decisions: %w", err)
		}
		return nil
	})
	b.Queue(`SELECT sku, on_hand FROM stock WHERE sku = ANY($1) ORDER BY sku FOR UPDATE`, skus).Query(func(rows pgx.Rows) error {
		var sku string
		var n int64
		_, err := pgx.ForEachRow(rows, []any{&sku, &n}, func() error { c.onHand[sku] = n; return nil })
		if err != nil {
			return fmt.Errorf("lock stock: %w", err)
		}
		return nil
	})
	return c, nil
}

// stockChanges are a batch's effects, applied by apply in a few statements.
type stockChanges struct {
	reserved map[string]int64 // by SKU
	resOrder []string         // reservations: order, SKU, quantity
	resSKU   []string
	resQty   []int64
}

// decide decides order against onHand (what the orders before it left),
// records its effects in b and onHand, and returns its outcome event:
// InventoryAdjusted, or InventoryRejected with nothing changed.
func decide(order *ordereventsv2.OrderCreated, onHand map[string]int64, b *stockChanges, now *timestamppb.Timestamp) proto.Message {
	// The same SKU may appear on several lines: reserve the sum.
	want := map[string]int64{}
	for _, l := range order.GetLines() {
		want[l.GetSku()] += int64(l.GetQuantity())
	}
	skus := slices.Sorted(maps.Keys(want))
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
		return rejected
	}
	if b.reserved == nil {
		b.reserved = map[string]int64{}
	}
	adjusted := &inventoryeventsv1.InventoryAdjusted{OrderId: order.GetOrderId(), AdjustedAt: now}
	for _, sku := range skus {
		onHand[sku] -= want[sku]
		b.reserved[sku] += want[sku]
		b.resOrder, b.resSKU, b.resQty = append(b.resOrder, order.GetOrderId()), append(b.resSKU, sku), append(b.resQty, want[sku])
		adjusted.Reservations = append(adjusted.Reservations, &inventoryeventsv1.Reservation{
			Sku: sku, Quantity: uint32(want[sku]), Remaining: onHand[sku],
		})
	}
	return adjusted
}

// apply writes b (the stock rows, onHand being what is left, and the
// reservations) and the outcome events to the
// outbox: a statement each, sent in one round trip.
func (b *stockChanges) apply(ctx context.Context, tx pgx.Tx, onHand map[string]int64, outgoing []messaging.Outgoing) error {
	batch := &pgx.Batch{}
	if len(b.reserved) > 0 {
		skus := slices.Sorted(maps.Keys(b.reserved))
		left, reserved := make([]int64, len(skus)), make([]int64, len(skus))
		for i, sku := range skus {
			left[i], reserved[i] = onHand[sku], b.reserved[sku]
		}
		batch.Queue(`UPDATE stock SET on_hand = v.on_hand, reserved = stock.reserved + v.reserved, updated_at = now()
			FROM unnest($1::text[], $2::bigint[], $3::bigint[]) AS v(sku, on_hand, reserved) WHERE stock.sku = v.sku AND stock.sku = ANY($1::text[])`,
			skus, left, reserved)
		orders, err := postgres.UUIDs(b.resOrder)
		if err != nil {
			return fmt.Errorf("reserve stock: order id: %w", err)
		}
		batch.Queue(`INSERT INTO reservations (order_id, sku, quantity)
			SELECT * FROM unnest($1::uuid[], $2::text[], $3::bigint[])`, orders, b.resSKU, b.resQty)
	}
	if err := messaging.SendWithEvents(ctx, tx, batch, outgoing); err != nil {
		return fmt.Errorf("reserve stock: %w", err)
	}
	return nil
}
