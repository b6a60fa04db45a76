package messaging

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/nats-io/nats.go/jetstream"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/trace"

	"github.com/shopbus/shopbus/internal/event"
	"github.com/shopbus/shopbus/internal/postgres"
)

// ackTimeout bounds the wait for the confirmation of a batch's acks.
const ackTimeout = 5 * time.Second

// maxForming bounds how long a batch takes to form (unless BatchWait is
// longer): events that trickle in just within BatchWait of each other are
// handled every maxForming rather than held until the batch is full.
const maxForming = 10 * time.Millisecond

// Batch sizes of ConsumeBatch.
const (
	// DefaultBatchSize is ConsumerConfig.BatchSize when it is 0. Chosen
	// with BenchmarkReserveStock (docs/benchmarks.md): the eight partitions'
	// batches queue on the same stock rows, so a batch pays for its lock
	// hand-over and its commit once for more events; 500 and 1,000 gave the
	// same, 100 about 20% less.
	DefaultBatchSize = 500
	// MaxBatchSize bounds ConsumerConfig.BatchSize.
	MaxBatchSize = 1000
	// DefaultBatchWait is ConsumerConfig.BatchWait when it is 0: just long
	// enough to take what the pull has already buffered. Batches then form
	// by themselves under load (events arrive while a batch is handled),
	// and a lone event is not held back: against a 5 ms wait, the same
	// throughput and half the latency of an idle stack (8 against 18 ms
	// CreateOrder → CONFIRMED, docs/benchmarks.md).
	DefaultBatchWait = 200 * time.Microsecond
)

// BatchHandler handles a batch of events of one durable consumer, in
// stream order, with their effects in one transaction (OnceBatch). Returning
// nil acks every event of the batch, so a handler returns nil only once the
// transaction committed. An error wrapping an *EventError names one event
// that can never succeed: it alone is dead-lettered and the handler is
// called again with the rest. Any other error retries the whole batch after
// the retry policy's delay (docs/adr/009-batches.md).
type BatchHandler func(ctx context.Context, batch []*Delivery) error

// EventError is the permanent failure of one event of a batch: the batch
// without it can still succeed.
type EventError struct {
	// Delivery is the event that failed.
	Delivery *Delivery
	// Err is why; IsPermanent(Err) holds.
	Err error
}

func (e *EventError) Error() string {
	return fmt.Sprintf("event %s: %v", e.Delivery.Envelope.GetId(), e.Err)
}

func (e *EventError) Unwrap() error { return e.Err }

// OnceBatch runs fn for each event of batch that consumer has not handled
// yet, in order, in one transaction with the records that consumer handled
// them (OnceBatchAll). If fn fails for an event with a permanent error,
// nothing commits and the error is an *EventError naming it; any other error
// is returned as it is.
//
// fn's ctx carries the event's trace (and its "process" span when traces
// are recorded: EventContext), so the events it enqueues continue that
// trace.
func OnceBatch(ctx context.Context, pool *pgxpool.Pool, consumer string, batch []*Delivery, fn func(ctx context.Context, tx pgx.Tx, d *Delivery) error) error {
	return OnceBatchAll(ctx, pool, consumer, batch, func(ctx context.Context, tx pgx.Tx, fresh []*Delivery) error {
		for _, d := range fresh {
			ectx, end := EventContext(ctx, d)
			err := fn(ectx, tx, d)
			if err == nil {
				// Statements held for the COMMIT (SendWithEvents) go
				// now, so that a failure of theirs names d.
				err = sendHeld(ectx, tx)
			}
			end(err)
			if err != nil {
				if IsPermanent(err) {
					return &EventError{Delivery: d, Err: err}
				}
				return err
			}
		}
		return nil
	})
}

// OnceBatchAll runs fn once, in one transaction, with the events of batch
// that consumer has not handled yet, in order, and the records that consumer
// handled them (processed_events, claimed for the whole batch in one
// statement). Events handled before (a redelivered batch, a partly
// redelivered one, a crash between commit and acks, a second copy in the
// same batch) are left out, not failed. It suits a handler that applies a
// batch's effects with a few statements for all its events; fn returns an
// *EventError to name an event that can never succeed.
func OnceBatchAll(ctx context.Context, pool *pgxpool.Pool, consumer string, batch []*Delivery, fn func(ctx context.Context, tx pgx.Tx, fresh []*Delivery) error) error {
	return OnceBatchReading(ctx, pool, consumer, batch, nil, fn)
}

