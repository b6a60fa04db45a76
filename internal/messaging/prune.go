package messaging

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/nats-io/nats.go/jetstream"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"

	"github.com/shopbus/shopbus/internal/telemetry"
)

// Retention of a service's messaging tables (see ADR 006, "Retention"):
//
//   - an outbox row is deleted OutboxKeep after JetStream acknowledged it:
//     it is never published again, and the stream holds the event;
//   - a processed_events row is deleted once no copy of its event can come
//     back: a copy comes back only from its stream (a redelivery, a
//     re-publish inside the duplicate window, a redrive, which republishes
//     the original read back from the stream). A redrive stores a new copy
//     while the original is still there, which the stream then keeps for
//     its whole retention again, so a row is kept for twice the consumed
//     stream's retention plus ProcessedMargin, and never deleted when the
//     stream keeps events forever.
const (
	OutboxKeep      = 24 * time.Hour
	ProcessedMargin = 24 * time.Hour
	// pruneEvery is how often a service prunes; pruneChunk bounds the
	// rows one statement deletes, so a large backlog of old rows never
	// holds locks for long.
	pruneEvery = time.Hour
	pruneChunk = 10_000
)

// Pruned is what one Prune deleted.
type Pruned struct{ Outbox, Processed int64 }

// Prune deletes, in pool's schema, the outbox rows published before
// now - OutboxKeep and the processed events of consumer older than
// 2 × streamMaxAge + ProcessedMargin (none when streamMaxAge is 0: the
// stream keeps events forever).
func Prune(ctx context.Context, pool *pgxpool.Pool, consumer string, streamMaxAge time.Duration, now time.Time) (Pruned, error) {
	var p Pruned
	var err error
	p.Outbox, err = deleteChunks(ctx, pool, `DELETE FROM outbox WHERE id IN (
		SELECT id FROM outbox WHERE published_at < $1 LIMIT $2)`, now.Add(-OutboxKeep))
	if err != nil {
		return p, fmt.Errorf("prune outbox: %w", err)
	}
	if streamMaxAge <= 0 {
		return p, nil
	}
	p.Processed, err = deleteChunks(ctx, pool, `DELETE FROM processed_events WHERE (consumer, event_id) IN (
		SELECT consumer, event_id FROM processed_events WHERE consumer = $3 AND processed_at < $1 LIMIT $2)`,
		now.Add(-2*streamMaxAge-ProcessedMargin), consumer)
	if err != nil {
		return p, fmt.Errorf("prune processed events: %w", err)
	}
	return p, nil
}

// deleteChunks runs a DELETE of at most pruneChunk rows ($2) until one
// deletes fewer, and returns the rows deleted.
func deleteChunks(ctx context.Context, pool *pgxpool.Pool, sql string, before time.Time, more ...any) (int64, error) {
	var total int64
	for {
		tag, err := pool.Exec(ctx, sql, append([]any{before, pruneChunk}, more...)...)
		if err != nil {
			return total, err
		}
		total += tag.RowsAffected()
		if tag.RowsAffected() < pruneChunk {
			return total, nil
		}
	}
}

// pruneLoop prunes every pruneEvery until ctx is done, logging what it
// deleted and counting it (shopbus.rows.pruned); a failure is logged and
// tried again at the next round.
func pruneLoop(ctx context.Context, pool *pgxpool.Pool, js jetstream.JetStream, schema string, cfg ConsumerConfig, log *slog.Logger) {
	pruned, _ := cfg.Telemetry.Meter(meterName).Int64Counter(telemetry.RowsPruned, metric.WithUnit("{row}"),
		metric.WithDescription("Rows of the outbox and processed_events deleted by retention."))
	for {
		select {
		case <-ctx.Done():
			return
		case <-time.After(pruneEvery):
		}
		var maxAge time.Duration
		st, err := js.Stream(ctx, cfg.Stream)
		if err == nil {
			maxAge = st.CachedInfo().Config.MaxAge
		}
		var p Pruned
		if err == nil {
			p, err = Prune(ctx, pool, cfg.Durable, maxAge, time.Now())
		}
		if err != nil {
			if !errors.Is(err, context.Canceled) {
				log.Warn("retention: pruning failed; trying again later", "schema", schema, "err", err, "retry_in", pruneEvery)
			}
			continue
		}
		pruned.Add(ctx, p.Outbox, metric.WithAttributes(attribute.String("schema", schema), attribute.String("table", "outbox")))
		pruned.Add(ctx, p.Processed, metric.WithAttributes(attribute.String("schema", schema), attribute.String("table", "processed_events")))
		if p.Outbox+p.Processed > 0 {
			log.Info("retention: pruned", "schema", schema, "outbox", p.Outbox, "processed_events", p.Processed)
		}
	}
}
