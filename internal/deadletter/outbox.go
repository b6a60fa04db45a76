package deadletter

import (
	"context"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/shopbus/shopbus/internal/event"
	"github.com/shopbus/shopbus/internal/messaging"
)

// OutboxConsumer names the relay in the dead letters of outbox rows it set
// aside.
const OutboxConsumer = "outbox-relay"

// OutboxFiler returns the messaging.UnpublishableFunc of a service's relay
// on js: it stores an outbox row that can never be published as a dead
// letter (reason terminated, consumer OutboxConsumer, sequence the row's,
// the error saying why), where `shopbus dlq list` shows it. It cannot be
// redriven: its event was never in a stream; the row stays, parked, in the
// outbox. A service's NATS identity files it under its own event stream.
func OutboxFiler(js jetstream.JetStream) messaging.UnpublishableFunc {
	return func(ctx context.Context, row messaging.UnpublishableRow) error {
		l := letter{
			stream: streamOfSubject(row.Subject), consumer: OutboxConsumer, seq: uint64(row.Seq), deliveries: 1,
			reason: ReasonTerminated, errText: "unpublishable: " + row.Reason, failedAt: time.Now(),
			data: row.Envelope, missing: true,
		}
		if env, err := event.Decode(row.Envelope); err == nil {
			l.header = event.Headers(env)
		}
		_, err := l.store(ctx, js)
		return err
	}
}

// streamOfSubject is the event stream of a subject
// ("ecommerce.order.created.v2.<key>" → ECOMMERCE_ORDER).
func streamOfSubject(subject string) string {
	tokens := strings.SplitN(subject, ".", 3)
	if len(tokens) < 2 {
		return "UNKNOWN"
	}
	return messaging.StreamName(tokens[0], tokens[1])
}
