package messaging

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/trace"
	"golang.org/x/sync/errgroup"

	"github.com/shopbus/shopbus/internal/event"
	"github.com/shopbus/shopbus/internal/postgres"
	"github.com/shopbus/shopbus/internal/telemetry"
)

// Relay publishes a service's outbox to JetStream. Several relays may run on
// one outbox: each pass locks the oldest unpublished rows, in order, so a
// relay that finds them locked waits for the pass that holds them and then
// goes on after them. (With SKIP LOCKED it would publish the rows behind
// them first, and a key's later event could reach the stream before its
// earlier one.) A pass publishes its rows without waiting for each
// acknowledgement, except that a row waits for the acknowledgement of the
// pass's row before it with the same partition key: were that one refused,
// this one would be stored ahead of it (it waits for the next pass instead,
// and other keys go on). A row is marked
// published only after JetStream acknowledged it; if the relay dies in
// between, the row is published again and the stream's duplicate window,
// keyed by Nats-Msg-Id = envelope id, drops the copy. A pass of
// AtomicPassMin rows or more of one stream goes out as one atomic batch
// instead (relay_atomic.go).
type Relay struct {
	pool    *pgxpool.Pool
	js      jetstream.JetStream
	schema  string
	log     *slog.Logger
	batch   int           // rows per pass, 256
	poll    time.Duration // how often it looks when no notification woke it, 1 s
	tel     *telemetry.Telemetry
	tracer  trace.Tracer
	tracing bool
	m       relayMetrics
	// unpublishable files the rows set aside (WithUnpublishable).
	unpublishable UnpublishableFunc
	// publishBudget is passPublishBudget, and parkAfter ParkAfter,
	// shorter in tests.
	publishBudget, parkAfter time.Duration
	// refused holds when this relay first saw each row it has not
	// published yet refused in a way that may pass (refusedFor).
	refusedMu sync.Mutex
	refused   map[string]time.Time
	// atomicMin is the fewest rows a pass sends as one atomic batch
	// (AtomicPassMin; 0: never), and atomic what the relay knows of each
	// stream's.
	atomicMin int
	atomic    atomicBatches
}

// relayMetrics are a relay's instruments (telemetry.Outbox*).
type relayMetrics struct {
	attrs     metric.MeasurementOption
	published metric.Int64Counter
	errors    metric.Int64Counter
	duration  metric.Float64Histogram
}

// RelayOption configures a Relay.
type RelayOption func(*Relay)

// WithAtomicBatches sets the fewest rows a pass publishes as one atomic
// batch (default AtomicPassMin); 0 publishes every row alone.
func WithAtomicBatches(min int) RelayOption { return func(r *Relay) { r.atomicMin = min } }

// WithRelayLogger sets the logger.
func WithRelayLogger(l *slog.Logger) RelayOption { return func(r *Relay) { r.log = l } }

// WithRelayTelemetry makes the relay record its metrics (telemetry.Outbox*)
// and a publish span per event on t.
func WithRelayTelemetry(t *telemetry.Telemetry) RelayOption {
	return func(r *Relay) { r.tel = t }
}

// NewRelay returns a relay for the outbox in schema, the search_path of pool.
func NewRelay(pool *pgxpool.Pool, js jetstream.JetStream, schema string, opts ...RelayOption) *Relay {
	r := &Relay{pool: pool, js: js, schema: schema, log: slog.Default(), batch: 256, poll: time.Second, publishBudget: passPublishBudget,
		parkAfter: ParkAfter, atomicMin: AtomicPassMin}
	for _, opt := range opts {
		opt(r)
	}
	r.tracer, r.tracing = r.tel.Tracer(tracerName), r.tel.Tracing()
	m := r.tel.Meter(meterName)
	r.m.attrs = metric.WithAttributes(attribute.String("schema", schema))
	// Instrument errors only come from invalid names, which are constants.
	r.m.published, _ = m.Int64Counter(telemetry.OutboxPublished, metric.WithUnit("{event}"),
		metric.WithDescription("Outbox rows published to JetStream and acknowledged."))
	r.m.errors, _ = m.Int64Counter(telemetry.OutboxPublishErrors, metric.WithUnit("{error}"),
		metric.WithDescription("Outbox rows whose publish failed or was not acknowledged in time."))
	r.m.duration, _ = m.Float64Histogram(telemetry.OutboxPublishDuration, metric.WithUnit("s"),
		metric.WithDescription("From publishing an outbox row to JetStream's acknowledgement."),
		metric.WithExplicitBucketBoundaries(telemetry.SecondsBuckets...))
	return r
}

