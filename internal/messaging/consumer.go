package messaging

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"google.golang.org/protobuf/proto"

	eventv1 "github.com/shopbus/shopbus/gen/go/shopbus/event/v1"
	"github.com/shopbus/shopbus/internal/event"
)

// Delivery is one event handed to a Handler.
type Delivery struct {
	// Envelope is the decoded, validated envelope.
	Envelope *eventv1.Envelope
	// Event is the payload, decoded, validated and upcast to the newest
	// version of its event.
	Event proto.Message
	// Spec describes Event (its newest version).
	Spec event.Spec
	// Subject is the subject the event was published on.
	Subject string
	// Metadata is JetStream's: stream sequence, delivery count ...
	Metadata *jetstream.MsgMetadata
}

// Handler handles one event. Returning nil acks it, so a handler returns nil
// only once its effect is committed. An error that IsPermanent terminates the
// message (dead-letter queue); any other error retries it after the retry
// policy's delay, and terminates it when its deliveries are used up.
type Handler func(ctx context.Context, d *Delivery) error

// ConsumerConfig declares a durable pull consumer.
type ConsumerConfig struct {
	// Stream is the stream to consume.
	Stream string
	// Durable is the consumer's name; instances with the same name share
	// the work.
	Durable string
	// Subjects filters the stream (all of it when empty).
	Subjects []string
	// AckWait is how long a delivery may stay unacked before JetStream
	// redelivers it (default 30s).
	AckWait time.Duration
	// Retry is the retry policy; zero fields take DefaultRetry's.
	Retry RetryPolicy
	// MaxAckPending bounds unacked deliveries across instances (default 256).
	MaxAckPending int
	// Workers is how many messages this instance handles at once (default 1).
	Workers int
	// DeadLetter, when set, stores a message in the dead-letter queue
	// before the consumer terminates it (deadletter.Filer); if it fails, the
	// message is retried instead. Without it, the MSG_TERMINATED advisory
	// that follows the Term is the only record.
	DeadLetter DeadLetterFunc
}

// DeadLetterFunc stores msg in the dead-letter queue. reason is what the
// consumer gives TermWithReason.
type DeadLetterFunc func(ctx context.Context, msg jetstream.Msg, reason string) error

func (c *ConsumerConfig) defaults() {
	if c.AckWait == 0 {
		c.AckWait = 30 * time.Second
	}
	c.Retry = c.Retry.withDefaults()
	if c.MaxAckPending == 0 {
		c.MaxAckPending = 256
	}
	if c.Workers == 0 {
		c.Workers = 1
	}
}

// EnsureConsumer creates or updates the durable consumer: explicit acks,
// bounded AckWait and MaxAckPending, delivering from the start of the
// stream. Stopping a consumer never deletes it.
func EnsureConsumer(ctx context.Context, js jetstream.JetStream, cfg ConsumerConfig) (jetstream.Consumer, error) {
	cfg.defaults()
	c, err := js.CreateOrUpdateConsumer(ctx, cfg.Stream, jetstream.ConsumerConfig{
		Durable:        cfg.Durable,
		FilterSubjects: cfg.Subjects,
		AckPolicy:      jetstream.AckExplicitPolicy,
		AckWait:        cfg.AckWait,
		MaxDeliver:     cfg.Retry.MaxDeliver,
		MaxAckPending:  cfg.MaxAckPending,
		DeliverPolicy:  jetstream.DeliverAllPolicy,
	})
	if err != nil {
		return nil, fmt.Errorf("jetstream: consumer %s on %s: %w", cfg.Durable, cfg.Stream, err)
	}
	return c, nil
}

