package order

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"google.golang.org/protobuf/types/known/timestamppb"

	ordereventsv1 "github.com/shopbus/shopbus/gen/go/ecommerce/order/v1"
	orderv1 "github.com/shopbus/shopbus/gen/go/shopbus/order/v1"
	"github.com/shopbus/shopbus/internal/messaging"
	"github.com/shopbus/shopbus/internal/postgres"
)

// The order saga (docs/patterns.md): a choreography of three services. The
// order service publishes order.created; the inventory service reserves
// the stock (inventory.adjusted) or refuses (inventory.rejected); the fraud
// service scores the order (order.scored). An order's status follows from
// three facts, each recorded when its event arrives, in whatever order,
// however often:
//
//	stock   PENDING, RESERVED, REJECTED, or RELEASED once a rejected
//	        order's reservation was given back (inventory.released)
//	fraud   PENDING, APPROVE, REVIEW, DECLINE, or DEADLINE: no score came
//	        within the fraud deadline and the order waits for a person
//	review  a person's decision on an order in REVIEW (ReviewOrder):
//	        "", APPROVED or REJECTED
//
// An order is CONFIRMED once its stock is RESERVED and its score (or a
// reviewer) approves it; REJECTED as soon as the stock, the score or a
// reviewer refuses it; in REVIEW while a score asked for a person; PENDING
// otherwise. CONFIRMED and REJECTED are final. When the score or a reviewer
// rejects an order whose stock the inventory service may have reserved,
// the order service publishes order.rejected, the compensating event: the
// inventory service releases the reservation, once, and says so with
// inventory.released.

// Facts and statuses, as stored.
const (
	statusPending   = "PENDING"
	statusConfirmed = "CONFIRMED"
	statusRejected  = "REJECTED"
	statusReview    = "REVIEW"

	stockPending  = "PENDING"
	stockReserved = "RESERVED"
	stockRejected = "REJECTED"
	stockReleased = "RELEASED"

	fraudPending  = "PENDING"
	fraudApprove  = "APPROVE"
	fraudReview   = "REVIEW"
	fraudDecline  = "DECLINE"
	fraudDeadline = "DEADLINE"

	reviewNone     = ""
	reviewApproved = "APPROVED"
	reviewRejected = "REJECTED"
)

// sagaOrder is one order's state in the saga, read for update.
type sagaOrder struct {
	id                   string
	status, stock, fraud string
	review, rejectReason string
	score                *float64
	reasons              []string
	model, modelVersion  string
	scoredAt             *time.Time
	createdAt            time.Time
	from                 string // the status when read
	changed              bool
	compensate           ordereventsv1.RejectionReason // publish order.rejected with it (0: none)
	compensationDetail   string
}

// watched is what a WatchOrder stream shows of o: as scanOrder reads it,
// with no lines nor times.
func (o *sagaOrder) watched() *orderv1.Order {
	w := &orderv1.Order{OrderId: o.id, Status: statusOf(o.status), RejectReason: o.rejectReason}
	if o.score != nil { // scored
		w.Fraud = &orderv1.FraudScore{Score: *o.score, Decision: fraudDecisionOf[o.fraud], ReasonCodes: o.reasons,
			Model: o.model, ModelVersion: o.modelVersion}
		if o.scoredAt != nil { // as stored: to the microsecond
			w.Fraud.ScoredAt = timestamppb.New(o.scoredAt.Truncate(time.Microsecond))
		}
	}
	return w
}

// final reports whether the order's status can no longer change.
func (o *sagaOrder) final() bool { return o.status == statusConfirmed || o.status == statusRejected }

// The beginnings of the reasons the saga gives a rejection that is not the
// stock's: the fraud score's, its deadline's and a reviewer's, which
// customerView hides from customers.
const (
	reasonFraud  = "fraud: "
	reasonReview = "rejected by review"
)