// OnceBatchReading is OnceBatchAll whose first round trip (the BEGIN and
// the claim) also carries the statements read queues on it: the reads, and
// the locks, of the rows fn needs, for every event of batch (an event
// handled before included: its rows are read, or locked, for nothing). Their callbacks
// run before fn; a failure of theirs rolls back. A batch of one event then
// costs two round trips: the claim with its reads, and fn's writes with the
// COMMIT (SendWithEvents).
func OnceBatchReading(ctx context.Context, pool *pgxpool.Pool, consumer string, batch []*Delivery, read func(b *pgx.Batch), fn func(ctx context.Context, tx pgx.Tx, fresh []*Delivery) error) error {
	ids := make([]string, len(batch))
	for i, d := range batch {
		ids[i] = d.Envelope.GetId()
	}
	uuids, err := postgres.UUIDs(ids)
	if err != nil {
		return fmt.Errorf("processed_events: event id: %w", err)
	}
	// The claim goes in the round trip of the BEGIN.
	first := txBatch()
	// Ids are compared as UUIDs, not as text: an envelope may spell its id
	// in capitals, which PostgreSQL returns in lower case.
	var claimed [][16]byte
	first.Queue(`INSERT INTO processed_events (consumer, event_id)
		SELECT $1, unnest($2::uuid[]) ON CONFLICT DO NOTHING RETURNING event_id`, consumer, uuids).Query(func(rows pgx.Rows) error {
		claimed, err = pgx.CollectRows(rows, pgx.RowTo[[16]byte])
		if err != nil {
			return fmt.Errorf("processed_events: %w", err)
		}
		return nil
	})
	if read != nil {
		read(first)
	}
	return inTx(ctx, pool, first, func(tx pgx.Tx) error {
		unclaimed := make(map[[16]byte]bool, len(claimed))
		for _, id := range claimed {
			unclaimed[id] = true
		}
		fresh := make([]*Delivery, 0, len(claimed))
		for i, d := range batch {
			if id := uuids[i].Bytes; unclaimed[id] {
				delete(unclaimed, id) // a second copy in this batch is not fresh
				fresh = append(fresh, d)
			}
		}
		if len(fresh) == 0 {
			return nil
		}
		return fn(ctx, tx, fresh)
	})
}

// EventContext returns ctx carrying d's trace and, when ctx's span records
// (a batch's span), a "process" span of d: a child in d's trace of the span
// that enqueued d, linked to the batch. end ends the span with d's outcome.
// A batch handler gives each event's work (the events it causes) this ctx.
func EventContext(ctx context.Context, d *Delivery) (_ context.Context, end func(error)) {
	batch := trace.SpanFromContext(ctx)
	ectx := event.ContextWithTrace(ctx, d.Envelope)
	if !batch.IsRecording() {
		return ectx, func(error) {}
	}
	ectx, span := batch.TracerProvider().Tracer(tracerName).Start(ectx, "process "+typeOf(d.Subject),
		trace.WithSpanKind(trace.SpanKindConsumer), trace.WithLinks(trace.Link{SpanContext: batch.SpanContext()}),
		trace.WithAttributes(
			attribute.String("messaging.system", "nats"),
			attribute.String("messaging.operation.type", "process"),
			attribute.String("messaging.destination.name", event.RedactSubject(d.Subject)),
			attribute.String("messaging.message.id", d.Envelope.GetId()),
		))
	return ectx, func(err error) { endSpan(span, err) }
}

// ConsumeBatch is Consume for a BatchHandler: each durable this instance
// holds hands h up to cfg.BatchSize events at a time, in stream order,
// waiting up to cfg.BatchWait for a batch to fill once it has one event. A
// key-based consumer has one batch in flight per partition (MaxAckPending =
// BatchSize); its transient failures are retried in place, so no later
// event of the partition overtakes them.
func ConsumeBatch(ctx context.Context, js jetstream.JetStream, cfg ConsumerConfig, h BatchHandler, log *slog.Logger) error {
	cfg.batch = true
	return consume(ctx, js, cfg, log, func(ctx context.Context, cons jetstream.Consumer, s *settler) error {
		return batchLoop(ctx, cons, h, s)
	})
}

