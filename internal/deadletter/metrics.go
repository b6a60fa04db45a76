package deadletter

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"

	"github.com/shopbus/shopbus/internal/telemetry"
)

// CensusKey groups dead letters: the stream of the original message and
// why it was given up on (ReasonMaxDeliveries or ReasonTerminated).
type CensusKey struct{ Stream, Reason string }

// maxCensus bounds the dead letters one census reads.
const maxCensus = 1_000_000

// Census counts the dead letters by original stream and reason. It reads
// only their headers, through one short-lived consumer of its own (deleted
// when done, and by the server after 30s of inactivity if Census could not).
func (s *Store) Census(ctx context.Context) (map[CensusKey]int, error) {
	out := map[CensusKey]int{}
	stream, err := s.js.Stream(ctx, Stream)
	if err != nil {
		return nil, fmt.Errorf("jetstream: %w", err)
	}
	if stream.CachedInfo().State.Msgs == 0 {
		return out, nil
	}
	c, err := stream.CreateConsumer(ctx, jetstream.ConsumerConfig{
		AckPolicy: jetstream.AckNonePolicy, HeadersOnly: true, DeliverPolicy: jetstream.DeliverAllPolicy,
		InactiveThreshold: 30 * time.Second, MemoryStorage: true, Replicas: 1,
	})
	if err != nil {
		return nil, fmt.Errorf("jetstream: census of %s: %w", Stream, err)
	}
	defer func() {
		dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 2*time.Second)
		defer cancel()
		_ = stream.DeleteConsumer(dctx, c.CachedInfo().Name) // else the threshold removes it
	}()
	for read := 0; read < maxCensus; {
		wait := time.Second
		if dl, ok := ctx.Deadline(); ok {
			wait = min(wait, time.Until(dl))
		}
		if wait <= 0 {
			return nil, fmt.Errorf("census of %s: %w", Stream, context.DeadlineExceeded)
		}
		batch, err := c.Fetch(1000, jetstream.FetchMaxWait(wait))
		if err != nil {
			return nil, fmt.Errorf("jetstream: census of %s: %w", Stream, err)
		}
		n, last := 0, false
		for msg := range batch.Messages() {
			n++
			h := msg.Headers()
			out[CensusKey{Stream: h.Get(HeaderOriginalStream), Reason: h.Get(HeaderReason)}]++
			if meta, err := msg.Metadata(); err == nil && meta.NumPending == 0 {
				last = true
			}
		}
		if err := batch.Error(); err != nil && !errors.Is(err, jetstream.ErrNoMessages) && !errors.Is(err, nats.ErrTimeout) {
			return nil, fmt.Errorf("jetstream: census of %s: %w", Stream, err)
		}
		read += n
		if last || n == 0 {
			return out, nil
		}
	}
	return out, nil
}

// Metrics counts the dead letters in the background and exports the
// counts (telemetry.DeadLetters) by original stream and reason. The gateway
// process, which serves the DeadLetterService, runs it.
type Metrics struct {
	store *Store
	every time.Duration

	mu     sync.Mutex
	counts map[CensusKey]int
}

// NewMetrics registers the dead-letter gauge on t, counted by Run every
// interval (10s when 0); Close unregisters it.
func NewMetrics(store *Store, t *telemetry.Telemetry, every time.Duration) (*Metrics, metric.Registration, error) {
	if every <= 0 {
		every = 10 * time.Second
	}
	m := &Metrics{store: store, every: every}
	meter := t.Meter("github.com/shopbus/shopbus/internal/deadletter")
	g, err := meter.Int64ObservableGauge(telemetry.DeadLetters, metric.WithUnit("{letter}"),
		metric.WithDescription("Dead letters in the DLQ, by original stream and reason (max_deliveries or terminated)."))
	if err != nil {
		return nil, nil, fmt.Errorf("dead letters: metrics: %w", err)
	}
	// The callback only reads memory: a scrape never waits on NATS.
	reg, err := meter.RegisterCallback(func(_ context.Context, o metric.Observer) error {
		m.mu.Lock()
		defer m.mu.Unlock()
		for k, n := range m.counts {
			o.ObserveInt64(g, int64(n), metric.WithAttributes(attribute.String("stream", k.Stream), attribute.String("reason", k.Reason)))
		}
		return nil
	}, g)
	if err != nil {
		return nil, nil, fmt.Errorf("dead letters: metrics: %w", err)
	}
	return m, reg, nil
}

// Run counts the dead letters every interval until ctx is done. While NATS
// does not answer, the last counts are dropped (their series disappear
// rather than show stale figures).
func (m *Metrics) Run(ctx context.Context) error {
	for {
		cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		counts, err := m.store.Census(cctx)
		cancel()
		m.mu.Lock()
		if err != nil {
			counts = nil // no figure rather than a stale one
		}
		m.counts = counts
		m.mu.Unlock()
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(m.every):
		}
	}
}
