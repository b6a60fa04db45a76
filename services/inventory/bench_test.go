package inventory_test

import (
	"context"
	"flag"
	"fmt"
	"os"
	"runtime/pprof"
	"slices"
	"sync"
	"sync/atomic"
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
	benchOnly   = flag.String("inventory.only", "", "run only this mode of BenchmarkReserveStock (batch or per-event), to profile it")
	benchProf   = flag.String("inventory.cpuprofile", "", "write a CPU profile of BenchmarkReserveStock's timed runs (the consumer's, without the stream's pre-fill) to this file")
)

// BenchmarkReserveStock measures the inventory consumer alone: a stream
// pre-filled with -inventory.events valid order.created events over 100
// SKUs (8 partitions), then the service's consumer, timed from the first
// batch it hands the handler until its committed batches hold every event
// (and, beside, from its start). Two modes take turns for
// -inventory.rounds rounds, each mode's median reported: batches of
// messaging.DefaultBatchSize (-inventory.batch) and one transaction per
// event (BatchSize 1). Each reports events per second and the CPU time
// spent per event by this process (the consumer and the embedded
// nats-server) and by PostgreSQL, when it runs on this machine:
//
//	go test -run '^$' -bench ReserveStock -benchtime=1x ./services/inventory/
//
// -inventory.only=batch (or per-event) runs one mode, for a profile, and
// -inventory.cpuprofile=FILE profiles its timed part alone (the last round).
func BenchmarkReserveStock(b *testing.B) {
	type mode struct {
		name string
		size int
	}
	modes := []mode{
		{"batch", *benchBatch},
		{"per-event", 1},
	}
	if *benchOnly != "" {
		modes = slices.DeleteFunc(modes, func(m mode) bool { return m.name != *benchOnly })
		if len(modes) == 0 {
			b.Fatalf("-inventory.only=%q: want batch or per-event", *benchOnly)
		}
	}
	medians := map[string]float64{}
	for range b.N {
		got := map[string][]float64{}
		for range *benchRounds {
			for _, m := range modes {
				r := benchReserve(b, m.size)
				got[m.name+"-events/s"] = append(got[m.name+"-events/s"], r.perSecond)
				got[m.name+"-events/s-with-start"] = append(got[m.name+"-events/s-with-start"], r.perSecondWithStart)
				got[m.name+"-start-ms"] = append(got[m.name+"-start-ms"], float64(r.start.Milliseconds()))
				got[m.name+"-cpu-us/event"] = append(got[m.name+"-cpu-us/event"], float64(r.cpuPerEvent.Microseconds()))
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
	if len(modes) == 2 {
		b.ReportMetric(medians["batch-events/s"]/medians["per-event-events/s"], "batch-speedup-x")
		b.ReportMetric(medians["batch-events/s-with-start"]/medians["per-event-events/s-with-start"], "batch-speedup-with-start-x")
	}
}

func benchReserve(b *testing.B, batchSize int) result {
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
			OrderId:   uuid.Must(uuid.NewV7()).String(), // as CreateOrder makes them
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
	// The handler counts the events of the batches it committed, and the
	// clock stops when they reach n: no polling of the database, whose cost
	// would grow with the backlog and fall on the measured work.
	var (
		handled   atomic.Int64
		firstCall atomic.Pointer[time.Time]
		all       = make(chan struct{})
		allOnce   sync.Once
	)
	count := func(ctx context.Context, batch []*messaging.Delivery) error {
		now := time.Now()
		firstCall.CompareAndSwap(nil, &now)
		err := svc.ReserveStock(ctx, batch)
		if err == nil && handled.Add(int64(len(batch))) >= int64(n) {
			allOnce.Do(func() { close(all) })
		}
		return err
	}
	cctx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	cpu0 := testenv.CPUTime()
	stopProfile := func() {}
	if *benchProf != "" {
		stopProfile = profileCPU(b, *benchProf)
	}
	b.StartTimer()
	start := time.Now()
	go func() { done <- messaging.ConsumeBatch(cctx, js, cfg, count, quiet) }()
	select {
	case <-all:
	case err := <-done:
		b.Fatalf("consumer stopped before deciding every order: %v", err)
	case <-time.After(30 * time.Minute):
		b.Fatalf("%d of %d events handled after 30 minutes", handled.Load(), n)
	}
	end := time.Now()
	b.StopTimer()
	stopProfile()
	cpu := testenv.CPUTime() - cpu0
	cancel()
	<-done
	var decided int
	if err := pool.QueryRow(ctx, "SELECT count(*) FROM decisions").Scan(&decided); err != nil {
		b.Fatal(err)
	}
	if decided != n {
		b.Fatalf("%d of %d orders decided once every batch was committed", decided, n)
	}
	return result{
		perSecond:          float64(n) / end.Sub(*firstCall.Load()).Seconds(),
		perSecondWithStart: float64(n) / end.Sub(start).Seconds(),
		start:              firstCall.Load().Sub(start),
		cpuPerEvent:        cpu / time.Duration(n),
	}
}

// profileCPU starts a CPU profile written to path and returns what stops it.
// Each timed run overwrites the one before: the file holds the last.
func profileCPU(b *testing.B, path string) (stop func()) {
	f, err := os.Create(path)
	if err != nil {
		b.Fatal(err)
	}
	if err := pprof.StartCPUProfile(f); err != nil {
		b.Fatal(err)
	}
	return func() {
		pprof.StopCPUProfile()
		if err := f.Close(); err != nil {
			b.Error(err)
		}
	}
}

// result is one timed run of benchReserve.
type result struct {
	// perSecond is events decided per second from the first batch handed
	// to the handler to the commit of the last; perSecondWithStart counts
	// from the consumer's start. start is the time between the two:
	// creating the partitions' consumers, taking their leases, the first
	// fetch.
	perSecond, perSecondWithStart float64
	start                         time.Duration
	// cpuPerEvent is the CPU time, from the consumer's start, of this
	// process (the consumer and the embedded nats-server) and of
	// PostgreSQL, per event.
	cpuPerEvent time.Duration
}
