package post

import (
	"context"
	"fmt"

	"github.com/jackc/pgx/v5"

	"github.com/shopbus/shopbus/internal/messaging"
)

// EventsConsumer is the service's consumer of the social/post
// events, keyed by partition key: the events of one key are applied in the
// order they were published.
func EventsConsumer() messaging.ConsumerConfig {
	return messaging.ConsumerConfig{
		Stream:   messaging.StreamName("social", "post"),
		Durable:  "post-apply-events",
		Subjects: []string{"social.post.published"},
		Strategy: messaging.KeyBased,
	}
}

// ApplyEvents applies a batch of events (one partition's, in stream order)
// to the read model in one transaction, each event once: a redelivered
// event changes nothing.
func (s *Service) ApplyEvents(ctx context.Context, batch []*messaging.Delivery) error {
	return messaging.OnceBatch(ctx, s.Events(), EventsConsumer().Durable, batch, func(ctx context.Context, tx pgx.Tx, d *messaging.Delivery) error {
		env := d.Envelope
		_, err := tx.Exec(ctx, `INSERT INTO post_activity (key, events, last_event_id, last_type, updated_at) VALUES ($1, 1, $2, $3, $4)
			ON CONFLICT (key) DO UPDATE SET events = post_activity.events + 1, last_event_id = EXCLUDED.last_event_id,
				last_type = EXCLUDED.last_type, updated_at = EXCLUDED.updated_at`,
			env.GetPartitionKey(), env.GetId(), fmt.Sprintf("%s.v%d", env.GetType(), env.GetVersion()), env.GetTs().AsTime())
		if err != nil {
			return fmt.Errorf("apply %s: %w", env.GetType(), err)
		}
		return nil
	})
}
