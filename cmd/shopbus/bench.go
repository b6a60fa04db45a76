package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"flag"
	"fmt"
	"math"
	"math/rand/v2"
	"net/http"
	"os"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"connectrpc.com/connect"
	"github.com/HdrHistogram/hdrhistogram-go"
	"github.com/google/uuid"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	inventoryv1 "github.com/shopbus/shopbus/gen/go/shopbus/inventory/v1"
	"github.com/shopbus/shopbus/gen/go/shopbus/inventory/v1/inventoryv1connect"
	orderv1 "github.com/shopbus/shopbus/gen/go/shopbus/order/v1"
	"github.com/shopbus/shopbus/gen/go/shopbus/order/v1/orderv1connect"
	"github.com/shopbus/shopbus/internal/messaging"
)

// minRate is the lowest --rate: an order every 100 s.
const minRate = 0.01

// bench drives a running gateway: each order is placed with CreateOrder and
// followed with WatchOrder until it is CONFIRMED, REJECTED or held for
// REVIEW (a person decides it: counted apart). It prints the
// throughput, the latency distribution (HDR histograms) and, from the
// processes' /metrics, their resident memory and CPU time per order.
//
// Closed loop (the default), --clients clients each place an order and
// place the next once it is decided: that finds the sustained maximum. Open
// loop (--rate R), orders start R per second on a fixed schedule whatever
// the answers, and each is timed from its scheduled start, so a server that
// falls behind shows as latency rather than as fewer requests (no
// coordinated omission). It calls with the admin token of
// SHOPBUS_ADMIN_TOKEN or SHOPBUS_ADMIN_TOKEN_FILE (shopbus dev writes one
// to <data-dir>/auth/admin.jwt), placing orders for many customers.
func bench(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("bench", flag.ContinueOnError)
	url := fs.String("url", "http://127.0.0.1:8080", "gateway base URL (env SHOPBUS_URL)")
	clients := fs.Int("clients", 16, "closed loop: concurrent clients")
	rate := fs.Float64("rate", 0, "open loop: orders started per second on a fixed schedule (0: closed loop)")
	maxInFlight := fs.Int("max-in-flight", 5000, "open loop: orders in flight beyond which a scheduled order is counted as not sent")
	duration := fs.Duration("duration", 30*time.Second, "measured time")
	warmup := fs.Duration("warmup", 3*time.Second, "time before measuring")
	skus := fs.Int("skus", 100, "how many SKUs the orders spread over (1: every order contends for one stock row)")
	customers := fs.Int("customers", 1000, "how many customers the orders spread over (fraud scoring holds a customer's fifth order within an hour for review)")
	ca := fs.String("ca", "", "CA `file` to trust for an https --url (env SHOPBUS_CA; the system's roots otherwise)")
	metrics := fs.String("metrics", "http://127.0.0.1:9464/metrics",
		"comma-separated /metrics URLs of the shopbus processes, for their memory and CPU (env SHOPBUS_BENCH_METRICS; empty: none)")
	if err := parse(fs, args); err != nil {
		return err
	}
	switch {
	case *clients < 1:
		return usagef("bench", "--clients %d: need at least 1", *clients)
	case *rate < 0 || math.IsNaN(*rate) || math.IsInf(*rate, 0) || *rate > 0 && *rate < minRate:
		// Below minRate the interval between orders would overflow the
		// schedule's time.Duration, and every order would start at once.
		return usagef("bench", "--rate %v: need 0 (closed loop) or at least %v orders/s", *rate, minRate)
	case *duration <= 0:
		return usagef("bench", "--duration %v: need more than 0", *duration)
	case *warmup < 0:
		return usagef("bench", "--warmup %v: need 0 or more", *warmup)
	case *maxInFlight < 1:
		return usagef("bench", "--max-in-flight %d: need at least 1", *maxInFlight)
	case *skus < 1:
		return usagef("bench", "--skus %d: need at least 1", *skus)
	case *customers < 1:
		return usagef("bench", "--customers %d: need at least 1", *customers)
	}
	if err := checkURL("url", *url); err != nil {
		return usagef("bench", "%w", err)
	}
	conns := *clients * 2
	if *rate > 0 {
		conns = 512
	}
	transport := &http.Transport{MaxIdleConnsPerHost: conns, ForceAttemptHTTP2: true}
	if *ca != "" {
		pem, err := os.ReadFile(*ca)
		if err != nil {
			return fmt.Errorf("bench: --ca: %w", err)
		}
		roots := x509.NewCertPool()
		if !roots.AppendCertsFromPEM(pem) {
			return fmt.Errorf("bench: --ca %s: no PEM certificate in it", *ca)
		}
		transport.TLSClientConfig = &tls.Config{RootCAs: roots, MinVersion: tls.VersionTLS12}
	}
	httpClient := &http.Client{Transport: transport}
	adminOpts, err := adminClientOptions()
	if err != nil {
		return err
	}
	// The admin token places each order for one of many customers, as a
	// shop's customers would (each held to its own rate limit).
	b := &bencher{
		orders:    orderv1connect.NewOrderServiceClient(httpClient, *url, adminOpts...),
		server:    newLatency(),
		client:    newLatency(),
		create:    newLatency(),
		catalog:   make([]string, max(*skus, 1)),
		customers: make([]string, *customers),
	}
	for i := range b.customers {
		b.customers[i] = uuid.NewString()
	}
	inventory := inventoryv1connect.NewInventoryServiceClient(httpClient, *url, adminOpts...)
	run := strings.ToUpper(uuid.NewString()[:8])
	for i := range b.catalog {
		b.catalog[i] = fmt.Sprintf("BENCH-%s-%d", run, i)
		if _, err := inventory.SetStock(ctx, connect.NewRequest(&inventoryv1.SetStockRequest{Sku: b.catalog[i], OnHand: 1_000_000_000})); err != nil {
			return fmt.Errorf("bench: set stock at %s: %w", *url, err)
		}
		if _, err := inventory.SetPrice(ctx, connect.NewRequest(&inventoryv1.SetPriceRequest{Sku: b.catalog[i], UnitPriceMinor: 999, Currency: "EUR"})); err != nil {
			return fmt.Errorf("bench: set price at %s: %w", *url, err)
		}
	}
	if err := b.awaitPrices(ctx); err != nil {
		return err
	}
	procs := newProcesses(ctx, *metrics)

	start := time.Now()
	b.from, b.to = start.Add(*warmup), start.Add(*warmup+*duration)
	stopSampling := procs.sample(ctx, b.from, b.to)
	var cpu0 syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &cpu0)
	var wg sync.WaitGroup
	if *rate == 0 {
		for range *clients {
			wg.Go(func() {
				failures := 0
				for ctx.Err() == nil {
					t0 := time.Now()
					if !t0.Before(b.to) {
						return
					}
					if err := b.place(ctx, t0); err == nil {
						failures = 0
						continue
					}
					// A failing server is not hammered: back off, up to
					// maxBenchBackoff, until a call works again.
					failures++
					select {
					case <-ctx.Done():
					case <-time.After(min(messaging.Backoff(failures), maxBenchBackoff)):
					}
				}
			})
		}
	} else {
		var inFlight atomic.Int64
		every := float64(time.Second) / *rate
		for i := 0; ctx.Err() == nil; i++ {
			at := start.Add(time.Duration(float64(i) * every))
			if !at.Before(b.to) {
				break
			}
			if d := time.Until(at); d > 0 {
				time.Sleep(d)
			}
			if inFlight.Load() >= int64(*maxInFlight) {
				b.count(at, func() { b.notSent++ })
				continue
			}
			inFlight.Add(1)
			wg.Go(func() {
				defer inFlight.Add(-1)
				_ = b.place(ctx, at) // the schedule, not the answers, paces the open loop
			})
		}
	}
	wg.Wait()
	stopSampling()
	if err := ctx.Err(); err != nil {
		return err
	}
	if b.confirmed == 0 {
		return fmt.Errorf("bench: no order was confirmed (%d failed, %d undecided)", b.failed, b.undecided)
	}

	mode := fmt.Sprintf("closed loop, %d clients", *clients)
	if *rate > 0 {
		mode = fmt.Sprintf("open loop, %.0f orders/s scheduled", *rate)
	}
	decided := b.confirmed + b.rejected + b.review
	fmt.Printf("shopbus bench: %s, %d SKUs, %v measured after %v warm-up, against %s\n", mode, len(b.catalog), *duration, *warmup, *url)
	fmt.Printf("orders decided       %d (%.0f orders/s): confirmed %d, rejected %d, held for review %d; failed %d, undecided after %v %d",
		decided, float64(decided)/duration.Seconds(), b.confirmed, b.rejected, b.review, b.failed, decideWithin, b.undecided)
	if *rate > 0 {
		fmt.Printf(", not sent (over --max-in-flight) %d", b.notSent)
	}
	fmt.Println()
	fmt.Printf("CreateOrder → outcome, server clock (created_at → updated_at)  %s\n", b.server)
	if *rate > 0 {
		fmt.Printf("CreateOrder → outcome seen by the client, from its scheduled start  %s\n", b.client)
	} else {
		fmt.Printf("CreateOrder → outcome seen by the client  %s\n", b.client)
	}
	fmt.Printf("CreateOrder RPC alone  %s\n", b.create)
	procs.print(decided)
	var cpu1 syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &cpu1)
	fmt.Printf("the load generator itself: %.2f s of CPU over the whole run (not counted above)\n", (cpuTime(cpu1) - cpuTime(cpu0)).Seconds())
	return nil
}

