package telemetry

import (
	"context"
	"fmt"

	sdktrace "go.opentelemetry.io/otel/sdk/trace"
)

// Modes are the telemetry settings the benchmarks compare in one run:
// "off" (nothing recorded), "metrics" (the default: metrics on, traces
// off) and "metrics+traces" (every span recorded and batched to an exporter
// that drops it, the cost of tracing short of the network).
var Modes = []string{"off", "metrics", "metrics+traces"}

// ForMode returns the telemetry of one of Modes.
func ForMode(ctx context.Context, mode string) (*Telemetry, error) {
	switch mode {
	case "off":
		return New(ctx, Options{NoMetrics: true})
	case "metrics":
		return New(ctx, Options{})
	case "metrics+traces":
		return New(ctx, Options{SpanProcessor: sdktrace.NewBatchSpanProcessor(discard{})})
	}
	return nil, fmt.Errorf("telemetry: unknown mode %q, want one of %v", mode, Modes)
}

// discard is a span exporter that drops every span.
type discard struct{}

func (discard) ExportSpans(context.Context, []sdktrace.ReadOnlySpan) error { return nil }
func (discard) Shutdown(context.Context) error                             { return nil }
