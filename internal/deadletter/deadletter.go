// Package deadletter is shopbus's dead-letter queue. JetStream announces a
// message its consumer gave up on with an advisory: MAX_DELIVERIES when the
// retries ran out, MSG_TERMINATED when the consumer terminated it as poison.
// shopbus captures those advisories in a stream (AdvisoryStream), so none is
// lost while the collector is down; the Collector turns each into a dead
// letter in the DLQ stream: the original message, fetched by its stream
// sequence, with headers that say where it came from and why (Header*). A
// consumer that terminates a message stores its dead letter first, through a
// Filer, because the MSG_TERMINATED advisory is lost if the server stops just
// after the Term; the advisory then adds nothing. The Store lists, shows,
// redrives and discards dead letters; Handler serves it as the
// DeadLetterService.
package deadletter

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// Streams of the dead-letter queue.
const (
	// Stream holds the dead letters, one per (stream, consumer, sequence).
	Stream = "SHOPBUS_DLQ"
	// SubjectPrefix starts the subject of every dead letter:
	// SubjectPrefix + "<stream>.<consumer>.<sequence>".
	SubjectPrefix = "shopbus.dlq."
	// AdvisoryMaxBytes bounds AdvisoryStream; the oldest advisories go
	// first when it is full.
	AdvisoryMaxBytes = 256 << 20
	// AdvisoryStream keeps JetStream's MAX_DELIVERIES and MSG_TERMINATED
	// advisories until the collector has turned them into dead letters.
	AdvisoryStream = "SHOPBUS_ADVISORIES"
	// collectorDurable is the collector's durable consumer.
	collectorDurable = "deadletter-collector"
)

// The headers of a dead letter. They follow Spring Kafka's dead-letter
// family (kafka_dlt-original-topic, -original-offset, -exception-message …):
// "Shopbus-Dlq-" plus what they describe. The original message's own headers
// are kept, except Nats-* control headers (its Nats-Msg-Id is kept as
// HeaderOriginalMsgID).
const (
	HeaderOriginalSubject   = "Shopbus-Dlq-Original-Subject"
	HeaderOriginalStream    = "Shopbus-Dlq-Original-Stream"
	HeaderOriginalSequence  = "Shopbus-Dlq-Original-Sequence"
	HeaderOriginalConsumer  = "Shopbus-Dlq-Original-Consumer"
	HeaderOriginalMsgID     = "Shopbus-Dlq-Original-Msg-Id"
	HeaderOriginalTimestamp = "Shopbus-Dlq-Original-Timestamp" // when the original was stored
	HeaderOriginalMissing   = "Shopbus-Dlq-Original-Missing"   // "true": the original was gone
	HeaderOriginalOmitted   = "Shopbus-Dlq-Original-Omitted"   // "true": too large to copy; it is in its stream
	HeaderDeliveryCount     = "Shopbus-Dlq-Delivery-Count"
	HeaderReason            = "Shopbus-Dlq-Reason" // "max_deliveries" or "terminated"
	HeaderExceptionMessage  = "Shopbus-Dlq-Exception-Message"
	HeaderFirstFailure      = "Shopbus-Dlq-First-Failure" // RFC 3339, when known
	HeaderLastFailure       = "Shopbus-Dlq-Last-Failure"  // RFC 3339
)

// Reasons, the values of HeaderReason.
const (
	ReasonMaxDeliveries = "max_deliveries"
	ReasonTerminated    = "terminated"
)

// Options are the DLQ's retention limits.
type Options struct {
	// MaxAge is how long a dead letter is kept (default 30 days).
	MaxAge time.Duration
	// MaxBytes bounds the DLQ (default 1 GiB). When it is full, new dead
	// letters are refused and the collector retries them: dead letters are
	// never dropped to make room.
	MaxBytes int64
	// Replicas is the number of copies in a cluster.
	Replicas int
}

// Ensure creates or updates the advisory stream and the DLQ stream. It is
// idempotent.
func Ensure(ctx context.Context, js jetstream.JetStream, opts Options) error {
	if opts.MaxAge == 0 {
		opts.MaxAge = 30 * 24 * time.Hour
	}
	if opts.MaxBytes == 0 {
		opts.MaxBytes = 1 << 30
	}
	replicas := max(opts.Replicas, 1)
	if err := ensureStream(ctx, js, jetstream.StreamConfig{
		Name:        AdvisoryStream,
		Description: "JetStream advisories that feed the shopbus dead-letter queue",
		Subjects: []string{
			"$JS.EVENT.ADVISORY.CONSUMER.MAX_DELIVERIES.>",
			"$JS.EVENT.ADVISORY.CONSUMER.MSG_TERMINATED.>",
		},
		Storage: jetstream.FileStorage,
		MaxAge:  7 * 24 * time.Hour,
		// Bounded in bytes too: a storm of advisories (every stream of
		// the server raises them) must not fill the disk.
		MaxBytes: AdvisoryMaxBytes,
		Replicas: replicas,
	}); err != nil {
		return fmt.Errorf("jetstream: stream %s: %w", AdvisoryStream, err)
	}
	if err := ensureStream(ctx, js, jetstream.StreamConfig{
		Name:        Stream,
		Description: "shopbus dead letters: messages their consumers gave up on",
		Subjects:    []string{SubjectPrefix + ">"},
		Storage:     jetstream.FileStorage,
		Retention:   jetstream.LimitsPolicy,
		MaxAge:      opts.MaxAge,
		MaxBytes:    opts.MaxBytes,
		// One dead letter per original message and consumer, whatever
		// number of times its advisory is seen.
		MaxMsgsPerSubject:    1,
		Discard:              jetstream.DiscardNew,
		DiscardNewPerSubject: true,
		Duplicates:           10 * time.Minute,
		Replicas:             replicas,
	}); err != nil {
		return fmt.Errorf("jetstream: stream %s: %w", Stream, err)
	}
	return nil
}

// subject is where the dead letter of (stream, consumer, seq) is stored.
func subject(stream, consumer string, seq uint64) string {
	return fmt.Sprintf("%s%s.%s.%d", SubjectPrefix, stream, consumer, seq)
}

// ensureStream creates or updates a stream, sending nothing when it is
// already as wanted: every component runs Ensure at start, and a service's
// NATS identity may read a stream's configuration but not change it.
func ensureStream(ctx context.Context, js jetstream.JetStream, want jetstream.StreamConfig) error {
	if s, err := js.Stream(ctx, want.Name); err == nil {
		have := s.CachedInfo().Config
		// The server says -1 for "no limit", which the client leaves 0.
		limit := func(have, want int64) bool { return have == want || have < 0 && want == 0 }
		if slices.Equal(have.Subjects, want.Subjects) && have.MaxAge == want.MaxAge && limit(have.MaxBytes, want.MaxBytes) &&
			have.Replicas == want.Replicas && have.Storage == want.Storage && limit(have.MaxMsgsPerSubject, want.MaxMsgsPerSubject) &&
			have.Discard == want.Discard && have.DiscardNewPerSubject == want.DiscardNewPerSubject &&
			(want.Duplicates == 0 || have.Duplicates == want.Duplicates) {
			return nil
		}
	} else if !errors.Is(err, jetstream.ErrStreamNotFound) {
		return err
	}
	_, err := js.CreateOrUpdateStream(ctx, want)
	return err
}
