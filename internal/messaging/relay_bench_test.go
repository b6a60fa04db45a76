package messaging_test

import (
	"context"
	"flag"
	"io"
	"log/slog"
	"slices"
	"testing"
	"time"

	"github.com/shopbus/shopbus/internal/messaging"
	"github.com/shopbus/shopbus/internal/testenv"
)

var (
	relayRows   = flag.Int("relay.rows", 10_000, "outbox rows of BenchmarkRelayBacklog")
	relayRounds = flag.Int("relay.rounds", 3, "rounds of BenchmarkRelayBacklog")
)

// BenchmarkRelayBacklog measures a relay draining an outbox backlog of
// -relay.rows order.created rows (1,000 keys) into the embedded nats-server
// (SyncAlways): passes of atomic batches (the default) and passes that
// publish each row alone (WithAtomicBatches(0)), taking turns for
// -relay.rounds rounds. Each mode reports its median rows per second and
// CPU time per row, of this process (the relay and the server) and of
// PostgreSQL when it runs on this machine:
//
//	go test -run '^$' -bench RelayBacklog -benchtime=1x ./internal/messaging/
func BenchmarkRelayBacklog(b *testing.B) {
	modes := []struct {
		name   string
		atomic int
	}{{"atomic", messaging.AtomicPassMin}, {"one-by-one", 0}}
	medians := map[string]float64{}
	for range b.N {
		got := map[string][]float64{}
		for range *relayRounds {
			for _, m := range modes {
				perSecond, cpu := benchRelay(b, m.atomic)
				got[m.name+"-rows/s"] = append(got[m.name+"-rows/s"], perSecond)
				got[m.name+"-cpu-us/row"] = append(got[m.name+"-cpu-us/row"], float64(cpu.Microseconds()))
			}
		}
		for name, xs := range got {
			slices.Sort(xs)
			medians[name] = xs[len(xs)/2]
		}
	}
	for name, median := range medians {
		b.ReportMetric(median, name)
	}
	b.ReportMetric(medians["atomic-rows/s"]/medians["one-by-one-rows/s"], "atomic-speedup-x")
}

// benchRelay drains one backlog and returns the rows published per second
// and the CPU time per row.
func benchRelay(b *testing.B, atomicMin int) (float64, time.Duration) {
	b.StopTimer()
	scope := testenv.NewScope(b)
	defer scope.Close()
	_, js := testenv.NATS(scope)
	pool, schema := testenv.Postgres(scope)
	n := *relayRows
	for written := 0; written < n; written += 1000 {
		enqueueOrders(scope, pool, min(1000, n-written), 1000)
	}
	relay := messaging.NewRelay(pool, js, schema, messaging.WithAtomicBatches(atomicMin),
		messaging.WithRelayLogger(slog.New(slog.NewTextHandler(io.Discard, nil))))
	ctx := context.Background()
	cpu0 := testenv.CPUTime()
	b.StartTimer()
	start := time.Now()
	for published := 0; published < n; {
		k, err := relay.PublishBatch(ctx)
		if err != nil {
			b.Fatal(err)
		}
		published += k
	}
	took := time.Since(start)
	b.StopTimer()
	return float64(n) / took.Seconds(), (testenv.CPUTime() - cpu0) / time.Duration(n)
}
