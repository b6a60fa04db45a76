package messaging

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"

	"github.com/shopbus/shopbus/internal/telemetry"
)

// tracerName and meterName name this package's spans and instruments.
const (
	tracerName = "github.com/shopbus/shopbus/internal/messaging"
	meterName  = tracerName
)

// consumerMetrics are the instruments a consumer records as it settles
// events (telemetry.ConsumerHandled, telemetry.ConsumerHandleDuration); the
// lag monitor samples the rest from JetStream.
type consumerMetrics struct {
	group    string
	handled  metric.Int64Counter
	duration metric.Float64Histogram
	batch    metric.Int64Histogram
	batchSet metric.MeasurementOption
	sets     sync.Map // attrKey → *attrSets, built once per durable and outcome
}

type attrKey struct{ durable, outcome string }

type attrSets struct{ handled, duration metric.MeasurementOption }

func newConsumerMetrics(t *telemetry.Telemetry, group string) (*consumerMetrics, error) {
	m := t.Meter(meterName)
	handled, err := m.Int64Counter(telemetry.ConsumerHandled, metric.WithUnit("{event}"),
		metric.WithDescription("Events a consumer settled, by outcome: acked, retried or dead_lettered."))
	if err != nil {
		return nil, fmt.Errorf("metrics: %w", err)
	}
	duration, err := m.Float64Histogram(telemetry.ConsumerHandleDuration, metric.WithUnit("s"),
		metric.WithDescription("How long a consumer took to handle and settle one event."),
		metric.WithExplicitBucketBoundaries(telemetry.SecondsBuckets...))
	if err != nil {
		return nil, fmt.Errorf("metrics: %w", err)
	}
	batch, err := m.Int64Histogram(telemetry.ConsumerBatchSize, metric.WithUnit("{event}"),
		metric.WithDescription("Events per batch a batch consumer committed."),
		metric.WithExplicitBucketBoundaries(BatchSizeBuckets...))
	if err != nil {
		return nil, fmt.Errorf("metrics: %w", err)
	}
	return &consumerMetrics{group: group, handled: handled, duration: duration, batch: batch,
		batchSet: metric.WithAttributeSet(attribute.NewSet(attribute.String("consumer", group)))}, nil
}

// BatchSizeBuckets are the bucket boundaries of the batch size histogram.
var BatchSizeBuckets = []float64{1, 2, 5, 10, 20, 50, 100, 200, 500, 1000}

// recordBatch records the size of a committed batch.
func (m *consumerMetrics) recordBatch(ctx context.Context, n int) {
	m.batch.Record(ctx, int64(n), m.batchSet)
}

// record counts one event the durable consumer settled with outcome.
func (m *consumerMetrics) record(ctx context.Context, durable, outcome string, took time.Duration) {
	k := attrKey{durable, outcome}
	v, ok := m.sets.Load(k)
	if !ok {
		consumer, out := attribute.String("consumer", m.group), attribute.String("outcome", outcome)
		v, _ = m.sets.LoadOrStore(k, &attrSets{
			handled:  metric.WithAttributeSet(attribute.NewSet(consumer, attribute.String("partition", PartitionLabel(durable, m.group)), out)),
			duration: metric.WithAttributeSet(attribute.NewSet(consumer, out)),
		})
	}
	sets := v.(*attrSets)
	m.handled.Add(ctx, 1, sets.handled)
	m.duration.Record(ctx, took.Seconds(), sets.duration)
}

// PartitionLabel is the partition label of durable, a durable consumer of
// group: its partition number for a key-based group, "shared" for the one
// durable of a round-robin group.
func PartitionLabel(durable, group string) string {
	if p, ok := strings.CutPrefix(durable, group+"-p"); ok && isPartition(p) {
		return p
	}
	return "shared"
}

// typeOf returns the event type of an event subject: its first three
// tokens ("ecommerce.order.created").
func typeOf(subject string) string {
	tokens := strings.SplitN(subject, ".", 4)
	if len(tokens) < 3 {
		return subject
	}
	return strings.Join(tokens[:3], ".")
}
