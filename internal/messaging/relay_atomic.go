package messaging

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/synadia-io/orbit.go/jetstreamext"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/trace"

	eventv1 "github.com/shopbus/shopbus/gen/go/shopbus/event/v1"
	"github.com/shopbus/shopbus/internal/event"
)

// AtomicPassMin is the fewest rows a relay pass sends as one JetStream
// atomic batch (nats-server 2.12's atomic batch publish) instead of one
// publish each. A server that syncs every write (SyncAlways, as shopbus
// runs it) syncs an atomic batch once, at its commit, where single
// publishes cost a sync each; but a batch has a fixed cost of its own (the
// server stages it in a store of its own), so it pays only from a few
// dozen rows: a backlog, such as a consumer draining a full stream or an
// outbox after an outage, not the few rows of a pass under a steady load.
// docs/benchmarks.md has the measurement.
const AtomicPassMin = 32

// atomicRetryAfter is how long a relay keeps what it read of a stream's
// configuration (whether it allows atomic batches: another instance may
// turn them on), and how long it publishes one by one to a stream that
// refused a batch.
const atomicRetryAfter = time.Minute

// atomicLookup bounds a relay's read of a stream's configuration.
const atomicLookup = time.Second

// atomicBatches remembers, for a relay, which streams take its atomic
// batches.
type atomicBatches struct {
	mu      sync.Mutex
	streams map[string]atomicStream
}

// atomicStream is what a relay knows of one stream's atomic batches, until
// a time.
type atomicStream struct {
	allowed bool
	until   time.Time
}

// usable reports whether stream takes atomic batches. It reads the
// stream's configuration at most every atomicRetryAfter (a read that fails,
// in an outage say, is not remembered: the next pass reads again), and
// sends none where it does not say so.
func (a *atomicBatches) usable(ctx context.Context, js jetstream.JetStream, stream string) bool {
	now := time.Now()
	a.mu.Lock()
	known, ok := a.streams[stream]
	a.mu.Unlock()
	if ok && now.Before(known.until) {
		return known.allowed
	}
	ctx, cancel := context.WithTimeout(ctx, atomicLookup)
	defer cancel()
	s, err := js.Stream(ctx, stream)
	if err != nil {
		return false
	}
	allowed := s.CachedInfo().Config.AllowAtomicPublish
	a.set(stream, allowed, now.Add(atomicRetryAfter))
	return allowed
}

func (a *atomicBatches) set(stream string, allowed bool, until time.Time) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.streams == nil {
		a.streams = map[string]atomicStream{}
	}
	a.streams[stream] = atomicStream{allowed: allowed, until: until}
}

