package messaging

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
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
// message (dead-letter queue); any other error retries it after Backoff.
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
	// MaxDeliver bounds deliveries, after which JetStream gives up and
	// advises MAX_DELIVERIES (default 10).
	MaxDeliver int
	// MaxAckPending bounds unacked deliveries across instances (default 256).
	MaxAckPending int
	// Workers is how many messages this instance handles at once (default 1).
	Workers int
}

func (c *ConsumerConfig) defaults() {
	if c.AckWait == 0 {
		c.AckWait = 30 * time.Second
	}
	if c.MaxDeliver == 0 {
		c.MaxDeliver = 10
	}
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
		MaxDeliver:     cfg.MaxDeliver,
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
func Consume(ctx context.Context, js jetstream.JetStream, cfg ConsumerConfig, h Handler, log *slog.Logger) error {
	cfg.defaults()
	cons, err := EnsureConsumer(ctx, js, cfg)
	if err != nil {
		return err
	}
	log = log.With("consumer", cfg.Durable, "stream", cfg.Stream)
	var wg sync.WaitGroup
	errs := make(chan error, cfg.Workers)
	for range cfg.Workers {
		wg.Go(func() {
			if err := consumeLoop(ctx, cons, h, log); err != nil {
				errs <- err
			}
		})
	}
	wg.Wait()
	close(errs)
	if err := <-errs; err != nil {
		return err
	}
	return ctx.Err()
}

func consumeLoop(ctx context.Context, cons jetstream.Consumer, h Handler, log *slog.Logger) error {
	it, err := cons.Messages(jetstream.PullMaxMessages(1))
	if err != nil {
		return fmt.Errorf("jetstream: %w", err)
	}
	stop := context.AfterFunc(ctx, it.Stop)
	defer stop()
	for {
		msg, err := it.Next()
		if err != nil {
			if errors.Is(err, jetstream.ErrMsgIteratorClosed) {
				return nil
			}
			log.Warn("consumer: next", "err", err)
			continue
		}
		// A message in hand is finished even when ctx is cancelled, so a
		// committed effect is acked; handleTimeout bounds it.
		hctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), handleTimeout)
		handle(hctx, msg, h, log)
		cancel()
	}
}

// handleTimeout bounds one handler call (and thus a graceful stop).
const handleTimeout = 20 * time.Second

// handle runs h on msg and settles msg: ack, nak with delay, or term.
func handle(ctx context.Context, msg jetstream.Msg, h Handler, log *slog.Logger) {
	meta, err := msg.Metadata()
	if err != nil {
		log.Error("consumer: message without JetStream metadata", "subject", msg.Subject(), "err", err)
		return
	}
	d, err := decode(msg, meta)
	if err == nil {
		err = h(event.ContextWithTrace(ctx, d.Envelope), d)
	}
	attrs := []any{"subject", msg.Subject(), "stream_seq", meta.Sequence.Stream, "delivered", meta.NumDelivered}
	switch {
	case err == nil:
		if err := msg.DoubleAck(ctx); err != nil {
			// The effect is committed; a redelivery finds it in
			// processed_events.
			log.Warn("consumer: ack not confirmed; the event may be redelivered", append(attrs, "err", err)...)
		}
	case IsPermanent(err):
		log.Error("consumer: permanent failure; terminating (dead-letter queue)", append(attrs, "err", err)...)
		if err := msg.TermWithReason(truncate(err.Error(), 512)); err != nil {
			log.Warn("consumer: term", append(attrs, "err", err)...)
		}
	default:
		delay := Backoff(int(meta.NumDelivered))
		log.Warn("consumer: transient failure; retrying", append(attrs, "err", err, "retry_in", delay)...)
		if err := msg.NakWithDelay(delay); err != nil {
			log.Warn("consumer: nak", append(attrs, "err", err)...)
		}
	}
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

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n]
}
