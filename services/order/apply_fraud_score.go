package order

import (
	"context"
	"fmt"

	"github.com/jackc/pgx/v5"

	fraudv1 "github.com/shopbus/shopbus/gen/go/ml/fraud/v1"
	"github.com/shopbus/shopbus/internal/messaging"
)

// FraudScoreConsumer is the consumer of the fraud service's scores
// (order.scored), keyed by order id: key-based, so a re-scoring of an order
// is handled after its first score.
func FraudScoreConsumer() messaging.ConsumerConfig {
	return messaging.KeyBasedConsumer("order-apply-fraud-score", "ml.order.scored")
}

// ApplyFraudScore handles a batch of order.scored (one partition's, in
// stream order) in one transaction, each once. It records each order's
// score (saga.go): APPROVE confirms an order whose stock is reserved,
// REVIEW holds it for a person (ReviewOrder), DECLINE rejects it and
// publishes order.rejected so that the inventory service releases what it
// reserved. A score for an order already scored changes nothing; a score
// for an unknown order is dead-lettered alone.
func (s *Service) ApplyFraudScore(ctx context.Context, batch []*messaging.Delivery) error {
	var moved []transition
	read := readSaga(batch, func(d *messaging.Delivery) string {
		if e, ok := d.Event.(*fraudv1.OrderScored); ok {
			return e.GetOrderId()
		}
		return ""
	})
	err := messaging.OnceBatchReading(ctx, s.Events(), FraudScoreConsumer().Durable, batch, read.queue, func(ctx context.Context, tx pgx.Tx, fresh []*messaging.Delivery) (err error) {
		if read.err != nil {
			return read.err
		}
		orders := read.orders
		for _, d := range fresh {
			if _, ok := d.Event.(*fraudv1.OrderScored); !ok {
				return s.UnexpectedEvent(d)
			}
		}
		for _, d := range fresh {
			_, end := messaging.EventContext(ctx, d)
			defer func() { end(err) }()
			e := d.Event.(*fraudv1.OrderScored)
			o, ok := orders[e.GetOrderId()]
			if !ok {
				return &messaging.EventError{Delivery: d, Err: messaging.Permanent(fmt.Errorf("order: %s for unknown order %s", d.Spec, e.GetOrderId()))}
			}
			decision, ok := fraudDecisions[e.GetDecision()]
			if !ok {
				return &messaging.EventError{Delivery: d, Err: messaging.Permanent(fmt.Errorf("order: %s with decision %v", d.Spec, e.GetDecision()))}
			}
			o.scored(decision, e.GetScore(), e.GetReasonCodes(), e.GetModel(), e.GetModelVersion(), e.GetScoredAt().AsTime())
		}
		moved, err = s.saveSaga(ctx, tx, orders)
		return err
	})
	if err == nil {
		s.afterCommit(ctx, moved)
	}
	return err
}

// fraudDecisions are the fraud column's values of the contract's decisions.
var fraudDecisions = map[fraudv1.Decision]string{
	fraudv1.Decision_DECISION_APPROVE: fraudApprove,
	fraudv1.Decision_DECISION_REVIEW:  fraudReview,
	fraudv1.Decision_DECISION_DECLINE: fraudDecline,
}