// publishAtomic publishes rows, a pass's rows in outbox order, as one
// atomic batch when they are at least r.atomicMin rows of one stream that
// allows atomic batches, each a valid event that fits the server's payload
// limit. It returns true only when JetStream stored all of them (its
// acknowledgement names the batch and counts every row); then each was
// stored once, in order, and synced with the batch. Otherwise nothing of
// the batch was stored, or what was is dropped as duplicates when the pass
// publishes the rows one by one, with their ids (a server stores a stream's
// publishes in the order they reach it, so a batch whose outcome is
// unknown is ahead of them). A row the stream already holds (a mark lost
// earlier) makes a batch fail as a whole, where a single publish of it is
// dropped by the duplicate window alone. It spends at most r.publishBudget
// (and atomicFirstAck more at worst), and returns the error of a batch it
// sent that failed.
func (r *Relay) publishAtomic(ctx context.Context, rows []UnpublishableRow) (bool, error) {
	if r.atomicMin <= 0 || len(rows) < r.atomicMin || len(rows) > atomicPassMax {
		return false, nil
	}
	stream := streamOfSubject(rows[0].Subject)
	if stream == "" {
		return false, nil
	}
	msgs := make([]*nats.Msg, len(rows))
	envs := make([]*eventv1.Envelope, len(rows))
	maxPayload := r.js.Conn().MaxPayload()
	for i, row := range rows {
		if streamOfSubject(row.Subject) != stream {
			return false, nil
		}
		env, err := event.Peek(row.Envelope)
		if err != nil {
			return false, nil // the pass publishes it alone, for the dead-letter queue
		}
		h := event.Headers(env)
		h.Set(jetstream.MsgIDHeader, row.ID)
		if int64(len(row.Envelope)+headerSize(h)+atomicHeaderRoom) > maxPayload {
			return false, nil // the pass sets it aside
		}
		msgs[i], envs[i] = &nats.Msg{Subject: row.Subject, Data: row.Envelope, Header: h}, env
	}
	// The batch's whole attempt, its commit included, shares the pass's
	// publishing budget: a pass that falls back publishes rows one by one
	// only within the budget that is left, so none goes out while a batch
	// whose commit got no answer may still be stored ahead of it. (A
	// single publish that still meets it is dropped as a duplicate, or
	// refused, clustered, while the batch is applied, and retried.)
	bctx, cancel := context.WithTimeout(ctx, r.publishBudget)
	defer cancel()
	if !r.atomic.usable(bctx, r.js, stream) {
		return false, nil
	}
	spans := make([]trace.Span, len(rows))
	for i, row := range rows {
		spans[i] = noSpan
		if r.tracing {
			_, spans[i] = r.tracer.Start(event.ContextWithTrace(ctx, envs[i]), "publish "+typeOf(row.Subject), trace.WithSpanKind(trace.SpanKindProducer),
				trace.WithAttributes(
					attribute.String("messaging.system", "nats"),
					attribute.String("messaging.operation.type", "send"),
					attribute.String("messaging.destination.name", event.RedactSubject(row.Subject)),
					attribute.String("messaging.message.id", row.ID),
					attribute.Int("messaging.batch.message_count", len(rows)),
				))
		}
	}
	start := time.Now()
	// The first message waits for the server to take the batch; a stop
	// (ctx) does not cut that wait, hence its own short bound.
	firstAck := min(r.publishBudget, atomicFirstAck)
	ack, err := jetstreamext.PublishMsgBatch(bctx, r.js, msgs, jetstreamext.BatchFlowControl{AckFirst: true, AckTimeout: firstAck})
	if err == nil && (ack == nil || ack.BatchSize != uint64(len(rows))) {
		err = fmt.Errorf("%w: %v of %d rows", errShortBatchAck, ack, len(rows))
	}
	var apiErr *jetstream.APIError
	if errors.As(err, &apiErr) && (apiErr.ErrorCode == jetstreamext.JSErrCodeBatchPublishDuplicateMsgID || apiErr.ErrorCode == jsErrCodeDuplicateInProcess) {
		err = fmt.Errorf("%w: %w", errDuplicateInBatch, err)
	}
	took := time.Since(start)
	for _, span := range spans {
		if err == nil || errors.Is(err, errDuplicateInBatch) {
			span.End()
		} else {
			endSpan(span, err)
		}
	}
	switch {
	case err == nil:
		for range rows {
			r.m.duration.Record(ctx, took.Seconds(), r.m.attrs)
		}
		return true, nil
	case ctx.Err() != nil:
	case refusesBatches(err):
		// The stream does not take them (any more): one by one for a
		// while.
		r.atomic.set(stream, false, time.Now().Add(atomicRetryAfter))
		r.log.Warn("outbox relay: the stream refused an atomic batch; publishing one by one", "schema", r.schema, "stream", stream,
			"rows", len(rows), "err", err, "atomic_again_in", atomicRetryAfter)
	case errors.Is(err, errDuplicateInBatch):
		// A row already stored (its mark was lost): the rows go one by
		// one this time, and the stream drops that one.
		r.log.Info("outbox relay: an atomic batch holds a row the stream has; publishing its rows one by one",
			"schema", r.schema, "stream", stream, "rows", len(rows))
	default:
		// No answer, no leader, a busy server: the rows go one by one
		// this time (the pass reports what fails), and the next backlog
		// in a batch again.
		r.log.Debug("outbox relay: an atomic batch failed; publishing its rows one by one", "schema", r.schema, "stream", stream,
			"rows", len(rows), "err", err)
	}
	return false, fmt.Errorf("atomic batch of %d rows: %w", len(rows), err)
}

// errDuplicateInBatch matches JetStream's refusals of a batch holding a
// message id the stream has, or is storing (clustered).
var errDuplicateInBatch = errors.New("a message id of the batch is in the stream")

// refusesBatches reports whether err says the stream does not take atomic
// batches as the relay sends them: not allowed, a header or size it does
// not take, or an acknowledgement that is not a batch's (a server that
// ignored the batch's headers).
func refusesBatches(err error) bool {
	var apiErr *jetstream.APIError
	if errors.As(err, &apiErr) {
		switch apiErr.ErrorCode {
		case jetstreamext.JSErrCodeBatchPublishNotEnabled, jetstreamext.JSErrCodeBatchPublishUnsupportedHeader,
			jetstreamext.JSErrCodeBatchPublishExceedsLimit, jetstreamext.JSErrCodeBatchPublishInvalidCommit,
			jetstreamext.JSErrCodeBatchPublishMissingSeq, jetstreamext.JSErrCodeBatchPublishInvalidID:
			return true
		}
	}
	return errors.Is(err, jetstreamext.ErrInvalidBatchAck) || errors.Is(err, errShortBatchAck)
}

// errShortBatchAck is an acknowledgement that does not count every row.
var errShortBatchAck = errors.New("the batch's acknowledgement does not count every row")

// Bounds of an atomic batch: the most rows one holds (nats-server's default
// max_batch_size is 1,000; a larger pass goes one by one), the room its
// headers (Nats-Batch-Id, -Sequence, -Commit) take beside a row's own, and
// the wait for the server to take it.
const (
	atomicPassMax    = 1000
	atomicHeaderRoom = 256
	atomicFirstAck   = 2 * time.Second
)

// jsErrCodeDuplicateInProcess is JetStream's "duplicate message id is in
// process" (a clustered stream still applying a publish of that id).
const jsErrCodeDuplicateInProcess jetstream.ErrorCode = 10158

// noSpan is the span of a publish when traces are not recorded: ending it
// does nothing.
var noSpan = trace.SpanFromContext(context.Background())

// streamOfSubject returns the stream of an outbox row's subject
// (<domain>.<entity>.<action>.v<N>.<key>), or "" when the catalog has no
// such event.
func streamOfSubject(subject string) string {
	tokens := strings.SplitN(subject, ".", 5)
	if len(tokens) < 4 {
		return ""
	}
	spec, err := event.LookupSubject(strings.Join(tokens[:4], "."))
	if err != nil {
		return ""
	}
	return StreamOf(spec)
}
