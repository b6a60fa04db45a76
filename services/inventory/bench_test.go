package inventory_test

import (
	"context"
	"flag"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"google.golang.org/protobuf/types/known/timestamppb"

	ordereventsv2 "github.com/shopbus/shopbus/gen/go/ecommerce/order/v2"
	"github.com/shopbus/shopbus/internal/event"
	"github.com/shopbus/shopbus/internal/messaging"
	"github.com/shopbus/shopbus/internal/testenv"
	"github.com/shopbus/shopbus/services/inventory"
)

var (
	benchEvents = flag.Int("inventory.events", 10_000, "order.created events of BenchmarkReserveStock")
	benchRounds = flag.Int("inventory.rounds", 3, "rounds of BenchmarkReserveStock")
	benchBatch  = flag.Int("inventory.batch", messaging.DefaultBatchSize, "batch size of BenchmarkReserveStock's batch mode")
)

// BenchmarkReserveStock measures the inventory consumer alone: a stream
// pre-filled with -inventory.events valid order.created events over 100
// SKUs (8 partitions), then the service's consumer, timed until every order
// is decided. Two modes take turns for -inventory.rounds rounds, each
// mode's median reported: batches of messaging.DefaultBatchSize (500) and one transaction
// per event (BatchSize 1):
//
//	go test -run '^$' -bench ReserveStock -benchtime=1x ./services/inventory/
func BenchmarkReserveStock(b *testing.B) {
	type mode struct {
		name string
		size int
	}
	modes := []mode{
		{"batch", *benchBatch},
		{"per-event", 1},
	}
	var medians map[string]float64
	for range b.N {
		got := map[string][]float64{}
		for range *benchRounds {
			for _, m := range modes {
				got[m.name] = append(got[m.name], benchReserve(b, m.size))
			}
		}
		medians = map[string]float64{}
		for name, xs := range got {
			slices.Sort(xs)
			medians[name] = xs[len(xs)/2]
		}
	}
	for _, m := range modes {
		b.ReportMetric(medians[m.name], m.name+"-events/s")
	}
	b.ReportMetric(medians["batch"]/medians["per-event"], "batch-speedup-x")
}

func benchReserve(b *testing.B, batchSize int) float64 {
	b.StopTimer()
	scope := testenv.NewScope(b)
	defer scope.Close()
	svc := inventory.New(testenv.Runtime(scope, "inventory"))
	pool, js := svc.Pool, svc.JS
	ctx := context.Background()
	stock := map[string]int64{}
	for i := range 100 {
		stock[fmt.Sprintf("SKU-%03d", i)] = 1_000_000
	}
	if err := svc.SeedStock(ctx, stock); err != nil {
		b.Fatal(err)
	}
	n := *benchEvents
	var futures []jetstream.PubAckFuture
	eur := &ordereventsv2.Money{Currency: "EUR", AmountMinor: 1}
	for i := range n {
		env, err := event.New(ctx, &ordereventsv2.OrderCreated{
			OrderId:   uuid.NewString(),
			Customer:  &ordereventsv2.Customer{CustomerId: "6f1c2b3a-4d5e-4f60-8a7b-9c0d1e2f3a4b"},
			Lines:     []*ordereventsv2.OrderLine{{Sku: fmt.Sprintf("SKU-%03d", i%100), Quantity: 1, UnitPrice: eur}},
			Total:     eur,
			CreatedAt: timestamppb.Now(),
		}, event.WithSource("shopbus/order")) // its declared producer
		if err != nil {
			b.Fatal(err)
		}
		data, _ := event.Encode(env)
		f, err := js.PublishMsgAsync(&nats.Msg{Subject: "ecommerce.order.created.v2." + env.GetPartitionKey(), Data: data, Header: event.Headers(env)},
			jetstream.WithMsgID(env.GetId()))
		if err != nil {
			b.Fatal(err)
		}
		if futures = append(futures, f); len(futures) == 1000 || i == n-1 {
			for _, f := range futures {
				select {
				case <-f.Ok():
				case err := <-f.Err():
					b.Fatal(err)
				}
			}
			futures = futures[:0]
		}
	}
	cfg := inventory.ReserveStockConsumer()
	cfg.BatchSize = batchSize
	cctx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	b.StartTimer()
	start := time.Now()
	go func() { done <- messaging.ConsumeBatch(cctx, js, cfg, svc.ReserveStock, quiet) }()
	testenv.CheckFor(b, 30*time.Minute, 50*time.Millisecond, func() error {
		var decided int
		if err := pool.QueryRow(ctx, "SELECT count(*) FROM decisions").Scan(&decided); err != nil {
			return err
		}
		if decided < n {
			return fmt.Errorf("%d of %d decided", decided, n)
		}
		return nil
	})
	elapsed := time.Since(start)
	b.StopTimer()
	cancel()
	<-done
	return float64(n) / elapsed.Seconds()
}
