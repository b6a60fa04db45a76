// Package telemetry gives a shopbus process its metrics and traces, built on
// OpenTelemetry: a MeterProvider whose instruments are exported in the
// Prometheus text format (Handler serves /metrics), and a TracerProvider
// that exports spans over OTLP when the standard OTEL_* environment asks for
// it and records nothing otherwise. Each process (and each stack a test
// starts) has its own Telemetry, never OpenTelemetry's global providers, so
// two stacks in one test binary do not mix their figures. (LogErrors sets
// the one global a command needs: where OpenTelemetry reports its errors.)
//
// The names of shopbus's own instruments are in names.go; docs/observability.md
// lists every metric with its labels.
package telemetry

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracehttp"
	otelprom "go.opentelemetry.io/otel/exporters/prometheus"
	"go.opentelemetry.io/otel/metric"
	metricnoop "go.opentelemetry.io/otel/metric/noop"
	"go.opentelemetry.io/otel/propagation"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"
	tracenoop "go.opentelemetry.io/otel/trace/noop"
)

// Telemetry is one process's meter and tracer providers. The zero value is
// not usable; a nil *Telemetry records nothing (see Meter and Tracer).
type Telemetry struct {
	meters   metric.MeterProvider
	tracers  trace.TracerProvider
	registry *prometheus.Registry
	shutdown []func(context.Context) error
}

// Options configure New.
type Options struct {
	// Service names the process in its traces' resource (service.name)
	// unless OTEL_SERVICE_NAME does.
	Service string
	// SpanProcessor, when set, receives every span (tests give an
	// in-memory recorder); OTEL_* exporters are then not read.
	SpanProcessor sdktrace.SpanProcessor
	// NoMetrics turns metrics off (for measuring their cost).
	NoMetrics bool
}

// New returns the telemetry of a process. Metrics are always on (unless
// opts.NoMetrics): Handler serves them. Traces are recorded only when
// opts.SpanProcessor is set or the environment configures an OTLP exporter
// (TracesEnabled); the W3C trace context is propagated either way, so event
// envelopes carry the caller's trace id even when nothing is recorded.
func New(ctx context.Context, opts Options) (*Telemetry, error) {
	t := &Telemetry{meters: metricnoop.NewMeterProvider(), tracers: tracenoop.NewTracerProvider()}
	// Later options win: OTEL_SERVICE_NAME and OTEL_RESOURCE_ATTRIBUTES
	// override opts.Service.
	res, err := resource.New(ctx, resource.WithAttributes(attribute.String("service.name", cmp.Or(opts.Service, "shopbus"))),
		resource.WithTelemetrySDK(), resource.WithFromEnv())
	if err != nil && !errors.Is(err, resource.ErrPartialResource) {
		return nil, fmt.Errorf("telemetry: resource: %w", err)
	}
	if !opts.NoMetrics {
		t.registry = prometheus.NewRegistry()
		t.registry.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
		exporter, err := otelprom.New(otelprom.WithRegisterer(t.registry), otelprom.WithoutScopeInfo())
		if err != nil {
			return nil, fmt.Errorf("telemetry: prometheus exporter: %w", err)
		}
		mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(exporter), sdkmetric.WithResource(res))
		t.meters = mp
		t.shutdown = append(t.shutdown, mp.Shutdown)
	}
	processor := opts.SpanProcessor
	if processor == nil && TracesEnabled() {
		exporter, err := otlptracehttp.New(ctx)
		if err != nil {
			_ = t.Shutdown(ctx)
			return nil, fmt.Errorf("telemetry: OTLP trace exporter: %w", err)
		}
		processor = sdktrace.NewBatchSpanProcessor(exporter)
	}
	if processor != nil {
		tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(processor), sdktrace.WithResource(res))
		t.tracers = tp
		t.shutdown = append(t.shutdown, tp.Shutdown)
	}
	return t, nil
}

// TracesEnabled reports whether the environment asks for traces to be
// exported: OTEL_TRACES_EXPORTER=otlp, or an OTLP endpoint
// (OTEL_EXPORTER_OTLP_ENDPOINT or OTEL_EXPORTER_OTLP_TRACES_ENDPOINT) with
// OTEL_TRACES_EXPORTER unset. OTEL_SDK_DISABLED=true and
// OTEL_TRACES_EXPORTER=none turn them off. Off by default.
func TracesEnabled() bool {
	if strings.EqualFold(os.Getenv("OTEL_SDK_DISABLED"), "true") {
		return false
	}
	switch exp := strings.TrimSpace(os.Getenv("OTEL_TRACES_EXPORTER")); exp {
	case "otlp":
		return true
	case "":
		return os.Getenv("OTEL_EXPORTER_OTLP_ENDPOINT") != "" || os.Getenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") != ""
	default:
		return false
	}
}

// Meter returns the meter named name (the instrumented package). A nil t
// gives a meter that records nothing.
func (t *Telemetry) Meter(name string) metric.Meter {
	if t == nil {
		return metricnoop.NewMeterProvider().Meter(name)
	}
	return t.meters.Meter(name)
}

// MeterProvider returns t's meter provider (a no-op one for a nil t).
func (t *Telemetry) MeterProvider() metric.MeterProvider {
	if t == nil {
		return metricnoop.NewMeterProvider()
	}
	return t.meters
}

// TracerProvider returns t's tracer provider (a no-op one for a nil t, or
// when traces are off).
func (t *Telemetry) TracerProvider() trace.TracerProvider {
	if t == nil {
		return tracenoop.NewTracerProvider()
	}
	return t.tracers
}

// Tracing reports whether spans are recorded (a span processor or an
// exporter is configured); code on a hot path skips building spans when
// they are not.
func (t *Telemetry) Tracing() bool {
	if t == nil {
		return false
	}
	_, ok := t.tracers.(*sdktrace.TracerProvider)
	return ok
}

// Tracer returns the tracer named name.
func (t *Telemetry) Tracer(name string) trace.Tracer { return t.TracerProvider().Tracer(name) }

// Propagator is the trace context propagation every hop uses: W3C
// traceparent and tracestate.
func Propagator() propagation.TextMapPropagator { return propagation.TraceContext{} }

// Handler serves the metrics in the Prometheus text format (404 when
// metrics are off).
func (t *Telemetry) Handler() http.Handler {
	if t == nil || t.registry == nil {
		return http.NotFoundHandler()
	}
	return promhttp.HandlerFor(t.registry, promhttp.HandlerOpts{
		ErrorHandling: promhttp.ContinueOnError, Timeout: 10 * time.Second, MaxRequestsInFlight: 4,
	})
}

// Shutdown flushes spans still waiting to be exported and stops the
// providers.
func (t *Telemetry) Shutdown(ctx context.Context) error {
	if t == nil {
		return nil
	}
	var errs []error
	for _, f := range t.shutdown {
		errs = append(errs, f(ctx))
	}
	return errors.Join(errs...)
}

// LogErrors sends the errors OpenTelemetry cannot return to a caller (a
// metric callback that failed during a scrape, an export that failed) to
// log, as warnings, instead of the standard logger. It sets a process-wide
// handler: commands call it once.
func LogErrors(log *slog.Logger) {
	otel.SetErrorHandler(otel.ErrorHandlerFunc(func(err error) { log.Warn("telemetry", "err", err) }))
}