// maxBenchBackoff is the longest a closed-loop client waits after failures.
const maxBenchBackoff = 2 * time.Second

// decideWithin is how long the bench waits for an order's outcome.
const decideWithin = 30 * time.Second

// bencher places the orders and keeps their figures.
type bencher struct {
	orders    orderv1connect.OrderServiceClient
	catalog   []string
	customers []string
	from, to  time.Time // the measured window

	mu                                                      sync.Mutex
	server, client, create                                  *latency
	confirmed, rejected, review, failed, undecided, notSent int
}

// place places one order scheduled at t0 and waits for its outcome; it is
// counted when t0 is in the measured window. It returns the call's error.
func (b *bencher) place(ctx context.Context, t0 time.Time) error {
	res, err := b.orders.CreateOrder(ctx, connect.NewRequest(&orderv1.CreateOrderRequest{
		IdempotencyKey: uuid.NewString(), CustomerId: b.customers[rand.N(len(b.customers))], Currency: "EUR",
		Lines: []*orderv1.OrderLine{{Sku: b.catalog[rand.N(len(b.catalog))], Quantity: 1}}, // at the catalog's price
	}))
	t1 := time.Now()
	var o *orderv1.Order
	if err == nil {
		o, err = b.await(ctx, res.Msg.GetOrder().GetOrderId())
	}
	t2 := time.Now()
	b.count(t0, func() {
		switch {
		case errors.Is(err, errUndecided):
			b.undecided++
		case err != nil:
			b.failed++
		default:
			switch o.GetStatus() {
			case orderv1.OrderStatus_ORDER_STATUS_REJECTED:
				b.rejected++
			case orderv1.OrderStatus_ORDER_STATUS_REVIEW:
				b.review++ // an outcome for the pipeline: a person decides
			default:
				b.confirmed++
			}
			b.create.record(t1.Sub(t0))
			b.client.record(t2.Sub(t0))
			b.server.record(o.GetUpdatedAt().AsTime().Sub(o.GetCreatedAt().AsTime()))
		}
	})
	return err
}

