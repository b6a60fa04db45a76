package messaging

import (
	"context"
	"fmt"

	"github.com/jackc/pgx/v5"

	eventv1 "github.com/shopbus/shopbus/gen/go/shopbus/event/v1"
	"github.com/shopbus/shopbus/internal/event"
)

// notifyChannel is the PostgreSQL channel that wakes relays when a
// transaction that enqueued events commits; the payload is the schema.
const notifyChannel = "shopbus_outbox"

// Enqueue writes env to the outbox of the schema tx works in. It is published
// after tx commits, and never if tx rolls back: never publish to the broker
// inside a database transaction.
func Enqueue(ctx context.Context, tx pgx.Tx, env *eventv1.Envelope) error {
	spec, err := event.Lookup(env.GetType(), env.GetVersion())
	if err != nil {
		return err
	}
	b, err := event.Encode(env)
	if err != nil {
		return err
	}
	if _, err := tx.Exec(ctx, "INSERT INTO outbox (id, subject, envelope) VALUES ($1, $2, $3)",
		env.GetId(), spec.SubjectFor(env.GetPartitionKey()), b); err != nil {
		return fmt.Errorf("outbox: insert %s %s: %w", spec, env.GetId(), err)
	}
	if _, err := tx.Exec(ctx, "SELECT pg_notify($1, current_schema())", notifyChannel); err != nil {
		return fmt.Errorf("outbox: notify: %w", err)
	}
	return nil
}
