// Package cluster_test runs the real shopbus stack (gateway, order and
// inventory services, PostgreSQL) against a 3-node JetStream cluster of
// real nats-servers in process on loopback (natsembed.StartCluster: R3
// streams, sync always) and takes nodes away while orders flow: the order
// stream's leader is stopped and restarted (TestStreamLeaderRestart), and
// two of the three nodes are stopped so that every stream loses its quorum
// while the services stay connected to the third (TestQuorumLoss). Both
// check afterwards that every accepted order was decided exactly once and
// print a summary line. docs/architecture.md (Production topology) says
// what this covers and what it does not. -cluster.logs prints the stacks'
// warnings (what the services saw while nodes were away).
package cluster_test

import (
	"context"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"os"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"connectrpc.com/connect"
	"github.com/jackc/pgx/v5"

	inventoryv1 "github.com/shopbus/shopbus/gen/go/shopbus/inventory/v1"
	"github.com/shopbus/shopbus/gen/go/shopbus/inventory/v1/inventoryv1connect"
	orderv1 "github.com/shopbus/shopbus/gen/go/shopbus/order/v1"
	"github.com/shopbus/shopbus/gen/go/shopbus/order/v1/orderv1connect"
	"github.com/shopbus/shopbus/internal/auth"
	"github.com/shopbus/shopbus/internal/deadletter"
	"github.com/shopbus/shopbus/internal/messaging"
	"github.com/shopbus/shopbus/internal/natsembed"
	"github.com/shopbus/shopbus/internal/stack"
	"github.com/shopbus/shopbus/internal/stack/stacktest"
	"github.com/shopbus/shopbus/internal/testenv"
	"github.com/shopbus/shopbus/services/order"
)

var logs = flag.Bool("cluster.logs", false, "print the stacks' warnings and errors")

const (
	orderStream     = "ECOMMERCE_ORDER"
	inventoryStream = "ECOMMERCE_INVENTORY"
	customer        = "6f1c2b3a-4d5e-4f60-8a7b-9c0d1e2f3a4b"
	skus            = 4
	stockPerSKU     = 60
	unitPrice       = 1000
	// decideWithin bounds the wait for every order to be decided once the
	// cluster is whole again: it covers the consumers' and the relay's
	// backoff (at most 30 s) with room for a slow machine.
	decideWithin = 2 * time.Minute
)

// tier is one test's world: a 3-node cluster, schemas of its own, and a
// stack connected to every node's URL, driven through the gateway.
type tier struct {
	t         *testing.T
	cluster   *natsembed.Cluster
	stack     *stack.Stack
	orders    orderv1connect.OrderServiceClient
	inventory inventoryv1connect.InventoryServiceClient
	schema    string
}

func startTier(t *testing.T) *tier {
	t.Helper()
	c, err := natsembed.StartCluster(natsembed.ClusterOptions{Dir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Shutdown) // last: the stack stops first
	schema := testenv.Schema()
	t.Cleanup(func() { testenv.DropStackSchemas(t, schema) })
	var w io.Writer = io.Discard
	if *logs {
		w = os.Stderr
	}
	cfg := stack.Config{
		NATSURL:     c.URLs(),
		DatabaseURL: testenv.StackDatabaseURL(),
		Schema:      schema,
		Addr:        "127.0.0.1:0",
		// Atomic batches on: an outbox backlog (the quorum loss's) goes
		// out in them, through leader changes.
		Streams: messaging.StreamOptions{Replicas: 3, AtomicBatches: true},
		// The order saga's services: the tier is about its durability, and
		// every other service's replicated consumers would only slow the
		// start.
		Components:  []string{"gateway", "order", "inventory", "fraud"},
		Auth:        auth.Config{Insecure: true},
		OrderLimits: order.Limits{OrdersPerSecond: 1e6, Burst: 1e6},
		// One customer places every order: the committed model without
		// the customer's history.
		FraudModelFile: "../../services/fraud/testdata/no-history.json",
		Log:            slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: slog.LevelWarn})),
	}
	s := stacktest.Run(t, cfg)
	tr := &tier{t: t, cluster: c, stack: s, schema: schema,
		orders:    orderv1connect.NewOrderServiceClient(http.DefaultClient, s.URL()),
		inventory: inventoryv1connect.NewInventoryServiceClient(http.DefaultClient, s.URL()),
	}
	tr.checkReplicas()
	tr.seed()
	return tr
}