// Consume declares the consumer and handles its messages until ctx is done.
// On stop it finishes the messages in hand (acking those that succeed) and
// leaves the rest unacked for redelivery; it returns when its workers have.
// If the consumer disappears while running (deleted by an operator, a stream
// restored), each worker declares it again and carries on: a consumer never
// stops silently.
func Consume(ctx context.Context, js jetstream.JetStream, cfg ConsumerConfig, h Handler, log *slog.Logger) error {
	cfg.defaults()
	if _, err := EnsureConsumer(ctx, js, cfg); err != nil {
		return err
	}
	log = log.With("consumer", cfg.Durable, "stream", cfg.Stream)
	s := &settler{retry: cfg.Retry, deadLetter: cfg.DeadLetter, log: log, firstFailure: map[uint64]time.Time{}}
	var wg sync.WaitGroup
	for range cfg.Workers {
		wg.Go(func() {
			for failures := 0; ctx.Err() == nil; {
				err := consumeLoop(ctx, js, cfg, h, s)
				if ctx.Err() != nil {
					return
				}
				failures++
				wait := Backoff(failures)
				log.Error("consumer: stopped receiving; declaring it again", "err", err, "retry_in", wait)
				select {
				case <-ctx.Done():
				case <-time.After(wait):
				}
			}
		})
	}
	wg.Wait()
	return ctx.Err()
}

// consumeLoop declares the consumer and handles messages until ctx is done
// (nil) or its message iterator ends (an error).
func consumeLoop(ctx context.Context, js jetstream.JetStream, cfg ConsumerConfig, h Handler, s *settler) error {
	cons, err := EnsureConsumer(ctx, js, cfg)
	if err != nil {
		return err
	}
	it, err := cons.Messages(PullOptions(1)...)
	if err != nil {
		return fmt.Errorf("jetstream: %w", err)
	}
	stop := context.AfterFunc(ctx, it.Stop)
	defer stop()
	for {
		msg, err := it.Next()
		if err != nil {
			if errors.Is(err, jetstream.ErrMsgIteratorClosed) {
				if ctx.Err() != nil {
					return nil
				}
				return errors.New("message iterator closed")
			}
			if errors.Is(err, jetstream.ErrNoHeartbeat) || errors.Is(err, jetstream.ErrConsumerDeleted) {
				// The server stopped answering for this consumer (it
				// was deleted, or NATS moved): declare it again.
				return fmt.Errorf("jetstream: %w", err)
			}
			s.log.Warn("consumer: next", "err", err)
			continue
		}
		// A message in hand is finished even when ctx is cancelled, so a
		// committed effect is acked; handleTimeout bounds it.
		hctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), handleTimeout)
		s.handle(hctx, msg, h)
		cancel()
	}
}

// PullOptions are the pull settings of every shopbus consumer: at most
// max messages buffered, pull requests that expire after 10s with
// heartbeats every 5s, and missing heartbeats reported, so a consumer that
// was deleted or lost is noticed within about 10s and declared again.
func PullOptions(max int) []jetstream.PullMessagesOpt {
	return []jetstream.PullMessagesOpt{
		jetstream.PullMaxMessages(max),
		jetstream.PullExpiry(10 * time.Second),
		jetstream.PullHeartbeat(5 * time.Second),
		jetstream.WithMessagesErrOnMissingHeartbeat(true),
	}
}

// handleTimeout bounds one handler call (and thus a graceful stop), and
// deadLetterTimeout the storing of a dead letter.
const (
	handleTimeout     = 20 * time.Second
	deadLetterTimeout = 10 * time.Second
)

// Reasons given to TermWithReason, which the MSG_TERMINATED advisory carries
// to the dead-letter queue: "<kind>: <error> [first failure <RFC 3339>]".
const (
	// TermPoison marks a permanent failure, terminated at once.
	TermPoison = "poison"
	// TermExhausted marks a transient failure on the last allowed delivery.
	TermExhausted = "retries exhausted"
	// TermFiled ends the reason of a message whose dead letter the consumer
	// stored before terminating it (ConsumerConfig.DeadLetter): the
	// advisory's collector has nothing to add.
	TermFiled = "[filed]"
)

// settler settles messages: ack, nak with delay, or term.
type settler struct {
	retry      RetryPolicy
	deadLetter DeadLetterFunc
	log        *slog.Logger

	mu           sync.Mutex
	firstFailure map[uint64]time.Time // by stream sequence, for the DLQ
}

