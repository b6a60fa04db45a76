package message

import (
	"context"
	"fmt"

	"github.com/jackc/pgx/v5"
	"google.golang.org/protobuf/proto"

	eventv1 "github.com/shopbus/shopbus/gen/go/shopbus/event/v1"
	"github.com/shopbus/shopbus/internal/event"
	"github.com/shopbus/shopbus/internal/messaging"
)

// Publish writes e, one of the service's events, to the outbox in one
// transaction and returns its envelope: the relay publishes it. An event
// that breaks its contract is refused with the violations, and nothing is
// written.
func (s *Service) Publish(ctx context.Context, e proto.Message) (*eventv1.Envelope, error) {
	env, err := event.New(ctx, e, event.WithSource(Source))
	if err != nil {
		return nil, fmt.Errorf("publish: %w", err)
	}
	if err := messaging.InTx(ctx, s.Pool, func(tx pgx.Tx) error { return messaging.Enqueue(ctx, tx, env) }); err != nil {
		return nil, fmt.Errorf("publish %s: %w", env.GetType(), err)
	}
	return env, nil
}