// checkReplicas checks that what shopbus declared has three replicas: the
// event streams, the dead-letter streams and the consumer groups' buckets.
func (tr *tier) checkReplicas() {
	tr.t.Helper()
	ctx := context.Background()
	for name := range tr.stack.JS.StreamNames(ctx).Name() {
		s, err := tr.stack.JS.Stream(ctx, name)
		if err != nil {
			tr.t.Fatal(err)
		}
		if r := s.CachedInfo().Config.Replicas; r != 3 {
			tr.t.Errorf("stream %s has %d replicas, want 3", name, r)
		}
	}
}

func sku(i int) string { return fmt.Sprintf("CLUSTER-%d", i) }

// seed stocks and prices every SKU and waits until the order service knows
// the prices.
func (tr *tier) seed() {
	tr.t.Helper()
	ctx := context.Background()
	for i := range skus {
		if _, err := tr.inventory.SetStock(ctx, connect.NewRequest(&inventoryv1.SetStockRequest{Sku: sku(i), OnHand: stockPerSKU})); err != nil {
			tr.t.Fatal(err)
		}
		if _, err := tr.inventory.SetPrice(ctx, connect.NewRequest(&inventoryv1.SetPriceRequest{Sku: sku(i), UnitPriceMinor: unitPrice, Currency: "EUR"})); err != nil {
			tr.t.Fatal(err)
		}
	}
	testenv.CheckFor(tr.t, time.Minute, 20*time.Millisecond, func() error {
		if n := tr.count("order", `SELECT count(*) FROM prices`); n < skus {
			return fmt.Errorf("the order service knows %d of %d prices", n, skus)
		}
		return nil
	})
}

// count runs a query in one of the tier's schemas ("order", "inventory")
// and returns the single int64 it selects.
func (tr *tier) count(service, sql string) int64 {
	tr.t.Helper()
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, testenv.DatabaseURL())
	if err != nil {
		tr.t.Fatal(err)
	}
	defer conn.Close(ctx)
	if _, err := conn.Exec(ctx, "SET search_path TO "+pgx.Identifier{tr.schema + "_" + service}.Sanitize()); err != nil {
		tr.t.Fatal(err)
	}
	var n int64
	if err := conn.QueryRow(ctx, sql).Scan(&n); err != nil {
		tr.t.Fatalf("%s: %v", sql, err)
	}
	return n
}

// pace is each client's pause between two orders: a steady flow (at most
// clients/pace orders a second) whose volume stays bounded however long a
// node takes to come back.
const pace = 50 * time.Millisecond

// placer places orders from a few concurrent clients until stopped, each
// retried with its idempotency key until accepted, as a client would.
type placer struct {
	mu       sync.Mutex
	accepted []string
	placed   atomic.Int64
	stop     chan struct{}
	wg       sync.WaitGroup
	failures atomic.Int64
}

func (tr *tier) placeOrders(clients int) *placer {
	p := &placer{stop: make(chan struct{})}
	for c := range clients {
		p.wg.Go(func() {
			for i := 0; ; i++ {
				select {
				case <-p.stop:
					return
				default:
				}
				req := &orderv1.CreateOrderRequest{IdempotencyKey: fmt.Sprintf("cluster-%d-%d", c, i), CustomerId: customer, Currency: "EUR",
					Lines: []*orderv1.OrderLine{{Sku: sku(rand.N(skus)), Quantity: uint32(1 + rand.N(3)), UnitPriceMinor: unitPrice}}}
				for attempt := 0; ; attempt++ {
					res, err := tr.orders.CreateOrder(context.Background(), connect.NewRequest(req))
					if err == nil {
						p.mu.Lock()
						p.accepted = append(p.accepted, res.Msg.GetOrder().GetOrderId())
						p.mu.Unlock()
						p.placed.Add(1)
						break
					}
					p.failures.Add(1)
					if attempt > 100 {
						tr.t.Errorf("CreateOrder kept failing: %v", err)
						return
					}
					time.Sleep(20 * time.Millisecond) // a client's pause before a retry
				}
				time.Sleep(pace)
			}
		})
	}
	return p
}

