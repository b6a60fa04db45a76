package deadletter

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/shopbus/shopbus/internal/messaging"
)

// Collector turns advisories into dead letters.
type Collector struct {
	js  jetstream.JetStream
	log *slog.Logger
}

// NewCollector returns a collector. Several may run: they share one durable
// consumer on the advisory stream.
func NewCollector(js jetstream.JetStream, log *slog.Logger) *Collector {
	return &Collector{js: js, log: log.With("component", "deadletter-collector")}
}

// advisory is what both advisories carry (MSG_TERMINATED adds the reason).
type advisory struct {
	Type       string    `json:"type"`
	Time       time.Time `json:"timestamp"`
	Stream     string    `json:"stream"`
	Consumer   string    `json:"consumer"`
	StreamSeq  uint64    `json:"stream_seq"`
	Deliveries uint64    `json:"deliveries"`
	Reason     string    `json:"reason"`
}

// Run collects until ctx is done. Advisories that arrived while no collector
// ran wait in the advisory stream and are collected when it starts.
func (c *Collector) Run(ctx context.Context) error {
	for failures := 0; ; {
		err := c.run(ctx)
		if ctx.Err() != nil {
			return ctx.Err()
		}
		failures++
		wait := messaging.Backoff(failures)
		c.log.Error("stopped receiving advisories; starting again", "err", err, "retry_in", wait)
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(wait):
		}
	}
}

// run declares the collector's consumer and collects until ctx is done or
// the message iterator ends.
func (c *Collector) run(ctx context.Context) error {
	cons, err := c.js.CreateOrUpdateConsumer(ctx, AdvisoryStream, jetstream.ConsumerConfig{
		Durable:       collectorDurable,
		AckPolicy:     jetstream.AckExplicitPolicy,
		AckWait:       30 * time.Second,
		MaxDeliver:    -1, // never give up on a dead letter
		DeliverPolicy: jetstream.DeliverAllPolicy,
	})
	if err != nil {
		return fmt.Errorf("jetstream: consumer %s: %w", collectorDurable, err)
	}
	it, err := cons.Messages(messaging.PullOptions(16)...)
	if err != nil {
		return fmt.Errorf("jetstream: %w", err)
	}
	stop := context.AfterFunc(ctx, it.Stop)
	defer stop()
	for {
		msg, err := it.Next()
		if errors.Is(err, jetstream.ErrMsgIteratorClosed) {
			return errors.New("message iterator closed")
		}
		if errors.Is(err, jetstream.ErrNoHeartbeat) || errors.Is(err, jetstream.ErrConsumerDeleted) {
			return fmt.Errorf("jetstream: %w", err)
		}
		if err != nil {
			c.log.Warn("next advisory", "err", err)
			continue
		}
		if err := c.collect(ctx, msg); err != nil {
			meta, _ := msg.Metadata()
			delivered := uint64(1)
			if meta != nil {
				delivered = meta.NumDelivered
			}
			c.log.Warn("dead letter not stored; retrying", "err", err)
			_ = msg.NakWithDelay(messaging.Backoff(int(delivered)))
			continue
		}
		if err := msg.DoubleAck(ctx); err != nil {
			c.log.Warn("ack advisory", "err", err) // redelivered: collect is idempotent
		}
	}
}

// collect stores the dead letter an advisory announces, once.
func (c *Collector) collect(ctx context.Context, msg jetstream.Msg) error {
	var a advisory
	if err := json.Unmarshal(msg.Data(), &a); err != nil || a.Stream == "" || a.StreamSeq == 0 {
		c.log.Error("unreadable advisory; skipped", "subject", msg.Subject(), "err", err)
		return nil
	}
	if !messaging.IsEventStream(a.Stream) {
		return nil // another application's stream, or the DLQ machinery's own: not shopbus's to dead-letter
	}
	if strings.Contains(msg.Subject(), ".MSG_TERMINATED.") && strings.HasSuffix(a.Reason, " "+messaging.TermFiled) {
		return nil // its consumer stored the dead letter before the Term (Filer)
	}
	l := letter{stream: a.Stream, consumer: a.Consumer, seq: a.StreamSeq, deliveries: a.Deliveries, failedAt: a.Time}
	l.reason = ReasonMaxDeliveries
	if strings.Contains(msg.Subject(), ".MSG_TERMINATED.") {
		var attempts uint64
		l.reason, l.errText, l.firstFailure, attempts = parseTermReason(a.Reason)
		l.deliveries = max(l.deliveries, attempts)
	}
	orig, err := c.js.Stream(ctx, a.Stream)
	var raw *jetstream.RawStreamMsg
	if err == nil {
		raw, err = orig.GetMsg(ctx, a.StreamSeq)
	}
	switch {
	case err == nil:
		l.subject, l.data, l.header, l.storedAt = raw.Subject, raw.Data, raw.Header, raw.Time
	case errors.Is(err, jetstream.ErrMsgNotFound), errors.Is(err, jetstream.ErrStreamNotFound):
		l.missing = true
	default:
		return fmt.Errorf("fetch %s #%d: %w", a.Stream, a.StreamSeq, err)
	}
	stored, err := l.store(ctx, c.js)
	if err != nil {
		return err
	}
	if stored {
		c.log.Info("dead letter stored", "stream", l.stream, "seq", l.seq, "reason", l.reason, "error", l.errText)
	}
	return nil
}
