package deadletter

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/shopbus/shopbus/internal/messaging"
)

// letter is one dead letter before it is stored: the original message and
// why its consumer gave up on it. The collector makes one from an advisory,
// Filer from the message its consumer is terminating.
type letter struct {
	stream, consumer string
	seq, deliveries  uint64
	reason           string // ReasonMaxDeliveries or ReasonTerminated
	errText          string
	firstFailure     string // RFC 3339, when known
	failedAt         time.Time

	// The original message, unless missing.
	subject  string
	data     []byte
	header   nats.Header
	storedAt time.Time
	missing  bool
}

// store publishes l to the DLQ, once: a dead letter already stored for the
// same (stream, consumer, sequence) is left as it is (stored is false).
func (l *letter) store(ctx context.Context, js jetstream.JetStream) (stored bool, err error) {
	h := nats.Header{}
	for k, vs := range l.header {
		if k == nats.MsgIdHdr {
			h.Set(HeaderOriginalMsgID, vs[0])
			continue
		}
		// JetStream's own headers, and any Shopbus-Dlq-* the original
		// carried: a message must not write its own dead letter's record
		// (mark it unredrivable, name another original).
		if strings.HasPrefix(k, "Nats-") || strings.HasPrefix(k, "Shopbus-Dlq-") {
			continue
		}
		h[k] = vs
	}
	if l.missing {
		h.Set(HeaderOriginalMissing, "true")
	} else {
		h.Set(HeaderOriginalSubject, l.subject)
		h.Set(HeaderOriginalTimestamp, l.storedAt.UTC().Format(time.RFC3339Nano))
	}
	failedAt := l.failedAt
	if failedAt.IsZero() {
		failedAt = time.Now()
	}
	h.Set(HeaderOriginalStream, l.stream)
	h.Set(HeaderOriginalSequence, strconv.FormatUint(l.seq, 10))
	h.Set(HeaderOriginalConsumer, l.consumer)
	h.Set(HeaderDeliveryCount, strconv.FormatUint(l.deliveries, 10))
	h.Set(HeaderReason, l.reason)
	h.Set(HeaderLastFailure, failedAt.UTC().Format(time.RFC3339Nano))
	if l.errText != "" {
		h.Set(HeaderExceptionMessage, l.errText)
	}
	if l.firstFailure != "" {
		h.Set(HeaderFirstFailure, l.firstFailure)
	}
	subj := subject(l.stream, l.consumer, l.seq)
	publish := func(data []byte) (*jetstream.PubAck, error) {
		return js.PublishMsg(ctx, &nats.Msg{Subject: subj, Data: data, Header: h},
			jetstream.WithMsgID(strings.TrimPrefix(subj, SubjectPrefix)), jetstream.WithExpectStream(Stream))
	}
	ack, err := publish(l.data)
	if tooLarge(err) {
		// The original with the Shopbus-Dlq-* headers exceeds what NATS
		// takes: store the dead letter without the data, which stays in its
		// stream, where Store.Redrive fetches it (or, for an outbox row
		// never published, in the outbox).
		h.Set(HeaderOriginalOmitted, "true")
		ack, err = publish(nil)
	}
	if isAlreadyStored(err) {
		return false, nil // seen before: one dead letter per message and consumer
	}
	if err != nil {
		return false, fmt.Errorf("store dead letter %s: %w", subj, err)
	}
	return !ack.Duplicate, nil
}

// Filer returns the messaging.ConsumerConfig.DeadLetter of consumers on js:
// it stores the dead letter of a message before its consumer terminates it,
// and returns only once the DLQ has it. The MSG_TERMINATED advisory that
// follows the Term is then a duplicate. Without a filer, the advisory is the
// only record, and a server that stops between the Term and the advisory
// loses it.
func Filer(js jetstream.JetStream) messaging.DeadLetterFunc {
	return func(ctx context.Context, msg jetstream.Msg, reason string) error {
		meta, err := msg.Metadata()
		if err != nil {
			return fmt.Errorf("dead letter: %w", err)
		}
		l := letter{
			stream: meta.Stream, consumer: meta.Consumer, seq: meta.Sequence.Stream, deliveries: meta.NumDelivered,
			subject: msg.Subject(), data: msg.Data(), header: msg.Headers(), storedAt: meta.Timestamp,
		}
		var attempts uint64
		l.reason, l.errText, l.firstFailure, attempts = parseTermReason(reason)
		l.deliveries = max(l.deliveries, attempts)
		_, err = l.store(ctx, js)
		return err
	}
}

// tooLarge reports a dead letter bigger than NATS or the DLQ stream take.
func tooLarge(err error) bool {
	var apiErr *jetstream.APIError
	return errors.Is(err, nats.ErrMaxPayload) ||
		errors.As(err, &apiErr) && strings.Contains(apiErr.Description, "message size exceeds maximum")
}

// isAlreadyStored reports the DLQ's refusal of a second dead letter for the
// same subject.
func isAlreadyStored(err error) bool {
	var apiErr *jetstream.APIError
	return errors.As(err, &apiErr) && strings.Contains(apiErr.Description, "maximum messages per subject exceeded")
}

// parseTermReason reads the reason messaging.Consume gives TermWithReason:
// "<kind>: <error> [attempts <n>] [first failure <RFC 3339>]", where kind is
// "poison" or "retries exhausted" and the attempts, when present, count the
// handler calls of a batch retried in place (more than JetStream's
// deliveries).
func parseTermReason(r string) (reason, errText, firstFailure string, attempts uint64) {
	r = strings.TrimSuffix(r, " "+messaging.TermFiled)
	reason = ReasonTerminated
	if strings.HasPrefix(r, messaging.TermExhausted) {
		reason = ReasonMaxDeliveries
	}
	if i := strings.LastIndex(r, " [first failure "); i >= 0 && strings.HasSuffix(r, "]") {
		firstFailure = r[i+len(" [first failure ") : len(r)-1]
		r = r[:i]
	}
	if i := strings.LastIndex(r, " [attempts "); i >= 0 && strings.HasSuffix(r, "]") {
		if n, err := strconv.ParseUint(r[i+len(" [attempts "):len(r)-1], 10, 32); err == nil {
			attempts, r = n, r[:i]
		}
	}
	return reason, r, firstFailure, attempts
}