// handle runs h on msg and settles msg. A transient failure on the last
// allowed delivery is terminated with its error (rather than left to
// JetStream's MAX_DELIVERIES advisory, which cannot say what went wrong), so
// the dead letter records the last error.
func (s *settler) handle(ctx context.Context, msg jetstream.Msg, h Handler) {
	meta, err := msg.Metadata()
	if err != nil {
		s.log.Error("consumer: message without JetStream metadata", "subject", msg.Subject(), "err", err)
		return
	}
	d, err := decode(msg, meta)
	if err == nil {
		err = h(event.ContextWithTrace(ctx, d.Envelope), d)
	}
	seq := meta.Sequence.Stream
	attrs := []any{"subject", msg.Subject(), "stream_seq", seq, "delivered", meta.NumDelivered}
	switch {
	case err == nil:
		s.forget(seq)
		if err := msg.DoubleAck(ctx); err != nil {
			// The effect is committed; a redelivery finds it in
			// processed_events.
			s.log.Warn("consumer: ack not confirmed; the event may be redelivered", append(attrs, "err", err)...)
		}
	case IsPermanent(err), s.retry.MaxDeliver > 0 && int(meta.NumDelivered) >= s.retry.MaxDeliver:
		kind := TermPoison
		if !IsPermanent(err) {
			kind = TermExhausted
		}
		first := s.forget(seq)
		if first.IsZero() {
			first = time.Now()
		}
		reason := fmt.Sprintf("%s: %s [first failure %s]", kind, truncate(err.Error(), 400), first.UTC().Format(time.RFC3339Nano))
		if s.deadLetter != nil {
			// Its own time: the handler may have used up ctx's.
			dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), deadLetterTimeout)
			err := s.deadLetter(dctx, msg, reason)
			cancel()
			if err != nil {
				if int(meta.NumDelivered) < s.retry.MaxDeliver {
					s.remember(seq, first)
				} // else no redelivery: JetStream's MAX_DELIVERIES advisory files it
				s.log.Warn("consumer: dead letter not stored; retrying", append(attrs, "err", err)...)
				_ = msg.NakWithDelay(s.retry.Delay(int(meta.NumDelivered)))
				return
			}
			reason += " " + TermFiled
		}
		s.log.Error("consumer: giving up; terminating (dead-letter queue)", append(attrs, "err", err, "kind", kind)...)
		if err := msg.TermWithReason(reason); err != nil {
			s.log.Warn("consumer: term", append(attrs, "err", err)...)
		}
	default:
		s.remember(seq, time.Now())
		delay := s.retry.Delay(int(meta.NumDelivered))
		s.log.Warn("consumer: transient failure; retrying", append(attrs, "err", err, "retry_in", delay)...)
		if err := msg.NakWithDelay(delay); err != nil {
			s.log.Warn("consumer: nak", append(attrs, "err", err)...)
		}
	}
}

// remember records at as the first failure of seq, unless it has one.
func (s *settler) remember(seq uint64, at time.Time) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.firstFailure[seq]; ok {
		return
	}
	if len(s.firstFailure) >= 10_000 { // bounded: forget an arbitrary one
		for k := range s.firstFailure {
			delete(s.firstFailure, k)
			break
		}
	}
	s.firstFailure[seq] = at
}

func (s *settler) forget(seq uint64) time.Time {
	s.mu.Lock()
	defer s.mu.Unlock()
	t := s.firstFailure[seq]
	delete(s.firstFailure, seq)
	return t
}

func decode(msg jetstream.Msg, meta *jetstream.MsgMetadata) (*Delivery, error) {
	env, err := event.Decode(msg.Data())
	if err != nil {
		return nil, err
	}
	if err := event.CheckHeaders(msg.Headers(), env); err != nil {
		return nil, err
	}
	payload, spec, err := event.Latest(env)
	if err != nil {
		return nil, err
	}
	return &Delivery{Envelope: env, Event: payload, Spec: spec, Subject: msg.Subject(), Metadata: meta}, nil
}

// truncate cuts s to at most n bytes without splitting a character.
func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return strings.ToValidUTF8(s[:n], "")
}