// settle derives the status from the facts after an event changed them.
// reason is why the order is rejected, should this be the event that
// rejects it; compensate, when not 0, says the rejection must release the
// stock the inventory service may hold (order.rejected).
func (o *sagaOrder) settle(reason string, compensate ordereventsv1.RejectionReason, detail string) {
	o.changed = true
	if o.final() {
		return
	}
	next := statusPending
	switch {
	case o.stock == stockRejected || o.fraud == fraudDecline || o.review == reviewRejected:
		next = statusRejected
	case o.stock == stockReserved && (o.fraud == fraudApprove || o.review == reviewApproved):
		next = statusConfirmed
	case (o.fraud == fraudReview || o.fraud == fraudDeadline) && o.review == reviewNone:
		next = statusReview
	}
	if next == statusRejected {
		o.rejectReason = reason
		if compensate != 0 && o.stock != stockRejected {
			o.compensate, o.compensationDetail = compensate, detail
		}
	}
	o.status = next
}

// stockOutcome records the inventory service's outcome: RESERVED or
// REJECTED (with reason). It returns an error when it contradicts the
// outcome already recorded (the inventory service decides once per order).
func (o *sagaOrder) stockOutcome(stock, reason string) error {
	switch {
	case o.stock == stock, stock == stockReserved && o.stock == stockReleased:
		return nil // the same outcome again
	case o.stock != stockPending:
		return fmt.Errorf("order: the inventory service says %s but order %s's stock is already %s", stock, o.id, o.stock)
	}
	o.stock = stock
	o.settle(reason, 0, "")
	return nil
}

// released records that the inventory service gave back the order's
// reservation; gaveBack says whether it gave back any stock. A release
// that gave stock back before the order learned of the reservation (its
// inventory.adjusted redriven later, say) records both: the reservation
// that comes after it changes nothing.
func (o *sagaOrder) released(gaveBack bool) {
	if o.stock == stockReserved || o.stock == stockPending && gaveBack {
		o.stock = stockReleased
		o.changed = true
	}
}

// scored records the fraud score. A score replaces none, or the deadline's
// placeholder while no person has decided; a second score (a redelivery
// under another event id, a re-scoring) changes nothing.
func (o *sagaOrder) scored(decision string, score float64, reasons []string, model, version string, at time.Time) {
	if o.fraud != fraudPending && !(o.fraud == fraudDeadline && o.review == reviewNone) {
		return
	}
	o.fraud, o.score, o.reasons, o.model, o.modelVersion, o.scoredAt = decision, &score, reasons, model, version, &at
	o.settle(fmt.Sprintf(reasonFraud+"declined (score %.2f: %s)", score, strings.Join(reasons, ", ")),
		ordereventsv1.RejectionReason_REJECTION_REASON_FRAUD_DECLINED, "")
}

// reviewed records a person's decision on an order in REVIEW.
func (o *sagaOrder) reviewed(approve bool, note string) {
	o.review = reviewRejected
	if approve {
		o.review = reviewApproved
	}
	reason := reasonReview
	if note != "" {
		reason += ": " + note
	}
	o.settle(reason, ordereventsv1.RejectionReason_REJECTION_REASON_REVIEW_REJECTED, note)
}

// deadlinePassed records that no score came within the fraud deadline,
// deciding as action says.
func (o *sagaOrder) deadlinePassed(action FraudDeadlineAction, deadline time.Duration) {
	if o.fraud != fraudPending {
		return
	}
	o.reasons = []string{"NO_SCORE_IN_TIME"}
	switch action {
	case DeadlineApprove:
		o.fraud = fraudApprove
	case DeadlineReject:
		o.fraud = fraudDecline
	default:
		o.fraud = fraudDeadline
	}
	o.settle(fmt.Sprintf(reasonFraud+"no score within %v", deadline), ordereventsv1.RejectionReason_REJECTION_REASON_FRAUD_DEADLINE, "")
}

// sagaColumns are the columns loadSaga reads.
const sagaColumns = `id::text, status, stock, fraud, review, reject_reason, fraud_score, fraud_reasons, fraud_model,
	fraud_model_version, scored_at, created_at`

