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
	nudges   metric.Int64Counter
}

func newMetrics(t *telemetry.Telemetry) *metrics {
	// The only error is an invalid name, and the name is a constant.
	h, _ := t.Meter("github.com/shopbus/shopbus/services/order").Float64Histogram(telemetry.OrderDecisionDuration,
		metric.WithUnit("s"), metric.WithExplicitBucketBoundaries(telemetry.SecondsBuckets...),
		metric.WithDescription("From CreateOrder to the order's outcome (CONFIRMED or REJECTED), by outcome."))
	c, _ := t.Meter("github.com/shopbus/shopbus/services/order").Int64Counter(telemetry.OrdersNudged, metric.WithUnit("{order}"),
		metric.WithDescription("Orders PENDING past the watchdog's deadline that it nudged, by action (reapplied, resent, unresolved)."))
	return &metrics{decision: h, nudges: c}
}

// nudged records one order the watchdog nudged, and how.
func (m *metrics) nudged(ctx context.Context, action string) {
	if m == nil {
		return
	}
	m.nudges.Add(ctx, 1, metric.WithAttributes(attribute.String("action", action)))
}

// decided records that an order reached status took after it was created.
func (m *metrics) decided(ctx context.Context, status string, took time.Duration) {
	if m == nil {
		return
	}
	m.decision.Record(ctx, took.Seconds(), metric.WithAttributes(attribute.String("outcome", strings.ToLower(status))))
}
