package messaging

import (
	"bytes"
	"context"
	"fmt"
	"sync"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"

	eventv1 "github.com/shopbus/shopbus/gen/go/shopbus/event/v1"
	"github.com/shopbus/shopbus/internal/event"
	"github.com/shopbus/shopbus/internal/postgres"
)

// relays are the relays running in this process, by schema: InTx wakes
// them when a transaction commits. No pg_notify: a notification in every
// enqueuing transaction serialises commits on PostgreSQL's notify lock
// (docs/adr/009).
var relays struct {
	sync.Mutex
	bySchema map[string]map[chan struct{}]bool
}

// registerRelay makes wake receive a signal whenever InTx commits on
// schema, until unregister is called.
func registerRelay(schema string, wake chan struct{}) (unregister func()) {
	relays.Lock()
	defer relays.Unlock()
	if relays.bySchema == nil {
		relays.bySchema = map[string]map[chan struct{}]bool{}
	}
	if relays.bySchema[schema] == nil {
		relays.bySchema[schema] = map[chan struct{}]bool{}
	}
	relays.bySchema[schema][wake] = true
	return func() {
		relays.Lock()
		defer relays.Unlock()
		delete(relays.bySchema[schema], wake)
	}
}

// wakeRelays signals the relays of schema running in this process.
func wakeRelays(schema string) {
	relays.Lock()
	defer relays.Unlock()
	for wake := range relays.bySchema[schema] {
		select {
		case wake <- struct{}{}:
		default: // already signalled
		}
	}
}

// Enqueue writes env to the outbox of the schema tx works in. It is published
// after tx commits, and never if tx rolls back: never publish to the broker
// inside a database transaction. A transaction run by InTx wakes the relay
// when it commits.
//
// The insert is traced as a span of env's trace, a child of ctx's span (the
// RPC or the handling of the event that caused env), with the tracer of
// ctx's span; env's span id becomes this span's, so the relay's publish and
// every consumer's handling of env are its children.
func Enqueue(ctx context.Context, tx pgx.Tx, env *eventv1.Envelope) (err error) {
	spec, err := event.Lookup(env.GetType(), env.GetVersion())
	if err != nil {
		return err
	}
	subject := spec.SubjectFor(env.GetPartitionKey())
	end := insertSpan(ctx, env, subject)
	defer func() { end(err) }()
	b, err := event.Encode(env)
	if err != nil {
		return err
	}
	if _, err := tx.Exec(ctx, "INSERT INTO outbox (id, subject, envelope) VALUES ($1, $2, $3)",
		env.GetId(), subject, b); err != nil {
		return fmt.Errorf("outbox: insert %s %s: %w", spec, env.GetId(), err)
	}
	markEnqueued(tx)
	return nil
}

// insertSpan starts the span of env's outbox insert: in env's trace, a
// child of ctx's span when it is in that trace, with the tracer of ctx's
// span. env's span id becomes the span's, so the relay's publish and every
// consumer's handling of env are its children. end ends it.
func insertSpan(ctx context.Context, env *eventv1.Envelope, subject string) (end func(error)) {
	parent := ctx
	if sc := trace.SpanContextFromContext(ctx); !sc.IsValid() || !sameTrace(sc, env) {
		parent = event.ContextWithTrace(ctx, env)
	}
	_, span := trace.SpanFromContext(ctx).TracerProvider().Tracer(tracerName).Start(parent, "outbox.insert "+typeOf(subject),
		trace.WithSpanKind(trace.SpanKindProducer), trace.WithAttributes(
			attribute.String("messaging.system", "nats"),
			attribute.String("messaging.operation.type", "create"),
			attribute.String("messaging.message.id", env.GetId()),
			attribute.String("messaging.destination.name", event.RedactSubject(subject)),
		))
	if sc := span.SpanContext(); sc.IsValid() && sameTrace(sc, env) {
		id := sc.SpanID()
		env.SpanId = id[:]
	}
	return func(err error) {
		if err != nil {
			span.RecordError(err)
			span.SetStatus(codes.Error, err.Error())
		}
		span.End()
	}
}

// sameTrace reports whether sc belongs to env's trace.
func sameTrace(sc trace.SpanContext, env *eventv1.Envelope) bool {
	id := sc.TraceID()
	return bytes.Equal(id[:], env.GetTraceId())
}