// batchLoop handles the messages of cons a batch at a time until ctx is
// done (nil) or its message iterator ends (an error). When ctx is done it
// drains the iterator: the messages already delivered are handled in their
// batches, not left to wait out their AckWait.
func batchLoop(ctx context.Context, cons jetstream.Consumer, h BatchHandler, s *settler) error {
	size, wait := s.batchSize, s.batchWait
	it, err := messages(cons, size)
	if err != nil {
		return fmt.Errorf("jetstream: %w", err)
	}
	defer it.Stop()
	stop := context.AfterFunc(ctx, it.Drain)
	defer stop()
	// On a stop, a batch waiting to be retried is handed back, and so is
	// every message after it (handling a later one first would break the
	// order per key), once the iterator is drained: its interest is gone,
	// so the server cannot deliver them to this instance again, behind
	// later ones.
	var back []jetstream.Msg
	for {
		first, err := nextMsg(ctx, it, cons, s)
		if first == nil {
			s.handBack(back)
			return err
		}
		msgs := []jetstream.Msg{first}
		// Each next event may take up to wait; the whole batch at most
		// maxForming, so a trickle cannot hold a batch (unkept-alive) for long.
		for formed := time.Now().Add(max(wait, maxForming)); len(msgs) < size && time.Now().Before(formed); {
			msg, err := it.Next(jetstream.NextMaxWait(wait))
			if err != nil {
				break // none in time, or the iterator ends: the next Next says which
			}
			msgs = append(msgs, msg)
		}
		if len(back) > 0 {
			back = append(back, msgs...)
			continue
		}
		back = s.handleBatch(ctx, msgs, h)
	}
}