// backlogEvery is how often a running relay measures its outbox backlog.
const backlogEvery = 5 * time.Second

// backlog is the outbox backlog as last measured.
type backlog struct {
	mu     sync.Mutex
	ok     bool
	rows   int64
	oldest float64   // age of the oldest row, in seconds, when measured
	at     time.Time // when measured
}

// observeBacklog measures the outbox backlog every backlogEvery until ctx
// is done and reports it (telemetry.OutboxBacklog, OutboxOldestAge)
// whenever metrics are collected: a scrape reads memory and never waits on
// PostgreSQL. It returns when ctx is done.
func (r *Relay) observeBacklog(ctx context.Context) {
	m := r.tel.Meter(meterName)
	rowsGauge, err1 := m.Int64ObservableGauge(telemetry.OutboxBacklog, metric.WithUnit("{row}"),
		metric.WithDescription("Outbox rows not yet published."))
	ageGauge, err2 := m.Float64ObservableGauge(telemetry.OutboxOldestAge, metric.WithUnit("s"),
		metric.WithDescription("Age of the oldest unpublished outbox row (0 when none)."))
	if err := errors.Join(err1, err2); err != nil {
		r.log.Warn("outbox relay: no backlog metrics", "err", err)
		return
	}
	var b backlog
	reg, err := m.RegisterCallback(func(_ context.Context, o metric.Observer) error {
		b.mu.Lock()
		defer b.mu.Unlock()
		if !b.ok {
			return nil // not measured, or PostgreSQL unreachable: no figure rather than a stale one
		}
		age := 0.0
		if b.rows > 0 {
			age = b.oldest + time.Since(b.at).Seconds()
		}
		o.ObserveInt64(rowsGauge, b.rows, r.m.attrs)
		o.ObserveFloat64(ageGauge, age, r.m.attrs)
		return nil
	}, rowsGauge, ageGauge)
	if err != nil {
		r.log.Warn("outbox relay: no backlog metrics", "err", err)
		return
	}
	defer reg.Unregister() //nolint:errcheck // nothing to do about it
	for {
		qctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		var rows int64
		var oldest float64
		err := r.pool.QueryRow(qctx, `SELECT count(*), coalesce(extract(epoch FROM now() - min(created_at)), 0)::float8
			FROM outbox WHERE published_at IS NULL AND parked_at IS NULL`).Scan(&rows, &oldest)
		cancel()
		b.mu.Lock()
		b.ok, b.rows, b.oldest, b.at = err == nil, rows, max(oldest, 0), time.Now()
		b.mu.Unlock()
		select {
		case <-ctx.Done():
			return
		case <-time.After(backlogEvery):
		}
	}
}

