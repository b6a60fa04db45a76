package messaging

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"golang.org/x/sync/errgroup"

	"github.com/shopbus/shopbus/internal/event"
)

// Relay publishes a service's outbox to JetStream. Several relays may run on
// one outbox (rows are claimed with FOR UPDATE SKIP LOCKED). A row is marked
// published only after JetStream acknowledged it; if the relay dies in
// between, the row is published again and the stream's duplicate window,
// keyed by Nats-Msg-Id = envelope id, drops the copy.
type Relay struct {
	pool   *pgxpool.Pool
	js     jetstream.JetStream
	schema string
	log    *slog.Logger
	batch  int
	poll   time.Duration
}

// RelayOption configures a Relay.
type RelayOption func(*Relay)

// WithBatchSize sets how many rows one transaction publishes (default 256).
func WithBatchSize(n int) RelayOption { return func(r *Relay) { r.batch = n } }

// WithPollInterval sets how often the relay looks at the outbox when no
// notification woke it (default 1s).
func WithPollInterval(d time.Duration) RelayOption { return func(r *Relay) { r.poll = d } }

// WithRelayLogger sets the logger.
func WithRelayLogger(l *slog.Logger) RelayOption { return func(r *Relay) { r.log = l } }

// NewRelay returns a relay for the outbox in schema, the search_path of pool.
func NewRelay(pool *pgxpool.Pool, js jetstream.JetStream, schema string, opts ...RelayOption) *Relay {
	r := &Relay{pool: pool, js: js, schema: schema, log: slog.Default(), batch: 256, poll: time.Second}
	for _, opt := range opts {
		opt(r)
	}
	return r
}

// Run publishes until ctx is done. It wakes on the notification Enqueue
// sends at commit, and polls as a fallback. Errors (database or NATS down)
// are logged and retried with backoff; Run returns only ctx's error.
func (r *Relay) Run(ctx context.Context) error {
	wake := make(chan struct{}, 1)
	listening := make(chan struct{})
	go func() {
		defer close(listening)
		r.listen(ctx, wake)
	}()
	defer func() { <-listening }()
	failures := 0
	for {
		n, err := r.PublishBatch(ctx)
		wait := r.poll
		switch {
		case ctx.Err() != nil:
			return ctx.Err()
		case err != nil:
			failures++
			wait = Backoff(failures)
			r.log.Warn("outbox relay: publish failed; retrying", "schema", r.schema, "err", err, "retry_in", wait)
		case n == r.batch:
			failures = 0
			continue // more rows are waiting
		default:
			failures = 0
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-wake:
		case <-time.After(wait):
		}
	}
}

// listen forwards notifications for this schema's outbox to wake.
func (r *Relay) listen(ctx context.Context, wake chan<- struct{}) {
	for ctx.Err() == nil {
		err := func() error {
			conn, err := r.pool.Acquire(ctx)
			if err != nil {
				return err
			}
			defer conn.Release()
			if _, err := conn.Exec(ctx, "LISTEN "+notifyChannel); err != nil {
				return err
			}
			defer func() {
				// A connection back in the pool must not listen any more.
				uctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 2*time.Second)
				defer cancel()
				if _, err := conn.Exec(uctx, "UNLISTEN "+notifyChannel); err != nil {
					conn.Conn().Close(uctx) //nolint:errcheck // the pool replaces it
				}
			}()
			for {
				n, err := conn.Conn().WaitForNotification(ctx)
				if err != nil {
					return err
				}
				if n.Payload == r.schema {
					select {
					case wake <- struct{}{}:
					default:
					}
				}
			}
		}()
		if ctx.Err() == nil {
			r.log.Debug("outbox relay: listen", "err", err)
			select {
			case <-ctx.Done():
			case <-time.After(time.Second):
			}
		}
	}
}

// PublishBatch publishes up to one batch of unpublished rows, oldest first,
// and returns how many it published.
func (r *Relay) PublishBatch(ctx context.Context) (int, error) {
	published := 0
	err := pgx.BeginFunc(ctx, r.pool, func(tx pgx.Tx) error {
		rows, err := tx.Query(ctx, `SELECT id::text, subject, envelope FROM outbox
			WHERE published_at IS NULL ORDER BY seq LIMIT $1 FOR UPDATE SKIP LOCKED`, r.batch)
		if err != nil {
			return fmt.Errorf("outbox: select: %w", err)
		}
		type pending struct {
			id     string
			future jetstream.PubAckFuture
		}
		var inflight []pending
		var publishErr error
		for rows.Next() {
			var id, subject string
			var data []byte
			if err := rows.Scan(&id, &subject, &data); err != nil {
				return fmt.Errorf("outbox: scan: %w", err)
			}
			msg := &nats.Msg{Subject: subject, Data: data, Header: nats.Header{}}
			if env, err := event.Decode(data); err == nil {
				msg.Header = event.Headers(env)
			} else {
				// Never block the outbox behind one bad row: publish it as
				// it is; its consumers dead-letter it, where it is seen.
				r.log.Error("outbox relay: row is not a valid event; publishing it for the dead-letter queue", "id", id, "err", err)
			}
			f, err := r.js.PublishMsgAsync(msg, jetstream.WithMsgID(id))
			if err != nil {
				publishErr = fmt.Errorf("publish %s: %w", id, err)
				break
			}
			inflight = append(inflight, pending{id, f})
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return fmt.Errorf("outbox: select: %w", err)
		}
		// Mark what JetStream acknowledged, in order, up to the first
		// failure: the rest stays unpublished and is retried.
		var acked []string
		timeout := time.After(10 * time.Second)
	wait:
		for _, p := range inflight {
			select {
			case <-p.future.Ok():
				acked = append(acked, p.id)
			case err := <-p.future.Err():
				publishErr = errors.Join(publishErr, fmt.Errorf("publish %s: %w", p.id, err))
				break wait
			case <-timeout:
				publishErr = errors.Join(publishErr, fmt.Errorf("publish %s: no acknowledgement in 10s", p.id))
				break wait
			case <-ctx.Done():
				return ctx.Err()
			}
		}
		if len(acked) > 0 {
			if _, err := tx.Exec(ctx, "UPDATE outbox SET published_at = now() WHERE id = ANY($1::uuid[])", acked); err != nil {
				return fmt.Errorf("outbox: mark published: %w", err)
			}
		}
		published = len(acked)
		if publishErr != nil && len(acked) == 0 {
			return publishErr // nothing to commit
		}
		if publishErr != nil {
			r.log.Warn("outbox relay: part of a batch failed", "schema", r.schema, "published", len(acked), "err", publishErr)
		}
		return nil
	})
	return published, err
}

// RunService runs what every shopbus service runs beside its RPCs: the relay
// of its outbox (in schema) and its durable consumer, until ctx is done. It
// returns nil on a clean stop.
func RunService(ctx context.Context, pool *pgxpool.Pool, js jetstream.JetStream, schema string, cfg ConsumerConfig, h Handler, log *slog.Logger) error {
	g, ctx := errgroup.WithContext(ctx)
	g.Go(func() error { return NewRelay(pool, js, schema, WithRelayLogger(log)).Run(ctx) })
	g.Go(func() error { return Consume(ctx, js, cfg, h, log) })
	if err := g.Wait(); err != nil && !errors.Is(err, context.Canceled) {
		return err
	}
	return nil
}
