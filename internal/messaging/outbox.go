package messaging

import (
	"bytes"
	"context"
	"fmt"

	"github.com/jackc/pgx/v5"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"

	eventv1 "github.com/shopbus/shopbus/gen/go/shopbus/event/v1"
	"github.com/shopbus/shopbus/internal/event"
)

// notifyChannel is the PostgreSQL channel that wakes relays when a
// transaction that enqueued events commits; the payload is the schema.
const notifyChannel = "shopbus_outbox"

// Enqueue writes env to the outbox of the schema tx works in. It is published
// after tx commits, and never if tx rolls back: never publish to the broker
// inside a database transaction.
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
	parent := ctx
	if sc := trace.SpanContextFromContext(ctx); !sc.IsValid() || !sameTrace(sc, env) {
		parent = event.ContextWithTrace(ctx, env)
	}
	subject := spec.SubjectFor(env.GetPartitionKey())
	ctx, span := trace.SpanFromContext(ctx).TracerProvider().Tracer(tracerName).Start(parent, "outbox.insert "+typeOf(subject),
		trace.WithSpanKind(trace.SpanKindProducer), trace.WithAttributes(
			attribute.String("messaging.system", "nats"),
			attribute.String("messaging.operation.type", "create"),
			attribute.String("messaging.message.id", env.GetId()),
			attribute.String("messaging.destination.name", subject),
		))
	defer func() {
		if err != nil {
			span.RecordError(err)
			span.SetStatus(codes.Error, err.Error())
		}
		span.End()
	}()
	if sc := span.SpanContext(); sc.IsValid() && sameTrace(sc, env) {
		id := sc.SpanID()
		env.SpanId = id[:]
	}
	b, err := event.Encode(env)
	if err != nil {
		return err
	}
	if _, err := tx.Exec(ctx, "INSERT INTO outbox (id, subject, envelope) VALUES ($1, $2, $3)",
		env.GetId(), subject, b); err != nil {
		return fmt.Errorf("outbox: insert %s %s: %w", spec, env.GetId(), err)
	}
	if _, err := tx.Exec(ctx, "SELECT pg_notify($1, current_schema())", notifyChannel); err != nil {
		return fmt.Errorf("outbox: notify: %w", err)
	}
	return nil
}

// sameTrace reports whether sc belongs to env's trace.
func sameTrace(sc trace.SpanContext, env *eventv1.Envelope) bool {
	id := sc.TraceID()
	return bytes.Equal(id[:], env.GetTraceId())
}