// finish stops placing and returns the accepted orders.
func (p *placer) finish() []string {
	close(p.stop)
	p.wg.Wait()
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.accepted
}

// awaitPlaced waits until n more orders than now have been accepted.
func (tr *tier) awaitPlaced(p *placer, n int64, what string) {
	tr.t.Helper()
	want := p.placed.Load() + n
	testenv.CheckFor(tr.t, time.Minute, 10*time.Millisecond, func() error {
		if got := p.placed.Load(); got < want {
			return fmt.Errorf("%s: %d orders placed, want %d", what, got, want)
		}
		return nil
	})
}

// awaitDecided waits until n more orders than now have been decided.
func (tr *tier) awaitDecided(n int64, what string) {
	tr.t.Helper()
	const decided = `SELECT count(*) FROM orders WHERE status <> 'PENDING'`
	want := tr.count("order", decided) + n
	testenv.CheckFor(tr.t, decideWithin, 20*time.Millisecond, func() error {
		if got := tr.count("order", decided); got < want {
			return fmt.Errorf("%s: %d orders decided, want %d", what, got, want)
		}
		return nil
	})
}

// awaitLeaders waits until both event streams have a leader.
func (tr *tier) awaitLeaders() {
	tr.t.Helper()
	testenv.CheckFor(tr.t, time.Minute, 20*time.Millisecond, func() error {
		for _, s := range []string{orderStream, inventoryStream} {
			if tr.cluster.StreamLeader(s) < 0 {
				return fmt.Errorf("stream %s has no leader", s)
			}
		}
		return nil
	})
}

// result is what check found.
type result struct {
	orders, confirmed, rejected, lost, doubled int64
}