// handleBatch decodes msgs (dead-lettering each that cannot be), runs h on
// the rest until it succeeds, and settles every message. A failure that
// names one event dead-letters it and runs h again without it; any other
// failure waits out the retry policy's delay and runs h again on the same
// batch, with the messages kept in hand, until the policy's MaxDeliver
// attempts are used up (then every event of the batch is dead-lettered) or
// ctx is done: then it returns the batch's messages, which the caller hands
// back (handBack) for another instance.
func (s *settler) handleBatch(ctx context.Context, msgs []jetstream.Msg, h BatchHandler) (handBack []jetstream.Msg) {
	start := time.Now()
	var batch []*Delivery
	msgOf := map[*Delivery]jetstream.Msg{}
	for _, msg := range msgs {
		meta, err := msg.Metadata()
		if err != nil {
			s.log.Error("consumer: message without JetStream metadata", "subject", event.RedactSubject(msg.Subject()), "err", err)
			continue
		}
		if s.stale(msg, meta) {
			continue
		}
		d, err := decode(msg, meta)
		if err != nil {
			s.metrics.record(ctx, meta.Consumer, s.terminate(ctx, msg, meta, TermPoison, err, 0), time.Since(start))
			continue
		}
		batch = append(batch, d)
		msgOf[d] = msg
	}
	if len(batch) == 0 {
		return nil
	}
	stop := keepAlive(s.ackWait/2, inHand(batch, msgOf)...)
	defer stop()
	attempt := max(int(batch[0].Metadata.NumDelivered), 1)
	outage := 0    // consecutive failures because a dependency is unreachable
	conflicts := 0 // failures because a concurrent transaction won
	for len(batch) > 0 {
		hctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), s.handleTimeout)
		hctx, span := s.batchSpan(hctx, batch)
		err := s.call(hctx, func(ctx context.Context) error { return h(ctx, batch) })
		timedOut := errors.Is(hctx.Err(), context.DeadlineExceeded)
		cancel()
		// Out of time while the database answers: the work takes longer
		// than HandleTimeout (or waits for a lock held that long), which
		// no pause cures.
		slow := timedOut && !IsPermanent(err) && s.databaseAnswers(ctx)
		var ee *EventError
		if s.tracing {
			outcome := OutcomeAcked
			switch {
			case errors.As(err, &ee), IsPermanent(err):
				outcome = OutcomeDeadLettered
			case err != nil:
				outcome = OutcomeRetried
			}
			span.SetAttributes(attribute.String("shopbus.outcome", outcome))
		}
		endSpan(span, err)
		switch {
		case err == nil:
			s.ackBatch(ctx, batch, msgOf, start)
			return
		case errors.As(err, &ee) && slices.Contains(batch, ee.Delivery):
			d := ee.Delivery
			s.metrics.record(ctx, d.Metadata.Consumer, s.terminate(ctx, msgOf[d], d.Metadata, TermPoison, ee.Err, 0), time.Since(start))
			batch = slices.DeleteFunc(batch, func(x *Delivery) bool { return x == d })
		case IsPermanent(err) && len(batch) == 1:
			d := batch[0]
			s.metrics.record(ctx, d.Metadata.Consumer, s.terminate(ctx, msgOf[d], d.Metadata, TermPoison, err, 0), time.Since(start))
			return
		case !IsPermanent(err) && postgres.IsConflict(err):
			// The transaction lost to a concurrent one (a deadlock or a
			// serialization failure): the other has gone on, so run the
			// batch again at once, and back off only if it keeps losing.
			// It does not count against MaxDeliver.
			conflicts++
			for _, d := range batch {
				s.metrics.record(ctx, d.Metadata.Consumer, OutcomeRetried, time.Since(start))
			}
			s.log.Warn("consumer: the batch's transaction conflicted with a concurrent one; retrying it", "events", len(batch),
				"first_seq", batch[0].Metadata.Sequence.Stream, "conflicts", conflicts, "err", scrubbed(err, msgs...))
			if conflicts > 1 {
				select {
				case <-time.After(s.retry.Delay(conflicts - 1)):
				case <-ctx.Done():
					return inHand(batch, msgOf)
				}
			}
			continue
		case slow && len(batch) > 1:
			// Each event then has HandleTimeout to itself, and one that
			// still runs out of it is retried alone (below), then
			// dead-lettered, instead of holding its partition for good.
			s.log.Warn("consumer: the batch ran out of its time while PostgreSQL answers; handling it one event at a time", "events", len(batch),
				"first_seq", batch[0].Metadata.Sequence.Stream, "timeout", s.handleTimeout, "err", scrubbed(err, msgs...))
			return s.oneByOne(ctx, batch, msgOf, h)
		case !IsPermanent(err) && postgres.IsUnavailable(err) && !slow:
			// PostgreSQL is unreachable: pause instead of burning the
			// batch's deliveries. It waits in hand (its ack deadline kept
			// alive), this consumer fetches nothing more meanwhile, and the
			// wait does not count against MaxDeliver, so an outage of any
			// length dead-letters nothing. A statement that ran out of the
			// handler's time pauses too: a network that drops packets
			// looks like that, and so does a lock held elsewhere, which
			// the log and the consumer's lag then show.
			outage++
			delay := s.retry.Delay(outage)
			if outage == 1 || outage%10 == 0 {
				msg := "consumer: PostgreSQL unreachable; paused, the batch waits in hand"
				if timedOut {
					msg = "consumer: the batch ran out of its time in PostgreSQL (unreachable, or waiting for a lock held elsewhere); paused, the batch waits in hand"
				}
				s.log.Warn(msg, "events", len(batch), "first_seq", batch[0].Metadata.Sequence.Stream, "failures", outage,
					"err", scrubbed(err, msgs...), "retry_in", delay)
			}
			for _, d := range batch {
				s.metrics.record(ctx, d.Metadata.Consumer, OutcomePaused, time.Since(start))
			}
			select {
			case <-time.After(delay):
			case <-ctx.Done():
				return inHand(batch, msgOf)
			}
			continue
		case errors.Is(err, ErrPanic) && len(batch) > 1:
			// A panic names no event: one at a time finds the one that
			// causes it, and the others take effect.
			return s.oneByOne(ctx, batch, msgOf, h)
		case s.retry.MaxDeliver > 0 && attempt >= s.retry.MaxDeliver:
			for _, d := range batch {
				s.metrics.record(ctx, d.Metadata.Consumer, s.terminate(ctx, msgOf[d], d.Metadata, TermExhausted, err, attempt), time.Since(start))
			}
			return
		default:
			if IsPermanent(err) {
				// Permanent, but for which event? One at a time finds it.
				s.log.Warn("consumer: a permanent failure naming no event; handling the batch one event at a time", "events", len(batch),
					"first_seq", batch[0].Metadata.Sequence.Stream, "err", scrubbed(err, msgs...))
				return s.oneByOne(ctx, batch, msgOf, h)
			}
			delay := s.retry.Delay(attempt)
			for _, d := range batch {
				s.remember(d.Metadata.Sequence.Stream, time.Now())
				s.metrics.record(ctx, d.Metadata.Consumer, OutcomeRetried, time.Since(start))
			}
			msg := "consumer: transient failure of a batch; retrying it"
			if slow {
				msg = "consumer: the event ran out of its time while PostgreSQL answers (its work, or a lock held elsewhere, takes longer); retrying it"
			}
			s.log.Warn(msg, "events", len(batch),
				"first_seq", batch[0].Metadata.Sequence.Stream, "attempt", attempt, "err", scrubbed(err, msgs...), "retry_in", delay)
			select {
			case <-time.After(delay):
				attempt++
			case <-ctx.Done():
				return inHand(batch, msgOf)
			}
		}
	}
	return nil
}

// pingTimeout bounds databaseAnswers.
const pingTimeout = 5 * time.Second

