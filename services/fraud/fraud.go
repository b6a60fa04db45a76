// Package fraud is the fraud service (ml/fraud): it scores every order for
// fraud risk and publishes the score (order.scored) for the order saga, in
// which an order is confirmed only when its stock is reserved and its score
// approves it, held for review when its score asks for a person, and
// rejected when its score declines it.
//
// It knows orders only from their order.created events: it keeps its own
// read model of each customer's recent orders from them (event-carried
// state transfer), never calling the order service. Use cases:
// score_order.go (the consumer), get_score.go (the RPC), prune_history.go
// (the read model's retention); model.go is the
// model (MODEL.md); handler.go maps the use cases onto the Connect API.
package fraud

import (
	"context"
	"errors"

	"github.com/shopbus/shopbus/internal/messaging"
	"github.com/shopbus/shopbus/internal/servicekit"
)

// ErrNotFound means no score is known for the order.
var ErrNotFound = errors.New("no score for this order")

// Service is the fraud service. Its Runtime holds its pools, its JetStream
// and the event path's settings (servicekit).
type Service struct {
	servicekit.Runtime
	model *Model
}

// New returns the fraud service on rt (named "fraud", its schema migrated
// with services.Migrations("fraud") and messaging.Migrations), scoring
// with model.
func New(rt servicekit.Runtime, model *Model) *Service {
	return &Service{Runtime: rt, model: model}
}

// Run relays the outbox, scores order.created and prunes the read model
// (HistoryKeep) until ctx is done.
func (s *Service) Run(ctx context.Context) error {
	return s.Runtime.Run(ctx, []messaging.Subscription{{Config: ScoreOrderConsumer(), Handler: s.ScoreOrders}},
		s.Every(pruneEvery, "prune the read model", s.pruneOld))
}
