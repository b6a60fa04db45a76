// Package telemetrytest holds what the benchmarks of metrics and traces
// share: the telemetry modes they compare and how they compare them.
package telemetrytest

import (
	"context"
	"fmt"
	"slices"

	sdktrace "go.opentelemetry.io/otel/sdk/trace"

	"github.com/shopbus/shopbus/internal/telemetry"
)

// Modes are the telemetry settings the benchmarks compare in one run:
// "off" (nothing recorded), "metrics" (the default: metrics on, traces
// off) and "metrics+traces" (every span recorded and batched to an exporter
// that drops it, the cost of tracing short of the network).
var Modes = []string{"off", "metrics", "metrics+traces"}

// ForMode returns the telemetry of one of Modes.
func ForMode(ctx context.Context, mode string) (*telemetry.Telemetry, error) {
	switch mode {
	case "off":
		return telemetry.New(ctx, telemetry.Options{NoMetrics: true})
	case "metrics":
		return telemetry.New(ctx, telemetry.Options{})
	case "metrics+traces":
		return telemetry.New(ctx, telemetry.Options{SpanProcessor: sdktrace.NewBatchSpanProcessor(discard{})})
	}
	return nil, fmt.Errorf("telemetry: unknown mode %q, want one of %v", mode, Modes)
}

// discard is a span exporter that drops every span.
type discard struct{}

func (discard) ExportSpans(context.Context, []sdktrace.ReadOnlySpan) error { return nil }
func (discard) Shutdown(context.Context) error                             { return nil }

// CompareModes runs measure once per mode, round after round (so a noisy
// machine slows every mode alike), and returns the median figure of each
// mode over the rounds.
func CompareModes(rounds int, measure func(mode string) float64) map[string]float64 {
	got := map[string][]float64{}
	for range rounds {
		for _, mode := range Modes {
			got[mode] = append(got[mode], measure(mode))
		}
	}
	medians := map[string]float64{}
	for mode, xs := range got {
		slices.Sort(xs)
		medians[mode] = xs[len(xs)/2]
	}
	return medians
}

// ReportModes reports the medians of CompareModes on b as "<mode>-<unit>"
// and the cost of each mode against "off" as "<mode>-cost-%" (negative:
// faster than off, which is noise).
func ReportModes(b interface{ ReportMetric(float64, string) }, medians map[string]float64, unit string) {
	for _, mode := range Modes {
		b.ReportMetric(medians[mode], mode+"-"+unit)
		if mode != "off" && medians["off"] > 0 {
			b.ReportMetric(100*(1-medians[mode]/medians["off"]), mode+"-cost-%")
		}
	}
}