// awaitPrices waits, before anything is measured, until the order service
// prices every SKU of the catalog (the prices reach it as events): it places
// one order for the whole catalog, 100 SKUs at a time, until none is refused
// with FailedPrecondition.
func (b *bencher) awaitPrices(ctx context.Context) error {
	deadline := time.Now().Add(time.Minute)
	for chunk := range slices.Chunk(b.catalog, 100) {
		req := &orderv1.CreateOrderRequest{IdempotencyKey: uuid.NewString(), CustomerId: b.customers[0], Currency: "EUR"}
		for _, sku := range chunk {
			req.Lines = append(req.Lines, &orderv1.OrderLine{Sku: sku, Quantity: 1})
		}
		for {
			_, err := b.orders.CreateOrder(ctx, connect.NewRequest(req))
			if err == nil {
				break
			}
			if connect.CodeOf(err) != connect.CodeFailedPrecondition || time.Now().After(deadline) {
				return fmt.Errorf("bench: the order service does not price the catalog: %w", err)
			}
			select {
			case <-ctx.Done():
				return ctx.Err()
			case <-time.After(50 * time.Millisecond):
			}
		}
	}
	return nil
}

// count runs f under the lock if t0 is in the measured window.
func (b *bencher) count(t0 time.Time, f func()) {
	if t0.Before(b.from) || !t0.Before(b.to) {
		return
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	f()
}

var errUndecided = errors.New("still PENDING")

// await follows the order with WatchOrder until its outcome.
func (b *bencher) await(ctx context.Context, id string) (*orderv1.Order, error) {
	ctx, cancel := context.WithTimeout(ctx, decideWithin)
	defer cancel()
	stream, err := b.orders.WatchOrder(ctx, connect.NewRequest(&orderv1.WatchOrderRequest{OrderId: id}))
	if err != nil {
		return nil, err
	}
	defer stream.Close()
	var last *orderv1.Order
	for stream.Receive() {
		last = stream.Msg().GetOrder()
		if last.GetStatus() == orderv1.OrderStatus_ORDER_STATUS_REVIEW {
			return last, nil // held for a person: the pipeline is done with it
		}
	}
	switch err := stream.Err(); {
	case connect.CodeOf(err) == connect.CodeDeadlineExceeded, errors.Is(err, context.DeadlineExceeded):
		return nil, errUndecided
	case err != nil:
		return nil, err
	case last == nil || last.GetStatus() == orderv1.OrderStatus_ORDER_STATUS_PENDING:
		return nil, errUndecided
	}
	return last, nil
}

// latency is an HDR histogram of durations, in microseconds from 1 µs to
// 10 minutes with 3 significant digits.
type latency struct{ h *hdrhistogram.Histogram }

func newLatency() *latency {
	return &latency{hdrhistogram.New(1, int64(10*time.Minute/time.Microsecond), 3)}
}

func (l *latency) record(d time.Duration) {
	_ = l.h.RecordValue(max(1, d.Microseconds())) // above the highest value: not recorded, and max says so
}

// String renders p50, p90, p99, p99.9 and max.
func (l *latency) String() string {
	q := func(p float64) time.Duration {
		return (time.Duration(l.h.ValueAtQuantile(p)) * time.Microsecond).Round(10 * time.Microsecond)
	}
	return fmt.Sprintf("p50 %v  p90 %v  p99 %v  p99.9 %v  max %v  (n=%d)",
		q(50), q(90), q(99), q(99.9), (time.Duration(l.h.Max()) * time.Microsecond).Round(10*time.Microsecond), l.h.TotalCount())
}

func cpuTime(r syscall.Rusage) time.Duration {
	return time.Duration(r.Utime.Nano() + r.Stime.Nano())
}

// processes are the shopbus processes whose /metrics the bench reads: the
// CPU time they spent in the measured window and their largest resident
// memory.
type processes struct {
	urls   []string
	client *http.Client

	mu       sync.Mutex
	cpu0     map[string]float64
	cpu1     map[string]float64
	rss      map[string]float64
	problems map[string]error
}

func newProcesses(ctx context.Context, list string) *processes {
	p := &processes{client: &http.Client{Timeout: 2 * time.Second},
		cpu0: map[string]float64{}, cpu1: map[string]float64{}, rss: map[string]float64{}, problems: map[string]error{}}
	for u := range strings.SplitSeq(list, ",") {
		if u = strings.TrimSpace(u); u == "" {
			continue
		}
		if _, _, err := p.read(ctx, u); err != nil {
			fmt.Printf("bench: %s: %v; its memory and CPU are not reported\n", u, err)
			continue
		}
		p.urls = append(p.urls, u)
	}
	return p
}

// read returns a process's CPU seconds and resident bytes from its metrics.
func (p *processes) read(ctx context.Context, url string) (cpu, rss float64, err error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return 0, 0, err
	}
	res, err := p.client.Do(req)
	if err != nil {
		return 0, 0, err
	}
	defer res.Body.Close()
	if res.StatusCode != http.StatusOK {
		return 0, 0, fmt.Errorf("GET: %s", res.Status)
	}
	parser := expfmt.NewTextParser(model.UTF8Validation)
	families, err := parser.TextToMetricFamilies(res.Body)
	if err != nil {
		return 0, 0, fmt.Errorf("not Prometheus text: %w", err)
	}
	value := func(name string) (float64, error) {
		f := families[name]
		if f == nil || len(f.GetMetric()) == 0 {
			return 0, fmt.Errorf("no %s", name)
		}
		m := f.GetMetric()[0]
		if c := m.GetCounter(); c != nil {
			return c.GetValue(), nil
		}
		return m.GetGauge().GetValue(), nil
	}
	if cpu, err = value("process_cpu_seconds_total"); err != nil {
		return 0, 0, err
	}
	if rss, err = value("process_resident_memory_bytes"); err != nil {
		return 0, 0, err
	}
	return cpu, rss, nil
}

