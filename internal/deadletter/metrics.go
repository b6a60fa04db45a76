package deadletter

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
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

// maxCensus bounds the dead letters one census reads: more than the DLQ's
// byte limit (1 GiB by default) holds of letters of a few hundred bytes.
const maxCensus = 4_000_000

// errCensusCap means a census stopped at maxCensus letters.
var errCensusCap = fmt.Errorf("more than %d dead letters", maxCensus)

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
		if !last && n > 0 {
			continue
		}
		// The end, or no letter within the wait. The server says whether
		// more are pending (it was slow to send them), and whether it sent
		// letters this census never read: the rest of a fetch cut short,
		// which a consumer without acks does not send again.
		info, err := c.Info(ctx)
		if err != nil {
			return nil, fmt.Errorf("jetstream: census of %s: %w", Stream, err)
		}
		if info.NumPending > 0 {
			continue
		}
		if sent := info.Delivered.Consumer; sent != uint64(read) {
			return nil, fmt.Errorf("census of %s: %d letters sent, %d read", Stream, sent, read)
		}
		return out, nil
	}
	return nil, fmt.Errorf("census of %s: %w", Stream, errCensusCap)
}

// Metrics counts the dead letters in the background and exports the
// counts (telemetry.DeadLetters) by original stream and reason. The gateway
// process, which serves the DeadLetterService, runs it.
type Metrics struct {
	store *Store
	every time.Duration
	log   *slog.Logger

	mu     sync.Mutex
	counts map[CensusKey]int
}

// NewMetrics registers the dead-letter gauge on t, counted by Run every
// interval (10s when 0); Close unregisters it.
func NewMetrics(store *Store, t *telemetry.Telemetry, every time.Duration, log *slog.Logger) (*Metrics, metric.Registration, error) {
	if every <= 0 {
		every = 10 * time.Second
	}
	m := &Metrics{store: store, every: every, log: log}
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

// censusTimeout bounds one census: it reads the headers of some 50,000
// letters a second on two busy vCPUs, so a DLQ of millions is counted.
const censusTimeout = time.Minute

// Run counts the dead letters until ctx is done: a census, then a pause of
// the interval or twice as long as the census took, whichever is longer
// (so that counting a large DLQ takes at most a third of the time). While
// a census fails (NATS does not answer, or the DLQ is too large to count
// within censusTimeout), the counts are dropped, their series disappear
// rather than show stale figures, and a warning says why.
func (m *Metrics) Run(ctx context.Context) error {
	failing := false
	for {
		start := time.Now()
		cctx, cancel := context.WithTimeout(ctx, censusTimeout)
		counts, err := m.store.Census(cctx)
		cancel()
		took := time.Since(start)
		switch {
		case ctx.Err() != nil:
			return ctx.Err()
		case err != nil:
			if !failing {
				m.log.Warn("dead letters: census failed; the dlq gauge is gone until one succeeds", "err", err, "took", took)
			}
			failing = true
			m.set(nil)
		default:
			if failing {
				m.log.Info("dead letters: census back", "took", took)
			}
			failing = false
			m.set(counts)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(max(m.every, 2*took)):
		}
	}
}

// set replaces the exported counts.
func (m *Metrics) set(counts map[CensusKey]int) {
	m.mu.Lock()
	m.counts = counts
	m.mu.Unlock()
}
