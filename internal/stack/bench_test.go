package stack_test

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"net/http"
	"sync"
	"testing"
	"time"

	"connectrpc.com/connect"
	"golang.org/x/sync/errgroup"

	"github.com/shopbus/shopbus/gen/go/shopbus/order/v1/orderv1connect"
	"github.com/shopbus/shopbus/internal/auth"
	"github.com/shopbus/shopbus/internal/stack"
	"github.com/shopbus/shopbus/internal/telemetry/telemetrytest"
	"github.com/shopbus/shopbus/internal/testenv"
)

var (
	pipelineOrders  = flag.Int("pipeline.orders", 2000, "orders per case of BenchmarkPipelineTelemetry")
	pipelineClients = flag.Int("pipeline.clients", 16, "concurrent clients of BenchmarkPipelineTelemetry")
	pipelineRounds  = flag.Int("pipeline.rounds", 5, "rounds of BenchmarkPipelineTelemetry")
)

// BenchmarkPipelineTelemetry measures what metrics and traces cost end to
// end: a stack (embedded NATS, local PostgreSQL) takes -pipeline.orders
// CreateOrder calls from -pipeline.clients concurrent clients over 100 SKUs,
// timed until every order is CONFIRMED, with telemetry off, metrics on
// (scraped every second), and metrics and traces on, the modes taking turns
// for -pipeline.rounds rounds; it reports each mode's median and its cost
// against off:
//
//	go test -run '^$' -bench PipelineTelemetry -benchtime=1x ./internal/stack/
func BenchmarkPipelineTelemetry(b *testing.B) {
	var medians map[string]float64
	for range b.N {
		medians = telemetrytest.CompareModes(*pipelineRounds, func(mode string) float64 { return benchPipeline(b, mode) })
	}
	telemetrytest.ReportModes(b, medians, "orders/s")
}

func benchPipeline(b *testing.B, mode string) float64 {
	b.StopTimer()
	tel, err := telemetrytest.ForMode(context.Background(), mode)
	if err != nil {
		b.Fatal(err)
	}
	defer tel.Shutdown(context.Background()) //nolint:errcheck // a benchmark
	schema := testenv.Schema()
	s, stop := startBenchStack(b, stack.Config{
		DataDir: b.TempDir(), DatabaseURL: testenv.DatabaseURL(), Schema: schema, Addr: "127.0.0.1:0",
		MetricsAddr: "127.0.0.1:0", Telemetry: tel,
	})
	defer testenv.DropStackSchemas(b, schema)
	defer stop()
	stock, prices := map[string]int64{}, map[string]int64{}
	for i := range 100 {
		stock[fmt.Sprintf("SKU-%03d", i)] = 1_000_000
		prices[fmt.Sprintf("SKU-%03d", i)] = unitPrice
	}
	if err := s.Inventory.SeedStock(context.Background(), stock); err != nil {
		b.Fatal(err)
	}
	if err := s.Inventory.SeedPrices(context.Background(), "EUR", prices); err != nil {
		b.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	testenv.CheckFor(b, time.Minute, 20*time.Millisecond, func() error { // the order service knows every price
		var n int
		if err := s.Pools[0].QueryRow(ctx, "SELECT count(*) FROM prices").Scan(&n); err != nil {
			return err
		}
		if n < len(prices) {
			return fmt.Errorf("the order service knows %d of %d prices", n, len(prices))
		}
		return nil
	})
	if mode != "off" {
		go func() { // a Prometheus scrape every second
			t := time.NewTicker(time.Second)
			defer t.Stop()
			for {
				select {
				case <-ctx.Done():
					return
				case <-t.C:
					if res, err := http.Get(s.MetricsURL()); err == nil {
						res.Body.Close()
					}
				}
			}
		}()
	}
	client := orderv1connect.NewOrderServiceClient(http.DefaultClient, s.URL(), as(b, auth.Principal{Subject: customer}))
	n := *pipelineOrders
	var next sync.Mutex
	i := 0
	b.StartTimer()
	start := time.Now()
	g, gctx := errgroup.WithContext(ctx)
	for range *pipelineClients {
		g.Go(func() error {
			for {
				next.Lock()
				k := i
				i++
				next.Unlock()
				if k >= n {
					return nil
				}
				req := orderRequest(line(fmt.Sprintf("SKU-%03d", k%100), 1))
				if _, err := client.CreateOrder(gctx, connect.NewRequest(req)); err != nil {
					return err
				}
			}
		})
	}
	if err := g.Wait(); err != nil {
		b.Fatal(err)
	}
	testenv.CheckFor(b, 10*time.Minute, 20*time.Millisecond, func() error {
		var pending int64
		if err := s.Pools[0].QueryRow(ctx, "SELECT count(*) FROM orders WHERE status = 'PENDING'").Scan(&pending); err != nil {
			return err
		}
		if pending > 0 {
			return fmt.Errorf("%d orders still PENDING", pending)
		}
		return nil
	})
	elapsed := time.Since(start)
	b.StopTimer()
	var confirmed int64
	if err := s.Pools[0].QueryRow(ctx, "SELECT count(*) FROM orders WHERE status = 'CONFIRMED'").Scan(&confirmed); err != nil || confirmed != int64(n) {
		b.Fatalf("%d of %d orders CONFIRMED (%v)", confirmed, n, err)
	}
	return float64(n) / elapsed.Seconds()
}

// startBenchStack starts and runs a stack; stop stops it.
func startBenchStack(b *testing.B, cfg stack.Config) (_ *stack.Stack, stop func()) {
	b.Helper()
	cfg.Log = slog.New(slog.DiscardHandler)
	ctx, cancel := context.WithCancel(context.Background())
	s, err := stack.Start(ctx, cfg)
	if err != nil {
		cancel()
		b.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()
	return s, func() {
		cancel()
		<-done
		s.Close()
	}
}