// databaseAnswers reports whether the handler's database answers now
// (ConsumerConfig.Ping), false without a Ping.
func (s *settler) databaseAnswers(ctx context.Context) bool {
	if s.ping == nil {
		return false
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), pingTimeout)
	defer cancel()
	return s.ping(ctx) == nil
}

// handBackDelay is the delay of a hand-back's Naks: next to nothing, so
// another instance takes the messages at once, yet a delay, because the
// server redelivers delayed Naks in stream order (its pending timer sorts
// them), which it did not always do for plain ones (TestBatchStop saw a
// partition's first two events swapped).
const handBackDelay = 50 * time.Millisecond

// handBack hands msgs back to JetStream, in order, when the consumer stops
// with them in hand, so another instance takes them now rather than after
// a retry's delay or their AckWait. The consumer's iterator is drained by
// then: no interest is left to deliver them to here.
func (s *settler) handBack(msgs []jetstream.Msg) {
	for _, msg := range msgs {
		if err := msg.NakWithDelay(handBackDelay); err != nil {
			s.log.Warn("consumer: stopping; hand-back not sent, the event waits out its AckWait",
				"subject", event.RedactSubject(msg.Subject()), "err", err)
		}
	}
}

// oneByOne handles each event of batch, in order, as a batch of its own
// (handleBatch), so that the one whose failure is permanent is
// dead-lettered alone. One whose failure is transient is retried in place,
// as a batch is, and holds back the events behind it: a Nak would let them
// overtake it within its key. On a stop it returns the messages it has not
// settled, in order, for the caller to hand back.
func (s *settler) oneByOne(ctx context.Context, batch []*Delivery, msgOf map[*Delivery]jetstream.Msg, h BatchHandler) []jetstream.Msg {
	for i, d := range batch {
		if ctx.Err() != nil {
			return inHand(batch[i:], msgOf)
		}
		if back := s.handleBatch(ctx, []jetstream.Msg{msgOf[d]}, h); len(back) > 0 {
			return append(back, inHand(batch[i+1:], msgOf)...)
		}
	}
	return nil
}

// ackBatch acks every message of a committed batch: all but the last
// without waiting, the last with a confirmation (acks on one connection
// reach the server in order), waiting at most ackTimeout: a server that
// restarted meanwhile may never answer an ack of a delivery it forgot.
func (s *settler) ackBatch(ctx context.Context, batch []*Delivery, msgOf map[*Delivery]jetstream.Msg, start time.Time) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), ackTimeout)
	defer cancel()
	s.metrics.recordBatch(ctx, len(batch))
	for i, d := range batch {
		msg := msgOf[d]
		s.forget(d.Metadata.Sequence.Stream)
		var err error
		if i < len(batch)-1 {
			err = msg.Ack()
		} else {
			err = msg.DoubleAck(ctx)
		}
		if err != nil {
			// The effects are committed; a redelivery finds them in
			// processed_events.
			s.log.Warn("consumer: ack not confirmed; the event may be redelivered", "subject", event.RedactSubject(msg.Subject()),
				"stream_seq", d.Metadata.Sequence.Stream, "err", err)
		}
		s.metrics.record(ctx, d.Metadata.Consumer, OutcomeAcked, time.Since(start))
	}
}

// batchSpan starts the span of one attempt at a batch, in the trace of its
// first event and linked to the others', when traces are recorded.
func (s *settler) batchSpan(ctx context.Context, batch []*Delivery) (context.Context, trace.Span) {
	ctx = event.ContextWithTrace(ctx, batch[0].Envelope)
	if !s.tracing {
		return ctx, trace.SpanFromContext(ctx)
	}
	links := make([]trace.Link, 0, len(batch)-1)
	for _, d := range batch[1:] {
		links = append(links, trace.Link{SpanContext: trace.SpanContextFromContext(event.ContextWithTrace(context.Background(), d.Envelope))})
	}
	return s.tracer.Start(ctx, "process batch "+typeOf(batch[0].Subject), trace.WithSpanKind(trace.SpanKindConsumer),
		trace.WithLinks(links...), trace.WithAttributes(
			attribute.String("messaging.system", "nats"),
			attribute.String("messaging.operation.type", "process"),
			attribute.String("messaging.consumer.group.name", batch[0].Metadata.Consumer),
			attribute.Int("messaging.batch.message_count", len(batch)),
		))
}

// inHand returns the messages of batch.
func inHand(batch []*Delivery, msgOf map[*Delivery]jetstream.Msg) []jetstream.Msg {
	out := make([]jetstream.Msg, len(batch))
	for i, d := range batch {
		out[i] = msgOf[d]
	}
	return out
}
