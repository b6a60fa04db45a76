package deadletter

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

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
// only their headers, through an ordered consumer, so it costs one pass over
// the DLQ stream.
func (s *Store) Census(ctx context.Context) (map[CensusKey]int, error) {
	out := map[CensusKey]int{}
	stream, err := s.js.Stream(ctx, Stream)
	if err != nil {
		return nil, fmt.Errorf("jetstream: %w", err)
	}
	info, err := stream.Info(ctx)
	if err != nil {
		return nil, fmt.Errorf("jetstream: %w", err)
	}
	if info.State.Msgs == 0 {
		return out, nil
	}
	c, err := stream.OrderedConsumer(ctx, jetstream.OrderedConsumerConfig{HeadersOnly: true})
	if err != nil {
		return nil, fmt.Errorf("jetstream: census of %s: %w", Stream, err)
	}
	for read := 0; read < maxCensus; {
		batch, err := c.FetchNoWait(1000)
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
		if err := batch.Error(); err != nil && !errors.Is(err, jetstream.ErrNoMessages) {
			return nil, fmt.Errorf("jetstream: census of %s: %w", Stream, err)
		}
		read += n
		if last || n == 0 {
			return out, nil
		}
	}
	return out, nil
}

// censusEvery is how long a census is reused between metric collections.
const censusEvery = 2 * time.Second

// RegisterMetrics exports the dead letters by original stream and reason
// (telemetry.DeadLetters) on t, counted by Census at most every 2 seconds.
// The gateway process, which serves the DeadLetterService, registers it.
func RegisterMetrics(store *Store, t *telemetry.Telemetry) error {
	meter := t.Meter("github.com/shopbus/shopbus/internal/deadletter")
	g, err := meter.Int64ObservableGauge(telemetry.DeadLetters, metric.WithUnit("{letter}"),
		metric.WithDescription("Dead letters in the DLQ, by original stream and reason (max_deliveries or terminated)."))
	if err != nil {
		return fmt.Errorf("dead letters: metrics: %w", err)
	}
	var (
		mu   sync.Mutex
		at   time.Time
		last map[CensusKey]int
	)
	_, err = meter.RegisterCallback(func(ctx context.Context, o metric.Observer) error {
		mu.Lock()
		defer mu.Unlock()
		if time.Since(at) >= censusEvery {
			cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
			counts, err := store.Census(cctx)
			cancel()
			if err != nil {
				return err // nothing observed: the series disappear until NATS answers
			}
			at, last = time.Now(), counts
		}
		for k, n := range last {
			o.ObserveInt64(g, int64(n), metric.WithAttributes(attribute.String("stream", k.Stream), attribute.String("reason", k.Reason)))
		}
		return nil
	}, g)
	if err != nil {
		return fmt.Errorf("dead letters: metrics: %w", err)
	}
	return nil
}