// queueLoadSaga queues on b the read of the orders ids name, locked for
// update in id order (so that two consumers' transactions never
// deadlock), into the map it returns, by id, filled when b's results are
// read: a saga consumer reads them in the round trip of its claim
// (messaging.OnceBatchReading).
//
// The transaction plans its statements for their ids from there on
// (plan_cache_mode): a prepared statement's generic plan, made while orders
// was still small (a new deployment, before autovacuum first analyzes it),
// scans the whole table, and the connection keeps it until the next
// analysis: in a 10 s benchmark from empty tables, 4,282 scans read 3.2
// million rows for 1,431 orders (docs/benchmarks.md).
func queueLoadSaga(b *pgx.Batch, ids []string) (map[string]*sagaOrder, error) {
	out := make(map[string]*sagaOrder, len(ids))
	if len(ids) == 0 {
		return out, nil
	}
	uuids, err := postgres.UUIDs(ids)
	if err != nil {
		return nil, fmt.Errorf("read orders: order id: %w", err)
	}
	b.Queue(`SELECT set_config('plan_cache_mode', 'force_custom_plan', true)`)
	b.Queue(`SELECT `+sagaColumns+` FROM orders WHERE id = ANY($1::uuid[]) ORDER BY id FOR UPDATE`, uuids).Query(func(rows pgx.Rows) error {
		defer rows.Close()
		for rows.Next() {
			o := &sagaOrder{}
			if err := rows.Scan(&o.id, &o.status, &o.stock, &o.fraud, &o.review, &o.rejectReason, &o.score, &o.reasons, &o.model,
				&o.modelVersion, &o.scoredAt, &o.createdAt); err != nil {
				return fmt.Errorf("read orders: %w", err)
			}
			o.from = o.status
			out[o.id] = o
		}
		if err := rows.Err(); err != nil {
			return fmt.Errorf("read orders: %w", err)
		}
		return nil
	})
	return out, nil
}

// sagaRead is a saga consumer's read of the orders its batch names, in the
// round trip of its claim (messaging.OnceBatchReading).
type sagaRead struct {
	ids    []string
	orders map[string]*sagaOrder // once read
	err    error
}

// readSaga returns the read of the orders that batch's events name
// (orderOf: an event's order, "" for none).
func readSaga(batch []*messaging.Delivery, orderOf func(*messaging.Delivery) string) *sagaRead {
	r := &sagaRead{}
	for _, d := range batch {
		if id := orderOf(d); id != "" {
			r.ids = append(r.ids, id)
		}
	}
	return r
}

// queue queues the read on b.
func (r *sagaRead) queue(b *pgx.Batch) { r.orders, r.err = queueLoadSaga(b, r.ids) }

// loadSaga reads the orders ids name, locked for update, in a round trip
// of its own (queueLoadSaga).
func loadSaga(ctx context.Context, tx pgx.Tx, ids []string) (map[string]*sagaOrder, error) {
	b := &pgx.Batch{}
	out, err := queueLoadSaga(b, ids)
	if err != nil || b.Len() == 0 {
		return out, err
	}
	if err := tx.SendBatch(ctx, b).Close(); err != nil {
		return nil, err
	}
	return out, nil
}

// transition is an order whose status a transaction changed.
type transition struct {
	id, to string
	took   time.Duration // from its creation
	// watched is what a WatchOrder stream shows of the order's change: its
	// id, status, reject reason and fraud score.
	watched *orderv1.Order
}