// awaitAllDecided waits until every accepted order is decided and both
// outboxes are published, then checks that nothing was lost or doubled:
// each order has one decision and one outcome applied, the stock of every
// SKU is conserved (on hand + reserved is what was stocked, and reserved
// is the units of the confirmed orders), and each stream holds each
// published event once.
func (tr *tier) awaitAllDecided(accepted []string) result {
	tr.t.Helper()
	testenv.CheckFor(tr.t, decideWithin, 50*time.Millisecond, func() error {
		pending := tr.count("order", `SELECT count(*) FROM orders WHERE status = 'PENDING'`)
		unpublished := tr.count("order", `SELECT count(*) FROM outbox WHERE published_at IS NULL`) +
			tr.count("inventory", `SELECT count(*) FROM outbox WHERE published_at IS NULL`)
		if pending != 0 || unpublished != 0 {
			return fmt.Errorf("%d orders pending, %d outbox rows unpublished", pending, unpublished)
		}
		return nil
	})
	t := tr.t
	var r result
	r.orders = tr.count("order", `SELECT count(*) FROM orders`)
	r.confirmed = tr.count("order", `SELECT count(*) FROM orders WHERE status = 'CONFIRMED'`)
	r.rejected = tr.count("order", `SELECT count(*) FROM orders WHERE status = 'REJECTED'`)
	r.lost = int64(len(accepted)) - (r.confirmed + r.rejected)
	if r.orders != int64(len(accepted)) || r.lost != 0 {
		t.Errorf("accepted %d, stored %d, decided %d", len(accepted), r.orders, r.confirmed+r.rejected)
	}
	decisions := tr.count("inventory", `SELECT count(*) FROM decisions`)
	outcomes := tr.count("inventory", `SELECT count(*) FROM outbox WHERE subject LIKE 'ecommerce.inventory.adjusted.%' OR subject LIKE 'ecommerce.inventory.rejected.%'`)
	reserveProcessed := tr.count("inventory", `SELECT count(*) FROM processed_events`)
	outcomeProcessed := tr.count("order", `SELECT count(*) FROM processed_events WHERE consumer = 'order-apply-inventory-outcome'`) - skus // the prices, once each
	r.doubled = (decisions - r.orders) + (outcomes - r.orders) + (reserveProcessed - r.orders) + (outcomeProcessed - r.orders)
	if r.doubled != 0 {
		t.Errorf("for %d orders: %d decisions, %d outcome events, %d order.created handled, %d outcomes applied",
			r.orders, decisions, outcomes, reserveProcessed, outcomeProcessed)
	}
	for i := range skus {
		s := sku(i)
		onHand := tr.count("inventory", `SELECT on_hand FROM stock WHERE sku = '`+s+`'`)
		reserved := tr.count("inventory", `SELECT reserved FROM stock WHERE sku = '`+s+`'`)
		confirmedUnits := tr.count("order", `SELECT coalesce(sum(l.quantity), 0) FROM orders o JOIN order_lines l ON l.order_id = o.id
			WHERE o.status = 'CONFIRMED' AND l.sku = '`+s+`'`)
		if onHand+reserved != stockPerSKU || reserved != confirmedUnits || onHand < 0 {
			t.Errorf("%s: on hand %d + reserved %d, want %d; reserved, want %d (units of confirmed orders)", s, onHand, reserved, stockPerSKU, confirmedUnits)
			r.doubled++
		}
	}
	// Nodes away pause the pipeline; they dead-letter nothing.
	if dls, _, err := deadletter.NewStore(tr.stack.JS).List(context.Background(), deadletter.Filter{}, 0, 100); err != nil || len(dls) != 0 {
		t.Errorf("the dead-letter queue holds %d entries (%v), want none", len(dls), err)
	}
	// The duplicate window held across the leader changes: each stream
	// holds each outbox row once.
	for _, c := range []struct{ stream, service string }{{orderStream, "order"}, {inventoryStream, "inventory"}} {
		s, err := tr.stack.JS.Stream(context.Background(), c.stream)
		if err != nil {
			t.Fatal(err)
		}
		rows := tr.count(c.service, `SELECT count(*) FROM outbox`)
		if msgs := int64(s.CachedInfo().State.Msgs); msgs != rows {
			t.Errorf("stream %s holds %d events for %d outbox rows", c.stream, msgs, rows)
			r.doubled += msgs - rows
		}
	}
	return r
}

// TestStreamLeaderRestart stops the order stream's leader while orders
// flow, lets the two other nodes go on without it, and restarts it on its
// store: every accepted order is decided once, none lost, none doubled.
func TestStreamLeaderRestart(t *testing.T) {
	t.Parallel()
	tr := startTier(t)
	p := tr.placeOrders(3)
	tr.awaitDecided(20, "before the stop")

	var leader int
	testenv.CheckFor(t, time.Minute, 20*time.Millisecond, func() error {
		if leader = tr.cluster.StreamLeader(orderStream); leader < 0 {
			return fmt.Errorf("stream %s has no leader", orderStream)
		}
		return nil
	})
	tr.cluster.Stop(leader)
	tr.awaitLeaders()
	newLeader := tr.cluster.StreamLeader(orderStream)
	tr.awaitPlaced(p, 20, "without the old leader")
	tr.awaitDecided(20, "without the old leader")

	back := time.Now()
	if err := tr.cluster.Restart(leader); err != nil {
		t.Fatal(err)
	}
	testenv.CheckFor(t, time.Minute, 20*time.Millisecond, func() error {
		for _, s := range []string{orderStream, inventoryStream} {
			if !tr.cluster.Server(leader).JetStreamIsStreamCurrent("$G", s) {
				return fmt.Errorf("node %d has not caught up with %s", leader, s)
			}
		}
		return nil
	})
	tr.awaitPlaced(p, 20, "after the restart")
	accepted := p.finish()
	r := tr.awaitAllDecided(accepted)
	recovered := time.Since(back).Round(100 * time.Millisecond) // reported, not asserted
	fmt.Printf("cluster: leader restart: orders=%d confirmed=%d rejected=%d stopped_node=%d new_leader=%d create_retries=%d nats_reconnects=%d all_decided_after=%v lost=%d doubled=%d\n",
		len(accepted), r.confirmed, r.rejected, leader, newLeader, p.failures.Load(), tr.stack.Conn.Stats().Reconnects, recovered, r.lost, r.doubled)
}

