package fraud

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"google.golang.org/protobuf/types/known/timestamppb"

	ordereventsv2 "github.com/shopbus/shopbus/gen/go/ecommerce/order/v2"
	fraudv1 "github.com/shopbus/shopbus/gen/go/ml/fraud/v1"
	"github.com/shopbus/shopbus/internal/event"
	"github.com/shopbus/shopbus/internal/messaging"
	"github.com/shopbus/shopbus/internal/postgres"
)

// ScoreOrderConsumer is the fraud service's consumer of order.created,
// every version (v1 is upcast to v2). It is key-based, keyed by order id,
// beside the inventory service's own consumer of the same events.
func ScoreOrderConsumer() messaging.ConsumerConfig {
	return messaging.KeyBasedConsumer("fraud-score-order", "ecommerce.order.created")
}

// historyWindow is how far back a customer's orders count (the model's
// OrdersLastHour and SpendLastHourMinor).
const historyWindow = time.Hour

// ScoreOrders handles a batch of order.created (one partition's, in stream
// order) in one transaction, each once, in a few statements for the whole
// batch: it adds the orders to the read model, reads each customer's
// history before each order (by the orders' created_at, so a replay scores
// the same), scores each order with the model, records the score (an
// order scored before, by another of its events, is not scored again) and
// writes order.scored to the outbox. An event that is not an order.created
// is dead-lettered alone.
//
// The read model is complete only for what this consumer has handled: the
// customer's orders keyed to partitions not handled yet are missing from
// the history (MODEL.md, "What it does not catch").
func (s *Service) ScoreOrders(ctx context.Context, batch []*messaging.Delivery) error {
	// The read model's rows and histories of every order of the batch go
	// in the round trip of the claim (an order handled before is already
	// recorded, and its history read for nothing).
	var all []*ordereventsv2.OrderCreated
	for _, d := range batch {
		if o, ok := d.Event.(*ordereventsv2.OrderCreated); ok {
			all = append(all, o)
		}
	}
	var histories map[string]history
	var readErr error
	read := func(b *pgx.Batch) { histories, readErr = queueRecordAndRead(b, all) }
	return messaging.OnceBatchReading(ctx, s.Events(), ScoreOrderConsumer().Durable, batch, read, func(ctx context.Context, tx pgx.Tx, fresh []*messaging.Delivery) (err error) {
		if readErr != nil {
			return readErr
		}
		n := len(fresh)
		orders := make([]*ordereventsv2.OrderCreated, 0, n)
		ids := make([]string, 0, n)
		for _, d := range fresh {
			o, ok := d.Event.(*ordereventsv2.OrderCreated)
			if !ok {
				return s.UnexpectedEvent(d)
			}
			orders, ids = append(orders, o), append(ids, o.GetOrderId())
		}
		var (
			decisions, reasons []string
			scores             []float64
			results            = make([]Result, n)
			now                = time.Now()
		)
		for i, o := range orders {
			f := OrderFeatures(o)
			h := histories[o.GetOrderId()]
			f.OrdersLastHour, f.SpendLastHourMinor, f.FirstOrder = h.orders, h.spend, h.first
			results[i] = s.model.Score(f)
			decisions = append(decisions, strings.TrimPrefix(results[i].Decision.String(), "DECISION_"))
			reasons = append(reasons, strings.Join(results[i].Reasons, ","))
			scores = append(scores, results[i].Score)
		}
		orderIDs, err := postgres.UUIDs(ids)
		if err != nil {
			return fmt.Errorf("record scores: order id: %w", err)
		}
		rows, err := tx.Query(ctx, `INSERT INTO scores (order_id, score, decision, reasons, model_version, scored_at)
			SELECT v.id, v.score, v.decision, coalesce(string_to_array(NULLIF(v.reasons, ''), ','), '{}'), $5, $6
			FROM unnest($1::uuid[], $2::float8[], $3::text[], $4::text[]) AS v(id, score, decision, reasons)
			ON CONFLICT (order_id) DO NOTHING RETURNING order_id::text`, orderIDs, scores, decisions, reasons, s.model.Version(), now)
		if err != nil {
			return fmt.Errorf("record scores: %w", err)
		}
		scored, err := pgx.CollectRows(rows, pgx.RowTo[string])
		if err != nil {
			return fmt.Errorf("record scores: %w", err)
		}
		isNew := make(map[string]bool, len(scored))
		for _, id := range scored {
			isNew[id] = true
		}
		var outgoing []messaging.Outgoing
		var ends []func(error)
		defer func() {
			for _, end := range ends {
				end(err)
			}
		}()
		for i, o := range orders {
			if !isNew[o.GetOrderId()] {
				continue // scored already, by another event of the order
			}
			delete(isNew, o.GetOrderId()) // and once, should the batch hold it twice
			ectx, end := messaging.EventContext(ctx, fresh[i])
			ends = append(ends, end)
			r := results[i]
			env, err := s.NewEvent(ectx, &fraudv1.OrderScored{
				OrderId: o.GetOrderId(), Model: ModelName, ModelVersion: s.model.Version(), Score: r.Score, Decision: r.Decision,
				ReasonCodes: r.Reasons, ScoredAt: timestamppb.New(now),
			}, event.WithCause(fresh[i].Envelope))
			if err != nil {
				return err
			}
			outgoing = append(outgoing, messaging.Outgoing{Ctx: ectx, Env: env})
		}
		return messaging.SendWithEvents(ctx, tx, &pgx.Batch{}, outgoing)
	})
}

