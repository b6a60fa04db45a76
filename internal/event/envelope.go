package event

import (
	"context"
	"encoding/binary"
	"fmt"
	"math/rand/v2"
	"time"

	"github.com/google/uuid"
	"go.opentelemetry.io/otel/trace"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	eventv1 "github.com/shopbus/shopbus/gen/go/shopbus/event/v1"
)

// Event ids are UUIDv7s drawn from a pool of random bytes, so New does not
// make a system call per event.
func init() { uuid.EnableRandPool() }

// Option configures New.
type Option func(*options)

type options struct {
	source string
	cause  *eventv1.Envelope
	now    func() time.Time
}

// WithSource names the producing service, for example "shopbus/order". It is
// required.
func WithSource(source string) Option {
	return func(o *options) { o.source = source }
}

// WithCause marks the new event as caused by cause: it inherits cause's
// correlation id (and trace, when ctx has none), and its causation id is
// cause's id.
func WithCause(cause *eventv1.Envelope) Option {
	return func(o *options) { o.cause = cause }
}

// WithClock sets the clock that stamps the event (tests).
func WithClock(now func() time.Time) Option {
	return func(o *options) { o.now = now }
}

// New wraps msg, an event message, in a validated Envelope. Its type and
// version come from msg's proto definition, its partition key is the payload
// field its contract names (Spec.KeyField), its id is a new UUIDv7, its ts is
// the current time in UTC, and its trace is ctx's OpenTelemetry span when
// there is one (else the cause's trace, else a new trace id).
func New(ctx context.Context, msg proto.Message, opts ...Option) (*eventv1.Envelope, error) {
	o := options{now: time.Now}
	for _, opt := range opts {
		opt(&o)
	}
	spec, err := SpecOf(msg)
	if err != nil {
		return nil, err
	}
	if err := validate(spec, msg); err != nil {
		return nil, err
	}
	payload, err := marshal(msg)
	if err != nil {
		return nil, fmt.Errorf("event: encode %s payload: %w", spec, err)
	}
	id, err := uuid.NewV7()
	if err != nil {
		return nil, fmt.Errorf("event: new id: %w", err)
	}
	ids := id.String()
	env := &eventv1.Envelope{
		Id:            ids,
		Type:          spec.Name,
		Version:       spec.Version,
		Ts:            timestamppb.New(o.now().UTC()),
		Source:        o.source,
		PartitionKey:  spec.Key(msg),
		CorrelationId: ids,
		Payload:       payload,
	}
	if o.cause != nil {
		env.CorrelationId = o.cause.GetCorrelationId()
		env.CausationId = o.cause.GetId()
	}
	env.TraceId, env.SpanId = traceOf(ctx, o.cause)
	if err := validate(envelopeName, env); err != nil {
		return nil, err
	}
	return env, nil
}

// traceOf picks the trace of a new event: ctx's span, the cause's trace, or a
// new random trace.
func traceOf(ctx context.Context, cause *eventv1.Envelope) (traceID, spanID []byte) {
	if sc := trace.SpanContextFromContext(ctx); sc.IsValid() {
		t, s := sc.TraceID(), sc.SpanID()
		return t[:], s[:]
	}
	if cause != nil && len(cause.GetTraceId()) == 16 && len(cause.GetSpanId()) == 8 {
		return cause.GetTraceId(), cause.GetSpanId()
	}
	// W3C trace ids need randomness, not secrecy: math/rand/v2's ChaCha8
	// source avoids a system call per event.
	b := make([]byte, 24)
	binary.LittleEndian.PutUint64(b[0:], rand.Uint64())
	binary.LittleEndian.PutUint64(b[8:], rand.Uint64())
	binary.LittleEndian.PutUint64(b[16:], rand.Uint64()|1) // never all zero
	return b[:16:16], b[16:]
}

// ContextWithTrace returns ctx carrying env's trace as the remote parent
// span, so work done for the event, and events it causes, join its trace.
func ContextWithTrace(ctx context.Context, env *eventv1.Envelope) context.Context {
	var cfg trace.SpanContextConfig
	if copy(cfg.TraceID[:], env.GetTraceId()) != 16 || copy(cfg.SpanID[:], env.GetSpanId()) != 8 {
		return ctx
	}
	cfg.TraceFlags, cfg.Remote = trace.FlagsSampled, true
	return trace.ContextWithRemoteSpanContext(ctx, trace.NewSpanContext(cfg))
}
