package order

import (
	"context"
	"fmt"
	"sync"
	"testing"

	orderv1 "github.com/shopbus/shopbus/gen/go/shopbus/order/v1"
	"github.com/shopbus/shopbus/internal/servicekit"
	"github.com/shopbus/shopbus/internal/testenv"
	"github.com/shopbus/shopbus/services"
)

// TestConcurrentCreateOrders: calls placed at once, some of them retries
// of others, each get their own order or the one their key placed.
func TestConcurrentCreateOrders(t *testing.T) {
	t.Parallel()
	pool, schema := testenv.Postgres(t, services.Migrations("order"))
	ctx := context.Background()
	if _, err := pool.Exec(ctx, `INSERT INTO prices (sku, unit_price_minor, currency, revision) VALUES ('MUG-001', 1250, 'EUR', 1)`); err != nil {
		t.Fatal(err)
	}
	s := New(servicekit.NewRuntime("order", pool, nil, schema, quiet))
	const calls, keys = 200, 150
	got := make([]*orderv1.Order, calls)
	replays := make([]bool, calls)
	var wg sync.WaitGroup
	for i := range calls {
		wg.Go(func() {
			req := &orderv1.CreateOrderRequest{IdempotencyKey: fmt.Sprint("k", i%keys), CustomerId: "6f1c2b3a-4d5e-4f60-8a7b-9c0d1e2f3a4b",
				Currency: "EUR", Lines: []*orderv1.OrderLine{{Sku: "MUG-001", Quantity: 1}}}
			o, replayed, err := s.CreateOrder(ctx, req)
			if err != nil {
				t.Errorf("call %d: %v", i, err)
				return
			}
			got[i], replays[i] = o, replayed
		})
	}
	wg.Wait()
	byKey := map[int]string{}
	replayed := 0
	for i, o := range got {
		if o == nil {
			continue
		}
		if replays[i] {
			replayed++
		}
		if id, ok := byKey[i%keys]; ok && id != o.GetOrderId() {
			t.Errorf("key k%d answered orders %s and %s", i%keys, id, o.GetOrderId())
		}
		byKey[i%keys] = o.GetOrderId()
	}
	if replayed != calls-keys {
		t.Errorf("%d calls replayed, want %d", replayed, calls-keys)
	}
	var orders, events int
	if err := pool.QueryRow(ctx, `SELECT (SELECT count(*) FROM orders), (SELECT count(*) FROM outbox)`).Scan(&orders, &events); err != nil {
		t.Fatal(err)
	}
	if orders != keys || events != keys {
		t.Errorf("%d orders and %d events, want %d of each", orders, events, keys)
	}
}
