package messaging

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/shopbus/shopbus/internal/event"
)

// DefaultDuplicateWindow is the JetStream duplicate window of every stream:
// a publish whose Nats-Msg-Id was seen within it is dropped. It must cover
// the longest time between an outbox row's first publish and its re-publish
// after a relay crash, restart or NATS outage; 10 minutes covers a restart or
// redeploy with room to spare, while the server keeps one id per message
// published in the window (at 1,000 events/s, 600k ids, some tens of MB).
// Beyond it, the consumers' processed_events table still absorbs a
// duplicate.
const DefaultDuplicateWindow = 10 * time.Minute

// StreamOptions are the settings of every stream EnsureStreams declares.
type StreamOptions struct {
	// Replicas is the number of copies in a cluster (1 embedded, 3 in
	// production).
	Replicas int
	// MaxAge is how long an event is kept (retention); 0 keeps it forever.
	MaxAge time.Duration
	// DuplicateWindow is the deduplication window (DefaultDuplicateWindow).
	DuplicateWindow time.Duration
}

// StreamName returns the stream that holds the events of a domain's bounded
// context: "ECOMMERCE_ORDER" for ecommerce/order.
func StreamName(domain, context string) string {
	return strings.ToUpper(domain + "_" + context)
}

// StreamOf returns the name of the stream that holds spec's events.
func StreamOf(spec event.Spec) string { return StreamName(spec.Domain, spec.Context) }

// EnsureStreams creates or updates one stream per bounded context of the
// event catalog, holding the subjects of its events, with file storage. It is
// idempotent: running it at every start is safe.
func EnsureStreams(ctx context.Context, js jetstream.JetStream, opts StreamOptions) error {
	subjects := map[string][]string{}
	var names []string
	for _, spec := range event.Catalog() {
		name := StreamOf(spec)
		if _, ok := subjects[name]; !ok {
			names = append(names, name)
		}
		subjects[name] = append(subjects[name], spec.Subject())
	}
	window := opts.DuplicateWindow
	if window == 0 {
		window = DefaultDuplicateWindow
	}
	replicas := max(opts.Replicas, 1)
	for _, name := range names {
		_, err := js.CreateOrUpdateStream(ctx, jetstream.StreamConfig{
			Name:        name,
			Description: "shopbus events of " + strings.ToLower(strings.Replace(name, "_", "/", 1)),
			Subjects:    subjects[name],
			Storage:     jetstream.FileStorage,
			Retention:   jetstream.LimitsPolicy,
			MaxAge:      opts.MaxAge,
			Replicas:    replicas,
			Duplicates:  window,
		})
		if err != nil {
			return fmt.Errorf("jetstream: stream %s: %w", name, err)
		}
	}
	return nil
}
