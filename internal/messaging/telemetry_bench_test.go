package messaging_test

import (
	"context"
	"flag"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/shopbus/shopbus/internal/lag"
	"github.com/shopbus/shopbus/internal/messaging"
	"github.com/shopbus/shopbus/internal/telemetry/telemetrytest"
	"github.com/shopbus/shopbus/internal/testenv"
)

var telemetryRounds = flag.Int("telemetry.rounds", 5, "rounds of BenchmarkConsumerTelemetry")

// BenchmarkConsumerTelemetry measures what metrics and traces cost a
// consumer group: the BenchmarkGroups workload (a stream pre-filled with
// -groups.bench.events events over 8 partitions, two instances, one
// PostgreSQL transaction per event) with telemetry off, metrics on, and
// metrics and traces on, the modes taking turns for -telemetry.rounds
// rounds; it reports each mode's median and its cost against off:
//
//	go test -run '^$' -bench ConsumerTelemetry -benchtime=1x ./internal/messaging/
func BenchmarkConsumerTelemetry(b *testing.B) {
	for _, strategy := range []messaging.Strategy{messaging.RoundRobin, messaging.KeyBased} {
		b.Run(string(strategy), func(b *testing.B) {
			var medians map[string]float64
			for range b.N {
				medians = telemetrytest.CompareModes(*telemetryRounds, func(mode string) float64 {
					return benchTelemetry(b, strategy, mode)
				})
			}
			telemetrytest.ReportModes(b, medians, "events/s")
		})
	}
}

func benchTelemetry(b *testing.B, strategy messaging.Strategy, mode string) float64 {
	b.StopTimer()
	tel, err := telemetrytest.ForMode(context.Background(), mode)
	if err != nil {
		b.Fatal(err)
	}
	defer tel.Shutdown(context.Background()) //nolint:errcheck // a benchmark
	// This round's NATS server and schema go at its end, not the benchmark's.
	scope := testenv.NewScope(b)
	defer scope.Close()
	w := newWorkload(scope, strategy, 8)
	w.cfg.Telemetry = tel
	n := *benchEvents
	w.publish(context.Background(), n)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	if mode != "off" {
		// What a process adds beside its consumers: the lag monitor, and
		// a Prometheus scrape every second.
		m, err := lag.NewMonitor(w.js, tel, lag.Options{}, w.log)
		if err != nil {
			b.Fatal(err)
		}
		go m.Run(ctx) //nolint:errcheck // ends with ctx
		go func() {
			t := time.NewTicker(time.Second)
			defer t.Stop()
			for {
				select {
				case <-ctx.Done():
					return
				case <-t.C:
					tel.Handler().ServeHTTP(httptest.NewRecorder(), httptest.NewRequest(http.MethodGet, "/metrics", nil))
				}
			}
		}()
	}
	b.StartTimer()
	start := time.Now()
	for i := range 2 {
		w.start(string(rune('a' + i)))
	}
	w.awaitHandled(n, 10*time.Minute)
	elapsed := time.Since(start)
	b.StopTimer()
	w.stopAll()
	return float64(n) / elapsed.Seconds()
}