// history is a customer's orders before one of theirs.
type history struct {
	orders int   // in the hour before
	spend  int64 // their total, in minor units
	first  bool  // none at all before
}

// queueRecordAndRead queues on b the two statements that add orders to the
// read model (each once) and read, for each, the customer's history before
// it, into the map it returns, filled when b's results are read.
func queueRecordAndRead(b *pgx.Batch, orders []*ordereventsv2.OrderCreated) (map[string]history, error) {
	out := make(map[string]history, len(orders))
	if len(orders) == 0 {
		return out, nil
	}
	// Each order once: the history query groups by order, so an order
	// named twice (a copy of its event, under another id or the same)
	// would count the customer's other orders twice.
	var orderIDs, customerIDs []string
	var totals []int64
	var created []time.Time
	seen := make(map[string]bool, len(orders))
	for _, o := range orders {
		if seen[o.GetOrderId()] {
			continue
		}
		seen[o.GetOrderId()] = true
		orderIDs, customerIDs = append(orderIDs, o.GetOrderId()), append(customerIDs, o.GetCustomer().GetCustomerId())
		totals, created = append(totals, o.GetTotal().GetAmountMinor()), append(created, o.GetCreatedAt().AsTime())
	}
	ids, err := postgres.UUIDs(orderIDs)
	if err != nil {
		return nil, fmt.Errorf("record orders: order id: %w", err)
	}
	customers, err := postgres.UUIDs(customerIDs)
	if err != nil {
		return nil, fmt.Errorf("record orders: customer id: %w", err)
	}
	b.Queue(`INSERT INTO customer_orders (order_id, customer_id, total_minor, created_at)
		SELECT * FROM unnest($1::uuid[], $2::uuid[], $3::bigint[], $4::timestamptz[]) ON CONFLICT (order_id) DO NOTHING`,
		ids, customers, totals, created)
	b.Queue(`SELECT v.id::text, count(c.order_id), coalesce(sum(c.total_minor), 0)::bigint,
			NOT EXISTS (SELECT 1 FROM customer_orders e WHERE e.customer_id = v.customer AND e.created_at < v.at AND e.order_id <> v.id)
		FROM unnest($1::uuid[], $2::uuid[], $3::timestamptz[]) AS v(id, customer, at)
		LEFT JOIN customer_orders c ON c.customer_id = v.customer AND c.created_at < v.at
			AND c.created_at >= v.at - make_interval(secs => $4) AND c.order_id <> v.id
		GROUP BY v.id, v.customer, v.at`, ids, customers, created, historyWindow.Seconds()).Query(func(rows pgx.Rows) error {
		var id string
		var h history
		_, err := pgx.ForEachRow(rows, []any{&id, &h.orders, &h.spend, &h.first}, func() error { out[id] = h; return nil })
		if err != nil {
			return fmt.Errorf("read model: %w", err)
		}
		return nil
	})
	return out, nil
}
