package messaging

import (
	"context"
	"testing"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/trace"

	"github.com/shopbus/shopbus/internal/telemetry/telemetrytest"
)

// BenchmarkSettleTelemetry measures what telemetry adds to the handling of
// one event, without the event: recording the consumer metrics, and, with
// traces on, starting and ending the handling span. Set it against the
// handler's own time (a PostgreSQL transaction: about a millisecond).
//
//	go test -run '^$' -bench SettleTelemetry ./internal/messaging/
func BenchmarkSettleTelemetry(b *testing.B) {
	for _, mode := range telemetrytest.Modes {
		b.Run(mode, func(b *testing.B) {
			tel, err := telemetrytest.ForMode(context.Background(), mode)
			if err != nil {
				b.Fatal(err)
			}
			defer tel.Shutdown(context.Background()) //nolint:errcheck // a benchmark
			m, err := newConsumerMetrics(tel, "inventory-reserve-stock")
			if err != nil {
				b.Fatal(err)
			}
			tracer, tracing := tel.Tracer(tracerName), tel.Tracing()
			ctx := context.Background()
			b.ReportAllocs()
			for b.Loop() {
				if tracing {
					_, span := tracer.Start(ctx, "process "+typeOf("ecommerce.order.created.v2.3.k1"), trace.WithSpanKind(trace.SpanKindConsumer),
						trace.WithAttributes(
							attribute.String("messaging.system", "nats"),
							attribute.String("messaging.operation.type", "process"),
							attribute.String("messaging.destination.name", "ecommerce.order.created.v2.3.k1"),
							attribute.String("messaging.consumer.group.name", "inventory-reserve-stock-p3"),
							attribute.Int64("messaging.nats.stream_sequence", 42),
							attribute.Int64("messaging.nats.delivered", 1),
						))
					span.SetAttributes(attribute.String("messaging.message.id", "0193a0f0-0000-7000-8000-000000000000"))
					span.SetAttributes(attribute.String("shopbus.outcome", OutcomeAcked))
					span.End()
				}
				m.record(ctx, "inventory-reserve-stock-p3", OutcomeAcked, time.Millisecond)
			}
		})
	}
}
