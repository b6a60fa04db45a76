package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"math/rand/v2"
	"net/http"
	"slices"
	"strings"
	"sync"
	"time"

	"connectrpc.com/connect"
	"github.com/google/uuid"

	inventoryv1 "github.com/shopbus/shopbus/gen/go/shopbus/inventory/v1"
	"github.com/shopbus/shopbus/gen/go/shopbus/inventory/v1/inventoryv1connect"
	orderv1 "github.com/shopbus/shopbus/gen/go/shopbus/order/v1"
	"github.com/shopbus/shopbus/gen/go/shopbus/order/v1/orderv1connect"
)

// bench drives a running gateway with closed-loop clients: each places an
// order and polls GetOrder until it is CONFIRMED or REJECTED, then places
// the next. It prints the CreateOrder → CONFIRMED latency distribution and
// the sustained rate.
func bench(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("bench", flag.ContinueOnError)
	url := fs.String("url", env("SHOPBUS_URL", "http://127.0.0.1:8080"), "gateway base URL (env SHOPBUS_URL)")
	clients := fs.Int("clients", 16, "concurrent clients")
	duration := fs.Duration("duration", 30*time.Second, "measured time")
	warmup := fs.Duration("warmup", 3*time.Second, "time before measuring")
	poll := fs.Duration("poll", 10*time.Millisecond, "GetOrder polling interval (the bench's own load on the gateway)")
	skus := fs.Int("skus", 100, "how many SKUs the orders spread over (1: every order contends for one stock row)")
	if err := parse(fs, args); err != nil {
		return err
	}
	httpClient := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: *clients * 2}}
	orders := orderv1connect.NewOrderServiceClient(httpClient, *url)
	inventory := inventoryv1connect.NewInventoryServiceClient(httpClient, *url, adminClientOptions()...)
	run := strings.ToUpper(uuid.NewString()[:8])
	catalog := make([]string, max(*skus, 1))
	for i := range catalog {
		catalog[i] = fmt.Sprintf("BENCH-%s-%d", run, i)
		if _, err := inventory.SetStock(ctx, connect.NewRequest(&inventoryv1.SetStockRequest{Sku: catalog[i], OnHand: 1_000_000_000})); err != nil {
			return fmt.Errorf("bench: set stock at %s: %w", *url, err)
		}
	}
	customer := uuid.NewString()

	var mu sync.Mutex
	var confirm, create, server []time.Duration
	var failures, rejected int
	start := time.Now()
	measureFrom, measureTo := start.Add(*warmup), start.Add(*warmup+*duration)
	var wg sync.WaitGroup
	for range *clients {
		wg.Go(func() {
			for ctx.Err() == nil && time.Now().Before(measureTo) {
				t0 := time.Now()
				res, err := orders.CreateOrder(ctx, connect.NewRequest(&orderv1.CreateOrderRequest{
					IdempotencyKey: uuid.NewString(), CustomerId: customer, Currency: "EUR",
					Lines: []*orderv1.OrderLine{{Sku: catalog[rand.N(len(catalog))], Quantity: 1, UnitPriceMinor: 999}},
				}))
				t1 := time.Now()
				var decided *orderv1.Order
				if err == nil {
					decided, err = awaitDecision(ctx, orders, res.Msg.GetOrder().GetOrderId(), *poll)
				}
				t2 := time.Now()
				if t0.Before(measureFrom) || t2.After(measureTo) {
					continue
				}
				mu.Lock()
				switch {
				case err != nil:
					failures++
				case decided.GetStatus() == orderv1.OrderStatus_ORDER_STATUS_REJECTED:
					rejected++
				default:
					create = append(create, t1.Sub(t0))
					confirm = append(confirm, t2.Sub(t0))
					server = append(server, decided.GetUpdatedAt().AsTime().Sub(decided.GetCreatedAt().AsTime()))
				}
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	if err := ctx.Err(); err != nil {
		return err
	}
	if len(confirm) == 0 {
		return fmt.Errorf("bench: no order was confirmed (%d failures)", failures)
	}
	fmt.Printf("shopbus bench: %d clients, %d SKUs, %v measured after %v warm-up, against %s\n", *clients, len(catalog), *duration, *warmup, *url)
	fmt.Printf("confirmed orders     %d (%.0f orders/s), rejected %d, failed %d\n",
		len(confirm), float64(len(confirm))/duration.Seconds(), rejected, failures)
	fmt.Printf("CreateOrder → CONFIRMED, server clock (created_at → updated_at)  p50 %v  p90 %v  p99 %v  max %v\n",
		pct(server, 50), pct(server, 90), pct(server, 99), pct(server, 100))
	fmt.Printf("CreateOrder → CONFIRMED seen by the client (polling every %v)  p50 %v  p90 %v  p99 %v  max %v\n",
		*poll, pct(confirm, 50), pct(confirm, 90), pct(confirm, 99), pct(confirm, 100))
	fmt.Printf("CreateOrder RPC alone  p50 %v  p90 %v  p99 %v  max %v\n",
		pct(create, 50), pct(create, 90), pct(create, 99), pct(create, 100))
	return nil
}

func awaitDecision(ctx context.Context, orders orderv1connect.OrderServiceClient, id string, poll time.Duration) (*orderv1.Order, error) {
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		res, err := orders.GetOrder(ctx, connect.NewRequest(&orderv1.GetOrderRequest{OrderId: id}))
		if err != nil {
			return nil, err
		}
		if o := res.Msg.GetOrder(); o.GetStatus() != orderv1.OrderStatus_ORDER_STATUS_PENDING {
			return o, nil
		}
		time.Sleep(poll)
	}
	return nil, errors.New("still PENDING after 30s")
}

// pct returns the p-th percentile (nearest rank) of ds.
func pct(ds []time.Duration, p int) time.Duration {
	s := slices.Clone(ds)
	slices.Sort(s)
	i := (len(s)*p + 99) / 100
	return s[max(0, min(len(s)-1, i-1))].Round(100 * time.Microsecond)
}
