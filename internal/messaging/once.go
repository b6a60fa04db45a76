package messaging

import (
	"context"
	"fmt"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
)

// Once runs fn in one transaction with the record that consumer has handled
// the event eventID. When the record exists already (a redelivery, a
// re-publish under another Nats-Msg-Id, a redrive), fn is not run and Once
// returns false: the event had its effect. Otherwise fn's effect and the
// record commit together, or neither does.
func Once(ctx context.Context, pool *pgxpool.Pool, consumer, eventID string, fn func(pgx.Tx) error) (first bool, err error) {
	err = InTx(ctx, pool, func(tx pgx.Tx) error {
		tag, err := tx.Exec(ctx,
			"INSERT INTO processed_events (consumer, event_id) VALUES ($1, $2) ON CONFLICT DO NOTHING",
			consumer, eventID)
		if err != nil {
			return fmt.Errorf("processed_events: %w", err)
		}
		if tag.RowsAffected() == 0 {
			return nil
		}
		first = true
		return fn(tx)
	})
	if err != nil {
		return false, err
	}
	return first, nil
}