// Run publishes until ctx is done. It wakes when a transaction of this
// process commits through InTx on its schema, and polls as a fallback (for
// rows another process wrote). Errors (database or NATS down)
// are logged and retried with backoff; Run returns only ctx's error.
func (r *Relay) Run(ctx context.Context) error {
	wake := make(chan struct{}, 1)
	defer registerRelay(r.schema, wake)()
	var bg sync.WaitGroup
	defer bg.Wait()
	bg.Go(func() { r.observeBacklog(ctx) })
	failures := 0
	for {
		n, more, err := r.publishBatch(ctx)
		wait := r.poll
		switch {
		case ctx.Err() != nil:
			return ctx.Err()
		case err != nil:
			failures++
			wait = relayRetry.Delay(failures)
			r.log.Warn("outbox relay: publish failed; retrying", "schema", r.schema, "err", err, "retry_in", wait)
		case n == r.batch || more:
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

// relayRetry is the relay's back-off after a failed pass (database or NATS
// away): capped at 5 s, so that the backlog moves within seconds of their
// return (a pass costs one query), where Backoff's 30 s cap held it up to
// half a minute after a stream regained its quorum (internal/cluster).
var relayRetry = RetryPolicy{Base: 250 * time.Millisecond, Cap: 5 * time.Second}

// PublishTimeout bounds the wait for JetStream's acknowledgement of a
// publish; MaxPendingPublishes bounds the publishes awaiting one. A
// JetStream made with NewJetStream releases a publish that got no answer
// in PublishTimeout (its future fails), so a server that stops answering
// (a stream without quorum) never fills the pending publishes for good.
const (
	PublishTimeout      = 10 * time.Second
	MaxPendingPublishes = 4096
)

// passLockTimeout bounds a relay pass's wait for the rows another pass
// holds, and the time a pass may sit idle in its transaction: longer than a
// pass publishes and waits for its acknowledgements (passPublishBudget,
// then PublishTimeout and a second).
const passLockTimeout = 2*PublishTimeout + 5*time.Second

// passPublishBudget bounds how long a pass goes on publishing rows. A row
// waits for the acknowledgement of its key's previous row, so a pass of many
// rows of one key, acknowledged slowly, would otherwise outlast
// passLockTimeout, and PostgreSQL would end it before its marks. With it, a
// pass publishes its last row by then, and has its answers within
// PublishTimeout and a second more (and a wait for one answer that began
// within the budget ends within that too). The rows it leaves go out in the
// next pass.
const passPublishBudget = PublishTimeout / 2

// NewJetStream returns the JetStream of nc that shopbus publishes with:
// asynchronous publishes time out after PublishTimeout, at most
// MaxPendingPublishes at a time.
func NewJetStream(nc *nats.Conn) (jetstream.JetStream, error) {
	return jetstream.New(nc, jetstream.WithPublishAsyncTimeout(PublishTimeout), jetstream.WithPublishAsyncMaxPending(MaxPendingPublishes))
}

// PublishBatch publishes up to one batch of unpublished rows, oldest first,
// and returns how many it published.
func (r *Relay) PublishBatch(ctx context.Context) (int, error) {
	n, _, err := r.publishBatch(ctx)
	return n, err
}

// publishBatch is PublishBatch, and says whether the pass left rows it
// selected for the next one (its publishing budget ran out).
func (r *Relay) publishBatch(ctx context.Context) (published int, more bool, err error) {
	failed := 0
	var done []string // rows published or set aside: refused no more
	// Bounds, in the round trip of the BEGIN and the select: a pass that
	// waits behind another relay's rows gives up after passLockTimeout and
	// is retried, and PostgreSQL ends a pass whose relay stopped answering
	// (a frozen process, a lost network) while it held rows, so the rows
	// do not stay locked until TCP gives up on the connection.
	//
	// The pass commits without waiting for its WAL to reach the disk
	// (synchronous_commit off, this transaction only): a mark lost in a
	// crash of PostgreSQL only publishes its rows again, with their ids,
	// which the stream's duplicate window and every consumer's
	// processed_events drop. JetStream's PubAck is what made the event
	// durable. A pass that parks rows waits for its commit (below).
	first := txBatch()
	first.Queue(`SELECT set_config('lock_timeout', $1, true), set_config('idle_in_transaction_session_timeout', $1, true),
		set_config('synchronous_commit', 'off', true)`,
		strconv.FormatInt(passLockTimeout.Milliseconds(), 10))
	var selected []UnpublishableRow
	first.Queue(`SELECT id::text, seq, subject, envelope, created_at FROM outbox
		WHERE published_at IS NULL AND parked_at IS NULL ORDER BY seq LIMIT $1 FOR UPDATE`, r.batch).Query(func(rows pgx.Rows) error {
		var row UnpublishableRow
		_, err := pgx.ForEachRow(rows, []any{&row.ID, &row.Seq, &row.Subject, &row.Envelope, &row.CreatedAt}, func() error {
			selected = append(selected, row)
			return nil
		})
		if err != nil {
			return fmt.Errorf("outbox: select: %w", err)
		}
		return nil
	})
	err = inTx(ctx, r.pool, first, func(tx pgx.Tx) error {
		var parked []UnpublishableRow
		var inflight []*pending
		lastOfKey := map[string]*pending{} // the last row of each partition key published in this pass
		var acked []string
		defer func() {
			// Spans of rows not settled in this pass end here.
			for _, p := range inflight {
				if !p.settled {
					endSpan(p.span, errors.New("not acknowledged in this pass; retried"))
				}
			}
		}()
		var publishErr error
		callFailed := false
		// Keys whose row failed in this pass: their later rows wait for
		// the next pass, behind it; other keys go on.
		blocked := map[string]bool{}
		passStart := time.Now() // the budget counts an atomic attempt too
		one := selected         // the rows to publish one by one
		ok, atomicErr := r.publishAtomic(ctx, selected)
		if ok {
			for _, row := range selected {
				acked = append(acked, row.ID)
			}
			one = nil
		}
		batched := len(acked)
		for _, row := range one {
			if time.Since(passStart) > r.publishBudget {
				more = true
				break // the rest goes out in the next pass
			}
			id, subject, data := row.ID, row.Subject, row.Envelope
			key, keyed := KeyOf(subject)
			if keyed && blocked[key] {
				continue
			}
			if before := lastOfKey[key]; keyed && before != nil {
				// A key's next row goes out only once the one before it
				// is stored: were that one to fail, this one would be
				// stored ahead of it, and its retry would land behind.
				if err := before.wait(ctx); err != nil {
					if ctx.Err() != nil {
						return ctx.Err()
					}
					blocked[key] = true // the wait below reports the failure
					continue
				}
				if time.Since(passStart) > r.publishBudget {
					more = true
					break
				}
			}
			msg := &nats.Msg{Subject: subject, Data: data, Header: nats.Header{}}
			sctx := ctx
			env, err := event.Peek(data) // New validated it; its consumers will again
			if err == nil {
				msg.Header = event.Headers(env)
				sctx = event.ContextWithTrace(ctx, env)
			} else {
				// Never block the outbox behind one bad row: publish it as
				// it is; its consumers dead-letter it, where it is seen.
				var scrub event.Scrubber
				scrub.Add(subject, data)
				r.log.Error("outbox relay: row is not an event envelope; publishing it for the dead-letter queue", "id", id, "err", scrub.ScrubError(err))
			}
			span := trace.SpanFromContext(sctx) // not recording: ending it does nothing
			if r.tracing {
				_, span = r.tracer.Start(sctx, "publish "+typeOf(subject), trace.WithSpanKind(trace.SpanKindProducer),
					trace.WithAttributes(
						attribute.String("messaging.system", "nats"),
						attribute.String("messaging.operation.type", "send"),
						attribute.String("messaging.destination.name", event.RedactSubject(subject)),
						attribute.String("messaging.message.id", id),
					))
			}
			start := time.Now()
			f, err := r.js.PublishMsgAsync(msg, jetstream.WithMsgID(id))
			if errors.Is(err, nats.ErrMaxPayload) {
				// It can never be published: set it aside, and go on
				// with the rows behind it.
				row.Reason = fmt.Sprintf("%d bytes with its headers: more than the server's max_payload of %d", len(data)+headerSize(msg.Header), r.js.Conn().MaxPayload())
				endSpan(span, err)
				parked = append(parked, row)
				continue
			}
			if err != nil {
				publishErr = fmt.Errorf("publish %s: %w", id, err)
				endSpan(span, publishErr)
				callFailed = true
				break
			}
			p := &pending{row: row, size: len(data) + headerSize(msg.Header), future: f, span: span, start: start}
			inflight = append(inflight, p)
			if keyed {
				lastOfKey[key] = p
			}
		}
		// Mark every row JetStream acknowledged. A row that failed stays
		// unpublished and is retried; no later row of its key went out in
		// this pass (the wait above), so marking the rows acknowledged
		// after it keeps each key's order.
		parkedUnsent := len(parked) // set aside before they were sent (max_payload)
		for _, p := range inflight {
			err := p.wait(ctx)
			if ctx.Err() != nil {
				return ctx.Err()
			}
			if err == nil {
				p.settled = true
				acked = append(acked, p.row.ID)
				r.m.duration.Record(ctx, p.took.Seconds(), r.m.attrs)
				endSpan(p.span, nil)
				continue
			}
			p.settled = true
			endSpan(p.span, err)
			reason := refusal(err, p.row, p.size)
			if reason == "" {
				// Another failure: ParkAfter counts refusals that last.
				r.forgetRefusals(p.row.ID)
			} else if r.refusedFor(p.row.ID, time.Now()) > r.parkAfter && r.neverCaptured(ctx, err, p.row) {
				// Refused for ParkAfter: not a stream being declared
				// or changed, a row its stream will never take. Set
				// it aside; the rows behind it go on.
				p.row.Reason = reason
				parked = append(parked, p.row)
				continue
			}
			publishErr = errors.Join(publishErr, fmt.Errorf("publish %s: %w", p.row.ID, err))
		}
		if len(acked) > 0 {
			ids, err := postgres.UUIDs(acked)
			if err != nil {
				return fmt.Errorf("outbox: mark published: %w", err)
			}
			// Sent with the COMMIT, in its round trip.
			b := &pgx.Batch{}
			b.Queue("UPDATE outbox SET published_at = now() WHERE id = ANY($1::uuid[])", ids)
			if err := sendAtCommit(ctx, tx, b, func(error) {}); err != nil {
				return fmt.Errorf("outbox: mark published: %w", err)
			}
		}
		if len(parked) > 0 {
			// A park mark is not one to lose: the rows are filed in the
			// dead-letter queue now, and would be filed again. This commit
			// waits for its WAL, as every commit but a relay's does.
			if _, err := tx.Exec(ctx, `SELECT set_config('synchronous_commit', 'on', true)`); err != nil {
				return fmt.Errorf("outbox: park: %w", err)
			}
		}
		for _, row := range parked {
			if err := r.park(ctx, tx, row); err != nil {
				return err
			}
		}
		published = len(acked)
		done = slices.Clone(acked)
		for _, row := range parked {
			done = append(done, row.ID)
		}
		failed = len(inflight) - (published - batched) + parkedUnsent
		if callFailed {
			failed++
		}
		if atomicErr != nil && len(inflight) == 0 && len(parked) == 0 && !callFailed {
			// The batch failed and its attempt took the pass's budget:
			// nothing went out one by one. The pass failed, and the relay
			// backs off before the next.
			failed += len(selected)
			publishErr = atomicErr
		}
		if publishErr != nil && len(acked) == 0 && len(parked) == 0 {
			return publishErr // nothing to commit
		}
		if publishErr != nil {
			r.log.Warn("outbox relay: part of a batch failed", "schema", r.schema, "published", len(acked), "err", publishErr)
		}
		return nil
	})
	// Counted once the marks are committed (or nothing was to commit);
	// nothing is counted for a pass cut short by a stop.
	if ctx.Err() == nil {
		if err == nil {
			r.m.published.Add(ctx, int64(published), r.m.attrs)
		}
		r.m.errors.Add(ctx, int64(failed), r.m.attrs)
	}
	if err != nil {
		return 0, false, err
	}
	r.forgetRefusals(done...)
	return published, more, nil
}

// pending is a row of a relay's pass whose publish was sent.
type pending struct {
	row     UnpublishableRow
	size    int // with its headers
	future  jetstream.PubAckFuture
	span    trace.Span
	start   time.Time
	done    bool          // its outcome was received:
	err     error         // nil if JetStream stored it,
	took    time.Duration // seen this long after the publish
	settled bool          // acknowledged or set aside, its span ended
}

// wait returns the outcome of p's publish once JetStream answers it, or an
// error when no answer comes within PublishTimeout and a second of the
// publish, or when ctx is done. It may be called again: it remembers the
// outcome.
func (p *pending) wait(ctx context.Context) error {
	if p.done {
		return p.err
	}
	settle := func(err error) error {
		p.done, p.err, p.took = true, err, time.Since(p.start)
		return err
	}
	// An answer already in counts, however late it is read: a pass reads
	// some only after waiting on others.
	select {
	case <-p.future.Ok():
		return settle(nil)
	case err := <-p.future.Err():
		return settle(err)
	default:
	}
	timeout := time.NewTimer(time.Until(p.start.Add(PublishTimeout + time.Second)))
	defer timeout.Stop()
	select {
	case <-p.future.Ok():
		return settle(nil)
	case err := <-p.future.Err():
		return settle(err)
	case <-timeout.C:
		return settle(fmt.Errorf("no acknowledgement in %v", PublishTimeout))
	case <-ctx.Done():
		return ctx.Err()
	}
}

// endSpan ends span, marking it failed with err when err is not nil.
func endSpan(span trace.Span, err error) {
	if err != nil {
		span.RecordError(err)
		span.SetStatus(codes.Error, err.Error())
	}
	span.End()
}

// Subscription is one consumer of a service and its handler.
type Subscription struct {
	// Config declares the consumer.
	Config ConsumerConfig
	// Handler handles its batches.
	Handler BatchHandler
}

// RunService runs what every shopbus service runs beside its RPCs: the relay
// of its outbox (in schema), its durable consumers, handling batches, and
// the retention of its messaging tables (Prune, hourly, for each consumer),
// until ctx is done. It returns nil on a clean stop. The relay files the
// rows it sets aside with the first consumer's Unpublishable, and reports
// to its Telemetry.
func RunService(ctx context.Context, pool *pgxpool.Pool, js jetstream.JetStream, schema string, log *slog.Logger, subs ...Subscription) error {
	if len(subs) == 0 {
		return fmt.Errorf("%w: a service runs at least one consumer", ErrBadConfig)
	}
	g, ctx := errgroup.WithContext(ctx)
	first := subs[0].Config
	g.Go(func() error {
		return NewRelay(pool, js, schema, WithRelayLogger(log), WithRelayTelemetry(first.Telemetry), WithUnpublishable(first.Unpublishable)).Run(ctx)
	})
	for _, sub := range subs {
		g.Go(func() error { return ConsumeBatch(ctx, js, sub.Config, sub.Handler, log) })
		g.Go(func() error { pruneLoop(ctx, pool, js, schema, sub.Config, log); return nil })
	}
	if err := g.Wait(); err != nil && !errors.Is(err, context.Canceled) {
		return err
	}
	return nil
}