// OutboxRow is an event as the outbox stores it, for a caller that writes
// its row in a statement of its own: INSERT INTO outbox (id, subject,
// envelope), inside the statement that writes the state the event reports
// (one statement is one round trip and needs no BEGIN or COMMIT).
type OutboxRow struct {
	ID       string
	Subject  string
	Envelope []byte
}

// NewOutboxRow encodes env as its outbox row and starts the insert's span,
// as Enqueue traces it; end ends the span with the statement's outcome.
// Once the statement has committed, WakeRelays publishes the row at once
// (InTx does not know of a row written this way).
func NewOutboxRow(ctx context.Context, env *eventv1.Envelope) (row OutboxRow, end func(error), err error) {
	spec, err := event.Lookup(env.GetType(), env.GetVersion())
	if err != nil {
		return OutboxRow{}, nil, err
	}
	row.ID, row.Subject = env.GetId(), spec.SubjectFor(env.GetPartitionKey())
	end = insertSpan(ctx, env, row.Subject)
	if row.Envelope, err = event.Encode(env); err != nil {
		end(err)
		return OutboxRow{}, nil, err
	}
	return row, end, nil
}

// WakeRelays wakes the relays of pool's schema (its search_path) running
// in this process, after a statement outside InTx committed outbox rows.
func WakeRelays(pool *pgxpool.Pool) {
	wakeRelays(pool.Config().ConnConfig.RuntimeParams["search_path"])
}

// Outgoing is one event for QueueEnqueueAll: its envelope, and the context of
// the work that caused it (its trace).
type Outgoing struct {
	Ctx context.Context
	Env *eventv1.Envelope
}

// QueueEnqueueAll queues on b the one statement that writes events to the
// outbox of the schema b's transaction works in, for a batch handler that
// sends its statements as one pgx.Batch: its outcome events. Send b with
// SendWithEvents, which also makes InTx wake the relays at commit; a batch
// sent otherwise is published at the relay's next poll. Each insert is
// traced as Enqueue traces it, under its Outgoing.Ctx; end ends the spans
// with the batch's outcome. Nothing is queued for no events.
func QueueEnqueueAll(b *pgx.Batch, events []Outgoing) (end func(error), err error) {
	if len(events) == 0 {
		return func(error) {}, nil
	}
	ids, subjects, data := make([]string, len(events)), make([]string, len(events)), make([][]byte, len(events))
	ends := make([]func(error), 0, len(events))
	end = func(err error) {
		if err != nil {
			err = fmt.Errorf("outbox: insert %d events: %w", len(events), err)
		}
		for _, end := range ends {
			end(err)
		}
	}
	for i, o := range events {
		spec, err := event.Lookup(o.Env.GetType(), o.Env.GetVersion())
		if err != nil {
			end(err)
			return nil, err
		}
		subjects[i] = spec.SubjectFor(o.Env.GetPartitionKey())
		ends = append(ends, insertSpan(o.Ctx, o.Env, subjects[i]))
		if data[i], err = event.Encode(o.Env); err != nil {
			end(err)
			return nil, err
		}
		ids[i] = o.Env.GetId()
	}
	uuids, err := postgres.UUIDs(ids)
	if err != nil {
		end(err)
		return nil, fmt.Errorf("outbox: event id: %w", err)
	}
	b.Queue("INSERT INTO outbox (id, subject, envelope) SELECT * FROM unnest($1::uuid[], $2::text[], $3::bytea[])", uuids, subjects, data)
	return end, nil
}

// SendWithEvents queues events into b after its statements
// (QueueEnqueueAll) and sends b on tx in one round trip: a use case's
// effects and the outbox rows of the events they cause. In a transaction
// run by InTx (OnceBatchAll, OnceBatchReading), that round trip is the
// COMMIT's, unless b has result callbacks (then it goes at once): b's
// errors are then the transaction's, returned by InTx, so b is a use
// case's last statements (a statement sent after it sends b first). It
// sends nothing when b ends up empty.
func SendWithEvents(ctx context.Context, tx pgx.Tx, b *pgx.Batch, events []Outgoing) error {
	end, err := QueueEnqueueAll(b, events)
	if err != nil {
		return err
	}
	if b.Len() == 0 {
		return nil
	}
	if len(events) > 0 {
		markEnqueued(tx) // InTx wakes the relays only if the commit succeeds
	}
	return sendAtCommit(ctx, tx, b, end)
}