// sample reads every process every 500 ms from from to to, and returns the
// function that stops sampling.
func (p *processes) sample(ctx context.Context, from, to time.Time) func() {
	if len(p.urls) == 0 {
		return func() {}
	}
	ctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		tick := time.NewTicker(500 * time.Millisecond)
		defer tick.Stop()
		for {
			now := time.Now()
			if !now.Before(from) {
				last := !now.Before(to)
				for _, u := range p.urls {
					cpu, rss, err := p.read(ctx, u)
					p.mu.Lock()
					switch {
					case err != nil:
						p.problems[u] = err
					default:
						if _, ok := p.cpu0[u]; !ok {
							p.cpu0[u] = cpu // the first read that worked
						}
						p.cpu1[u], p.rss[u] = cpu, max(p.rss[u], rss)
					}
					p.mu.Unlock()
				}
				if last {
					return
				}
			}
			select {
			case <-ctx.Done():
				return
			case <-tick.C:
			}
		}
	}()
	return func() { <-done; cancel() }
}

// print reports each process's figures for the orders decided.
func (p *processes) print(orders int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, u := range p.urls {
		if err := p.problems[u]; err != nil {
			fmt.Printf("process %s: a read failed (%v)\n", u, err)
		}
		if _, ok := p.cpu0[u]; !ok {
			fmt.Printf("process %s: no read worked in the measured window\n", u)
			continue
		}
		cpu := p.cpu1[u] - p.cpu0[u]
		fmt.Printf("process %s: resident memory max %.0f MiB; CPU %.2f s in the measured window, %.2f ms per order decided\n",
			u, p.rss[u]/(1<<20), cpu, 1000*cpu/float64(max(orders, 1)))
	}
}