// TestQuorumLoss stops two of the three nodes, those the services are not
// connected to, so that every stream loses its quorum while the services
// stay connected: orders are still accepted (PostgreSQL and the outbox)
// but wait in the outbox. Once the two nodes are back, the relay and the
// consumers resume on the same connection, without a reconnect, and every
// order is decided once.
func TestQuorumLoss(t *testing.T) {
	t.Parallel()
	tr := startTier(t)
	nc := tr.stack.Conn
	p := tr.placeOrders(3)
	tr.awaitDecided(20, "before the quorum loss")

	survivor := tr.cluster.Node(nc.ConnectedUrl())
	if survivor < 0 {
		t.Fatalf("the stack is connected to %s, no node of the cluster", nc.ConnectedUrl())
	}
	reconnects := nc.Stats().Reconnects
	var stopped []int
	for i := range tr.cluster.Len() {
		if i != survivor {
			stopped = append(stopped, i)
			tr.cluster.Stop(i)
		}
	}
	// Orders are accepted and wait in the outbox: the relay cannot
	// publish them without a quorum.
	tr.awaitPlaced(p, 20, "without a quorum")
	testenv.CheckFor(t, time.Minute, 20*time.Millisecond, func() error {
		if n := tr.count("order", `SELECT count(*) FROM outbox WHERE published_at IS NULL`); n < 10 {
			return fmt.Errorf("%d order.created rows wait in the outbox, want 10 or more", n)
		}
		return nil
	})
	// The survivor's Raft groups notice that they lost their quorum (in
	// 10 to 20 s) and their leaders step down: no stream has a leader, no
	// publish is answered. Orders go on being accepted meanwhile.
	testenv.CheckFor(t, time.Minute, 50*time.Millisecond, func() error {
		for _, s := range []string{orderStream, inventoryStream} {
			if n := tr.cluster.StreamLeader(s); n >= 0 {
				return fmt.Errorf("stream %s is still led by node %d", s, n)
			}
		}
		return nil
	})
	tr.awaitPlaced(p, 20, "with no stream leader")
	for _, i := range stopped {
		if err := tr.cluster.Restart(i); err != nil {
			t.Fatal(err)
		}
	}
	back := time.Now()
	if *logs {
		fmt.Fprintln(os.Stderr, "cluster: quorum back at", back.UTC().Format(time.RFC3339Nano))
	}
	tr.awaitLeaders()
	tr.awaitPlaced(p, 20, "after the quorum is back")
	accepted := p.finish()
	r := tr.awaitAllDecided(accepted)
	recovered := time.Since(back).Round(100 * time.Millisecond) // reported, not asserted
	after := nc.Stats().Reconnects
	if after != reconnects || !nc.IsConnected() || tr.cluster.Node(nc.ConnectedUrl()) != survivor {
		t.Errorf("the services' NATS connection moved: reconnects %d → %d, connected %v to %s (node %d was the survivor)",
			reconnects, after, nc.IsConnected(), nc.ConnectedUrl(), survivor)
	}
	fmt.Printf("cluster: quorum loss: orders=%d confirmed=%d rejected=%d stopped_nodes=%v survivor=%d create_retries=%d nats_reconnects=%d all_decided_after=%v batched=%d lost=%d doubled=%d\n",
		len(accepted), r.confirmed, r.rejected, stopped, survivor, p.failures.Load(), after-reconnects, recovered, testenv.InAtomicBatches(testenv.StreamMessages(t, tr.stack.JS, orderStream)), r.lost, r.doubled)
}
