package stack_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	orderv1 "github.com/shopbus/shopbus/gen/go/shopbus/order/v1"
	"github.com/shopbus/shopbus/internal/stack"
	"github.com/shopbus/shopbus/internal/testenv"
)

// TestDistributedGroups: two order and two inventory instances, each a
// component with connections of its own, run as consumer groups; one
// inventory instance is killed (its NATS connection dropped without a
// goodbye) while orders flow. The survivor takes its partitions over when
// its leases expire, and every order is decided exactly once.
func TestDistributedGroups(t *testing.T) {
	t.Parallel()
	srv, _ := testenv.NATS(t)
	schema := testenv.Schema()
	t.Cleanup(func() { testenv.DropStackSchemas(t, schema) })
	start := func(component string, cfg stack.Config) *component {
		cfg.Components, cfg.Schema, cfg.DatabaseURL, cfg.NATSURL, cfg.Addr = []string{component}, schema, testenv.StackDatabaseURL(), srv.ClientURL(), "127.0.0.1:0"
		cfg.Log = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelError + 4}))
		cfg.FraudModelFile = testFraudModel
		return startComponent(t, cfg)
	}
	start("fraud", stack.Config{})
	orderA, _ := start("order", stack.Config{}), start("order", stack.Config{})
	inventoryA, inventoryB := start("inventory", stack.Config{}), start("inventory", stack.Config{})
	gw := start("gateway", stack.Config{OrderURL: orderA.URL(), InventoryURL: inventoryA.URL()})
	s := clientsOf(t, gw.Stack, schema, http.DefaultClient)
	const orders, stock = 120, 80
	s.setStock(t, "MUG-001", stock)

	ids := make(chan string, orders)
	var wg sync.WaitGroup
	for range 4 {
		wg.Go(func() {
			for range orders / 4 {
				ids <- s.create(t, orderRequest(line("MUG-001", 1))).GetOrderId()
			}
		})
	}
	// Kill one inventory instance once a third of the orders are placed.
	testenv.CheckFor(t, 30*time.Second, 10*time.Millisecond, func() error {
		if n := len(ids); n < orders/3 {
			return fmt.Errorf("%d orders placed", n)
		}
		return nil
	})
	inventoryB.kill()
	wg.Wait()
	close(ids)

	confirmed := 0
	for id := range ids {
		switch o := s.await(t, id); o.GetStatus() {
		case orderv1.OrderStatus_ORDER_STATUS_CONFIRMED:
			confirmed++
		case orderv1.OrderStatus_ORDER_STATUS_REJECTED:
		default:
			t.Errorf("order %s ended %v", id, o.GetStatus())
		}
	}
	if confirmed != stock {
		t.Errorf("%d orders confirmed, want %d (the stock)", confirmed, stock)
	}
	if n := s.count(t, "inventory", "SELECT count(*) FROM decisions"); n != orders {
		t.Errorf("%d decisions for %d orders", n, orders)
	}
	if n := s.count(t, "inventory", outcomesSQL); n != orders {
		t.Errorf("%d inventory outcomes for %d orders, want one each", n, orders)
	}
	if st := s.stock(t, "MUG-001"); st.GetOnHand() != 0 || st.GetReserved() != stock {
		t.Errorf("stock %v, want 0 on hand and %d reserved", st, stock)
	}
}

// component is one `shopbus serve <component>` run in process.
type component struct {
	*stack.Stack
	cancel context.CancelFunc
	done   chan error
	killed atomic.Bool
}

func startComponent(t *testing.T, cfg stack.Config) *component {
	t.Helper()
	cfg = withTestDefaults(t, cfg)
	ctx, cancel := context.WithCancel(context.Background())
	s, err := stack.Start(ctx, cfg)
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	c := &component{Stack: s, cancel: cancel, done: make(chan error, 1)}
	go func() { c.done <- s.Run(ctx) }()
	t.Cleanup(func() {
		c.cancel()
		select {
		case err := <-c.done:
			// A killed component's errors (its connection closed under
			// it) are what a SIGKILL would never report.
			if err != nil && !errors.Is(err, context.Canceled) && !c.killed.Load() {
				t.Errorf("stack.Run: %v", err)
			}
		case <-time.After(30 * time.Second):
			t.Error("the component did not stop within 30s")
		}
		s.Close()
	})
	return c
}

// kill drops the component's NATS connection without a goodbye, the way
// SIGKILL would, and then stops what still runs in the process.
func (c *component) kill() {
	c.killed.Store(true)
	c.Conn.Close()
	c.cancel()
}