// saveSaga writes the orders that changed, the order.rejected of each that
// must release its stock, and the notification that wakes the WatchOrder
// streams of those whose status changed, in one round trip: the COMMIT's,
// when InTx runs tx. It returns the orders whose status changed.
func (s *Service) saveSaga(ctx context.Context, tx pgx.Tx, orders map[string]*sagaOrder) ([]transition, error) {
	var (
		ids, statuses, stocks, frauds, reviews, reasons, reasonCodes, models, versions []string
		scores                                                                         []*float64
		scoredAt                                                                       []*time.Time
		outgoing                                                                       []messaging.Outgoing
		moved                                                                          []transition
		now                                                                            = time.Now()
	)
	for _, o := range orders {
		if !o.changed {
			continue
		}
		ids, statuses, stocks, frauds, reviews = append(ids, o.id), append(statuses, o.status), append(stocks, o.stock), append(frauds, o.fraud), append(reviews, o.review)
		reasons, reasonCodes, models, versions = append(reasons, o.rejectReason), append(reasonCodes, strings.Join(o.reasons, ",")), append(models, o.model), append(versions, o.modelVersion)
		scores, scoredAt = append(scores, o.score), append(scoredAt, o.scoredAt)
		if o.status != o.from {
			moved = append(moved, transition{id: o.id, to: o.status, took: now.Sub(o.createdAt), watched: o.watched()})
		}
		if o.compensate != 0 {
			env, err := s.NewEvent(ctx, &ordereventsv1.OrderRejected{OrderId: o.id, Reason: o.compensate, Detail: truncateRunes(o.compensationDetail, 500),
				RejectedAt: timestamppb.New(now)})
			if err != nil {
				return nil, err
			}
			outgoing = append(outgoing, messaging.Outgoing{Ctx: ctx, Env: env})
		}
	}
	if len(ids) == 0 {
		return nil, nil
	}
	uuids, err := postgres.UUIDs(ids)
	if err != nil {
		return nil, fmt.Errorf("update orders: order id: %w", err)
	}
	// updated_at is when the status last changed (the Order's contract): a
	// fact that moves no status (a release after a rejection, a score after
	// a decision) leaves it, as it leaves the WatchOrder streams unwoken.
	// The update, the compensations' outbox rows and the notification of
	// the orders that moved go with the COMMIT, in its round trip
	// (SendWithEvents). In a batch the update is a prepared statement,
	// which PostgreSQL may give a generic plan: it is planned for its ids,
	// as queueLoadSaga's read is. The notification takes PostgreSQL's
	// notify lock at the commit, so the commits that notify take turns, as
	// separate notifying transactions would.
	b := &pgx.Batch{}
	b.Queue(`SELECT set_config('plan_cache_mode', 'force_custom_plan', true)`)
	b.Queue(`UPDATE orders SET status = v.status, stock = v.stock, fraud = v.fraud, review = v.review, reject_reason = v.reason,
		fraud_reasons = coalesce(string_to_array(NULLIF(v.codes, ''), ','), '{}'), fraud_model = v.model, fraud_model_version = v.version,
		fraud_score = v.score, scored_at = v.scored_at,
		updated_at = CASE WHEN orders.status IS DISTINCT FROM v.status THEN now() ELSE orders.updated_at END
		FROM unnest($1::uuid[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[], $7::text[], $8::text[], $9::text[],
			$10::float8[], $11::timestamptz[]) AS v(id, status, stock, fraud, review, reason, codes, model, version, score, scored_at)
		WHERE orders.id = v.id AND orders.id = ANY($1::uuid[])`,
		uuids, statuses, stocks, frauds, reviews, reasons, reasonCodes, models, versions, scores, scoredAt)
	if err := queueNotify(b, moved); err != nil {
		return nil, err
	}
	if err := messaging.SendWithEvents(ctx, tx, b, outgoing); err != nil {
		return nil, fmt.Errorf("update orders: %w", err)
	}
	return moved, nil
}

// truncateRunes cuts s to at most n characters.
func truncateRunes(s string, n int) string {
	r := []rune(s)
	if len(r) <= n {
		return s
	}
	return string(r[:n])
}

// afterCommit records the decision metric of each final transition a
// committed transaction made (saveSaga notified the WatchOrder streams).
func (s *Service) afterCommit(ctx context.Context, moved []transition) {
	for _, t := range moved {
		if t.to == statusConfirmed || t.to == statusRejected {
			s.metrics.decided(ctx, t.to, t.took)
		}
	}
}
