package order

import (
	"context"
	"strings"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"

	"github.com/shopbus/shopbus/internal/telemetry"
)

// metrics are the order service's own instruments; a nil *metrics records
// nothing.
type metrics struct {
	decision metric.Float64Histogram
}

func newMetrics(t *telemetry.Telemetry) *metrics {
	// The only error is an invalid name, and the name is a constant.
	h, _ := t.Meter("github.com/shopbus/shopbus/services/order").Float64Histogram(telemetry.OrderDecisionDuration,
		metric.WithUnit("s"), metric.WithExplicitBucketBoundaries(telemetry.SecondsBuckets...),
		metric.WithDescription("From CreateOrder to the order's outcome (CONFIRMED or REJECTED), by outcome."))
	return &metrics{decision: h}
}

// decided records that an order reached status took after it was created.
func (m *metrics) decided(ctx context.Context, status string, took time.Duration) {
	if m == nil {
		return
	}
	m.decision.Record(ctx, took.Seconds(), metric.WithAttributes(attribute.String("outcome", strings.ToLower(status))))
}
