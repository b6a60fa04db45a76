// Package chaos_test places thousands of orders through the real order and
// inventory services, NATS JetStream and PostgreSQL while it injects faults,
// then checks that nothing was lost, doubled or oversold. The short form runs
// in `make test`; `go test ./internal/chaos -chaos.orders=10000` is the long
// form.
package chaos_test

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/url"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	inventoryeventsv1 "github.com/shopbus/shopbus/gen/go/ecommerce/inventory/v1"
	ordereventsv2 "github.com/shopbus/shopbus/gen/go/ecommerce/order/v2"
	orderv1 "github.com/shopbus/shopbus/gen/go/shopbus/order/v1"
	"github.com/shopbus/shopbus/internal/deadletter"
	"github.com/shopbus/shopbus/internal/event"
	"github.com/shopbus/shopbus/internal/messaging"
	"github.com/shopbus/shopbus/internal/natsembed"
	"github.com/shopbus/shopbus/internal/postgres"
	"github.com/shopbus/shopbus/internal/servicekit"
	"github.com/shopbus/shopbus/internal/testenv"
	"github.com/shopbus/shopbus/services"
	"github.com/shopbus/shopbus/services/fraud"
	"github.com/shopbus/shopbus/services/inventory"
	"github.com/shopbus/shopbus/services/order"
)

var (
	ordersFlag = flag.Int("chaos.orders", 2000, "orders to place")
	poisonRate = flag.Float64("chaos.poison", 0.01, "poison events per order")
	// Ten times the retry budget (chaosRetry), as a 10-minute outage is
	// against the default one.
	outageFlag = flag.Duration("chaos.outage", 3*time.Second, "a PostgreSQL outage, once, of this length, with the consumers' retry budget cut to about 0.3 s (chaosRetry); 0 for none")
)

const (
	skus         = 20
	clientsCount = 8
)

// stockPerSKU gives 1.5 units per order in all, against about 2.4 units
// ordered on average: roughly two orders in three are confirmed, the rest
// rejected.
func stockPerSKU() int64 { return int64(*ordersFlag) * 3 / 2 / skus }

// world is one chaos run: a restartable embedded nats-server, the services
// on schemas of their own, and the fault counters.
type world struct {
	t        *testing.T
	storeDir string
	port     int
	srv      atomic.Pointer[server.Server]
	nc       *nats.Conn
	js       jetstream.JetStream
	dbURL    string
	orderDB  *pgxpool.Pool
	invDB    *pgxpool.Pool
	orders   *order.Service
	inv      *inventory.Service
	fraudDB  *pgxpool.Pool
	fraud    *fraud.Service

	ackLost, natsRestarts, pgKills, dupPublishes atomic.Int64
	outages                                      atomic.Int64 // PostgreSQL outages (chaos.outage long)
	nudged                                       atomic.Int64 // orders the watchdog nudged
	reviewed                                     atomic.Int64 // orders the reviewer decided
	dbName                                       string       // the run's own database
	killed                                       atomic.Int64 // instances killed between commit and acks
	poisonSeqs                                   sync.Map     // stream sequence → kind
	poisonInBatch                                sync.Map     // stream sequences of poison events handed to a handler with others
}

func TestChaos(t *testing.T) {
	if testing.Short() {
		t.Skip("chaos suite")
	}
	w := newWorld(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var wg sync.WaitGroup
	run := func(f func(context.Context) error) {
		wg.Go(func() {
			if err := f(ctx); err != nil && !errors.Is(err, context.Canceled) {
				t.Errorf("component: %v", err)
			}
		})
	}
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	run(messaging.NewRelay(w.orderDB, w.js, w.orders.Schema, messaging.WithRelayLogger(log)).Run)
	run(messaging.NewRelay(w.invDB, w.js, w.inv.Schema, messaging.WithRelayLogger(log)).Run)
	run(messaging.NewRelay(w.fraudDB, w.js, w.fraud.Schema, messaging.WithRelayLogger(log)).Run)
	run(deadletter.NewCollector(w.js, log).Run)
	reserve, outcome := inventory.ReserveStockConsumer(), order.InventoryOutcomeConsumer()
	score, scored := fraud.ScoreOrderConsumer(), order.FraudScoreConsumer()
	reserve.DeadLetter, outcome.DeadLetter = deadletter.Filer(w.js), deadletter.Filer(w.js)
	score.DeadLetter, scored.DeadLetter = deadletter.Filer(w.js), deadletter.Filer(w.js)
	// A short retry budget, so that the outage (chaos.outage) outlasts it
	// as a 10-minute outage outlasts the default one (about 90 s).
	if *outageFlag > 0 {
		reserve.Retry, outcome.Retry, score.Retry, scored.Retry = chaosRetry, chaosRetry, chaosRetry, chaosRetry
	}
	// The fraud service scores every order; the order service applies the
	// scores: the third domain of the saga, under the same faults.
	run(func(ctx context.Context) error {
		return messaging.ConsumeBatch(ctx, w.js, score, w.ackLostAfterCommit(w.fraud.ScoreOrders), log)
	})
	run(func(ctx context.Context) error {
		return messaging.ConsumeBatch(ctx, w.js, scored, w.ackLostAfterCommit(w.orders.ApplyFraudScore), log)
	})
	// A person reviews the orders held for review, approving two in three.
	run(func(ctx context.Context) error {
		for {
			select {
			case <-ctx.Done():
				return nil
			case <-time.After(200 * time.Millisecond):
			}
			w.review(ctx)
		}
	})
	for _, name := range []string{"inventory-a", "inventory-b"} { // a group of two shares the partitions
		reserve := reserve
		reserve.Instance = name
		run(func(ctx context.Context) error {
			return messaging.ConsumeBatch(ctx, w.js, reserve, w.ackLostAfterCommit(w.inv.ReserveStock), log)
		})
	}
	run(func(ctx context.Context) error {
		return messaging.ConsumeBatch(ctx, w.js, outcome, w.ackLostAfterCommit(w.orders.ApplyInventoryOutcome), log)
	})
	// A third inventory instance, on a connection of its own, is killed
	// between a batch's commit and its acks: the batch comes back to the
	// others when its AckWait (the lease) runs out, and they skip its events.
	victimNC, err := nats.Connect(w.srv.Load().ClientURL(), nats.MaxReconnects(-1), nats.ReconnectWait(50*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(victimNC.Close)
	victimJS, _ := jetstream.New(victimNC)
	victim := reserve
	victim.Instance = "inventory-killed"
	vctx, kill := context.WithCancel(ctx)
	run(func(context.Context) error {
		_ = messaging.ConsumeBatch(vctx, victimJS, victim, w.killedAfterCommit(w.inv.ReserveStock, victimNC, kill), log)
		return nil // a killed process reports nothing
	})

	// The order service's watchdog, as in production but sooner: an
	// order PENDING for 20 s has lost an event (it then shows in nudged).
	run(func(ctx context.Context) error {
		for {
			select {
			case <-ctx.Done():
				return nil
			case <-time.After(time.Second):
			}
			if n, err := w.orders.RecoverStuckOrders(ctx, order.Watchdog{After: 20 * time.Second}); err == nil {
				w.nudged.Add(int64(n.Reapplied + n.Resent + n.Unresolved))
			}
		}
	})

	// Place the orders while faults happen, once they can be priced.
	w.awaitPrices(t)
	progress := atomic.Int64{}
	faultsDone := make(chan struct{})
	go w.injectFaults(ctx, &progress, faultsDone)
	accepted := w.placeOrders(ctx, &progress)
	<-faultsDone

	w.awaitQuiet(t, len(accepted))
	cancel()
	wg.Wait()
	w.check(t, accepted)
}

func newWorld(t *testing.T) *world {
	w := &world{t: t, storeDir: t.TempDir()}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	w.port = l.Addr().(*net.TCPAddr).Port
	l.Close()
	w.startNATS()
	t.Cleanup(func() { w.srv.Load().Shutdown() })
	w.nc, err = nats.Connect(w.srv.Load().ClientURL(), nats.MaxReconnects(-1), nats.ReconnectWait(50*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(w.nc.Close)
	w.js, _ = messaging.NewJetStream(w.nc)
	ctx := context.Background()
	// Atomic batches on, as shopbus dev runs: the backlog a NATS restart
	// leaves goes out in them.
	if err := messaging.EnsureStreams(ctx, w.js, messaging.StreamOptions{AtomicBatches: true}); err != nil {
		t.Fatal(err)
	}
	if err := deadletter.Ensure(ctx, w.js, deadletter.Options{}); err != nil {
		t.Fatal(err)
	}
	// An application name of our own, so that the fault injector terminates
	// only this run's connections.
	appName := "shopbus-chaos-" + testenv.Schema()
	// A database of its own, which the outage closes (ALLOW_CONNECTIONS)
	// without touching other tests'.
	u, err := url.Parse(testenv.DatabaseURL())
	if err != nil {
		t.Fatal(err)
	}
	w.dbName = testenv.Schema()
	u.Path = "/" + w.dbName
	q := u.Query()
	q.Set("application_name", appName)
	u.RawQuery = q.Encode()
	w.dbURL = u.String()
	orderSchema, invSchema := testenv.Schema(), testenv.Schema()
	w.orderDB, err = postgres.Open(ctx, w.dbURL, orderSchema, true, messaging.Migrations(), services.Migrations("order"))
	if err != nil {
		t.Fatal(err)
	}
	w.invDB, err = postgres.Open(ctx, w.dbURL, invSchema, true, messaging.Migrations(), services.Migrations("inventory"))
	if err != nil {
		t.Fatal(err)
	}
	fraudSchema := testenv.Schema()
	w.fraudDB, err = postgres.Open(ctx, w.dbURL, fraudSchema, true, messaging.Migrations(), services.Migrations("fraud"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		w.orderDB.Close()
		w.invDB.Close()
		w.fraudDB.Close()
		w.admin(func(conn *pgx.Conn) error {
			_, err := conn.Exec(context.Background(), "DROP DATABASE IF EXISTS "+pgx.Identifier{w.dbName}.Sanitize()+" WITH (FORCE)")
			return err
		})
	})
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	w.orders = order.New(servicekit.NewRuntime("order", w.orderDB, w.js, orderSchema, quiet))
	w.inv = inventory.New(servicekit.NewRuntime("inventory", w.invDB, w.js, invSchema, quiet))
	model, err := fraud.DefaultModel() // the committed model
	if err != nil {
		t.Fatal(err)
	}
	w.fraud = fraud.New(servicekit.NewRuntime("fraud", w.fraudDB, w.js, fraudSchema, quiet), model)
	stock, prices := map[string]int64{}, map[string]int64{}
	for i := range skus {
		stock[sku(i)], prices[sku(i)] = stockPerSKU(), unitPrice
	}
	if err := w.inv.SeedStock(ctx, stock); err != nil {
		t.Fatal(err)
	}
	if err := w.inv.SeedPrices(ctx, "EUR", prices); err != nil { // published once the relays run
		t.Fatal(err)
	}
	return w
}

// chaosRetry is the services' retry policy in the chaos suite: about 0.3 s
// of retries before a delivery is dead-lettered.
var chaosRetry = messaging.RetryPolicy{MaxDeliver: 5, Base: 20 * time.Millisecond, Cap: 160 * time.Millisecond}

// chaosCustomer is the customer of the i-th order: one in fifteen orders
// (so a customer places about fifteen, and the fraud model's history counts:
// most approve, some are held for review, a few declined).
func chaosCustomer(i int64) string {
	return fmt.Sprintf("6f1c2b3a-4d5e-4f60-8a7b-%012x", i%max(int64(*ordersFlag)/15, 1))
}

// review decides the orders held for review, as a person would: two in
// three approved, the rest rejected (which releases their stock).
func (w *world) review(ctx context.Context) {
	rows, err := w.orderDB.Query(ctx, `SELECT id::text FROM orders WHERE status = 'REVIEW' LIMIT 100`)
	if err != nil {
		return
	}
	ids, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return
	}
	for _, id := range ids {
		if _, err := w.orders.ReviewOrder(ctx, id, rand.N(3) > 0, "chaos reviewer"); err == nil {
			w.reviewed.Add(1)
		}
	}
}

// clientRetry is the back-off of the chaos suite's clients.
var clientRetry = messaging.RetryPolicy{Base: 20 * time.Millisecond, Cap: 500 * time.Millisecond}

func sku(i int) string { return fmt.Sprintf("CHAOS-%02d", i) }

// unitPrice is every SKU's price, in EUR cents.
const unitPrice = 500

// awaitPrices waits until the order service knows every SKU's price (the
// inventory.priced events reached its prices table), so orders can be
// placed.
func (w *world) awaitPrices(t *testing.T) {
	t.Helper()
	testenv.CheckFor(t, time.Minute, 20*time.Millisecond, func() error {
		var known int
		if err := w.orderDB.QueryRow(context.Background(), `SELECT count(*) FROM prices`).Scan(&known); err != nil {
			return err
		}
		if known < skus {
			return fmt.Errorf("the order service knows %d of %d prices", known, skus)
		}
		return nil
	})
}

func (w *world) startNATS() {
	s, err := natsembed.Start(natsembed.Options{StoreDir: w.storeDir, Port: w.port})
	if err != nil {
		w.t.Fatal(err)
	}
	w.srv.Store(s)
}

// ackLostAfterCommit wraps a handler: now and then the handler's effect
// commits but the consumer "dies" before its ack (the message is
// redelivered).
func (w *world) ackLostAfterCommit(h messaging.BatchHandler) messaging.BatchHandler {
	return func(ctx context.Context, batch []*messaging.Delivery) error {
		for _, d := range batch {
			if _, poison := w.poisonSeqs.Load(d.Metadata.Sequence.Stream); poison && d.Metadata.Stream == "ECOMMERCE_ORDER" && len(batch) > 1 {
				w.poisonInBatch.Store(d.Metadata.Sequence.Stream, true)
			}
		}
		if err := h(ctx, batch); err != nil {
			return err
		}
		if rand.Float64() < 0.03 {
			w.ackLost.Add(1)
			return errors.New("chaos: consumer killed between commit and ack")
		}
		return nil
	}
}

// killedAfterCommit wraps the handler of an instance that is killed after
// its first committed batch: its NATS connection closes before the acks
// and it stops, as a SIGKILL between commit and acks would leave it.
func (w *world) killedAfterCommit(h messaging.BatchHandler, nc *nats.Conn, kill context.CancelFunc) messaging.BatchHandler {
	return func(ctx context.Context, batch []*messaging.Delivery) error {
		if err := h(ctx, batch); err != nil {
			return err
		}
		if w.killed.Add(1) == 1 {
			nc.Close()
			kill()
		}
		return nil
	}
}

// placeOrders places the orders from concurrent clients, retrying each with
// its idempotency key until it is accepted, as a client of CreateOrder
// would; it also publishes the poison events.
func (w *world) placeOrders(ctx context.Context, progress *atomic.Int64) []string {
	var mu sync.Mutex
	var accepted []string
	next := atomic.Int64{}
	var wg sync.WaitGroup
	for c := range clientsCount {
		wg.Go(func() {
			for {
				i := next.Add(1)
				if i > int64(*ordersFlag) {
					return
				}
				req := &orderv1.CreateOrderRequest{
					IdempotencyKey: fmt.Sprintf("chaos-%d-%d", c, i), CustomerId: chaosCustomer(i), Currency: "EUR",
					Lines: []*orderv1.OrderLine{{Sku: sku(rand.N(skus)), Quantity: uint32(1 + rand.N(3)), UnitPriceMinor: unitPrice}},
				}
				if rand.N(4) == 0 { // some two-line orders
					second := sku(rand.N(skus))
					if second != req.Lines[0].Sku {
						req.Lines = append(req.Lines, &orderv1.OrderLine{Sku: second, Quantity: 1}) // at the current price
					}
				}
				// A client retries with back-off for as long as an outage
				// may last (the same idempotency key: one order).
				var id string
				for attempt, giveUp := 1, time.Now().Add(time.Minute); ; attempt++ {
					o, _, err := w.orders.CreateOrder(ctx, req)
					if err == nil {
						id = o.GetOrderId()
						mu.Lock()
						accepted = append(accepted, id)
						mu.Unlock()
						break
					}
					if time.Now().After(giveUp) || ctx.Err() != nil {
						w.t.Errorf("CreateOrder kept failing: %v", err)
						return
					}
					time.Sleep(clientRetry.Delay(attempt))
				}
				progress.Add(1)
				if rand.Float64() < *poisonRate {
					w.publishPoison(ctx, id)
				}
			}
		})
	}
	wg.Wait()
	return accepted
}

// publishPoison publishes an event that can never be handled straight onto
// order.created, with its own Nats-Msg-Id, retrying while NATS restarts.
// Most kinds are refused before the handler. A "wrong event" (a valid
// inventory.adjusted) reaches it: keyed by orderID, just placed, it lands in
// that order's partition as the order's own event does, so usually in the
// same batch, which must commit without it.
func (w *world) publishPoison(ctx context.Context, orderID string) {
	kinds := []string{"garbage", "invalid payload", "unknown version", "lying type header", "wrong event", "wrong event"}
	kind := kinds[rand.N(len(kinds))]
	if w.poisonCount() < 3 { // enough wrong events to find one in a batch
		kind = "wrong event"
	}
	valid := &ordereventsv2.OrderCreated{
		OrderId: "0193a5e2-7c1d-7b3e-9f4a-2d6c8e0f1a2b", Customer: &ordereventsv2.Customer{CustomerId: "6f1c2b3a-4d5e-4f60-8a7b-9c0d1e2f3a4b"},
		Lines:     []*ordereventsv2.OrderLine{{Sku: "CHAOS-00", Quantity: 1, UnitPrice: &ordereventsv2.Money{Currency: "EUR", AmountMinor: 1}}},
		Total:     &ordereventsv2.Money{Currency: "EUR", AmountMinor: 1},
		CreatedAt: timestamppb.Now(),
	}
	var msg proto.Message = valid
	if kind == "wrong event" {
		msg = &inventoryeventsv1.InventoryAdjusted{OrderId: orderID, AdjustedAt: timestamppb.Now(),
			Reservations: []*inventoryeventsv1.Reservation{{Sku: "CHAOS-00", Quantity: 1}}}
	}
	spec, _ := event.SpecOf(msg)
	env, err := event.New(ctx, msg, event.WithSource(spec.Producer)) // poison for what it is, not for its source
	if err != nil {
		w.t.Error(err)
		return
	}
	h := event.Headers(env)
	var data []byte
	switch kind {
	case "garbage":
		data = []byte("\x00\x01 not an envelope")
	case "invalid payload":
		env.Payload = []byte{0x0a, 0x03, 'b', 'a', 'd'} // order_id "bad"
	case "unknown version":
		env.Version = 7
		h.Set(event.HeaderVersion, "7")
	case "lying type header":
		h.Set(event.HeaderType, "inventory.adjusted")
	}
	if data == nil {
		data, _ = event.Encode(env)
	}
	for range 100 {
		ack, err := w.js.PublishMsg(ctx, &nats.Msg{Subject: "ecommerce.order.created.v2." + env.GetPartitionKey(), Data: data, Header: h})
		if err == nil {
			w.poisonSeqs.Store(ack.Sequence, kind)
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
	w.t.Error("could not publish a poison event")
}

// injectFaults restarts NATS twice, terminates this run's PostgreSQL
// connections now and then, and re-publishes some OrderCreated events under
// new Nats-Msg-Ids, until the orders are placed and each fault happened.
func (w *world) injectFaults(ctx context.Context, progress *atomic.Int64, done chan<- struct{}) {
	defer close(done)
	total := int64(*ordersFlag)
	restartsAt := []int64{total / 3, 2 * total / 3}
	tick := time.NewTicker(150 * time.Millisecond)
	defer tick.Stop()
	// Until the orders are placed and every kind of fault has happened at
	// least once: placing is fast enough to end before the last restart or
	// any termination otherwise, and the pipeline is still busy after it.
	for ctx.Err() == nil && (progress.Load() < total || len(restartsAt) > 0 || w.pgKills.Load() == 0 || (*outageFlag > 0 && w.outages.Load() == 0)) {
		<-tick.C
		if len(restartsAt) > 0 && progress.Load() >= restartsAt[0] {
			restartsAt = restartsAt[1:]
			w.srv.Load().Shutdown()
			w.srv.Load().WaitForShutdown()
			time.Sleep(300 * time.Millisecond)
			w.startNATS()
			w.natsRestarts.Add(1)
		}
		if *outageFlag > 0 && w.outages.Load() == 0 && progress.Load() >= total/2 {
			w.outage(*outageFlag)
		}
		switch rand.N(4) {
		case 0:
			w.terminateBackends()
		case 1:
			w.republishSomeOrders(ctx)
		}
	}
}

// outage makes PostgreSQL unreachable for d: this run's connections are
// terminated as fast as they are made. The consumers must pause rather
// than spend their deliveries: the DLQ check fails on any dead letter but
// the poison events.
func (w *world) outage(d time.Duration) {
	w.outages.Add(1)
	// Events reach the consumers during the outage: copies of orders
	// already handled, published while the database is closed.
	copies := w.handledOrders(context.Background(), 20)
	db := pgx.Identifier{w.dbName}.Sanitize()
	w.admin(func(conn *pgx.Conn) error {
		_, err := conn.Exec(context.Background(), "ALTER DATABASE "+db+" ALLOW_CONNECTIONS false")
		return err
	})
	w.terminateBackends()
	w.publishCopies(context.Background(), copies, ":chaos-outage")
	time.Sleep(d) // the outage's length: nothing to wait for
	w.admin(func(conn *pgx.Conn) error {
		_, err := conn.Exec(context.Background(), "ALTER DATABASE "+db+" ALLOW_CONNECTIONS true")
		return err
	})
}

// admin runs f on a connection to the server's maintenance database
// (postgres), which exists on a fresh server, unlike DATABASE_URL's.
func (w *world) admin(f func(*pgx.Conn) error) {
	conn, err := pgx.Connect(context.Background(), testenv.AdminURL())
	if err != nil {
		w.t.Errorf("admin connection: %v", err)
		return
	}
	defer conn.Close(context.Background())
	if err := f(conn); err != nil {
		w.t.Errorf("admin: %v", err)
	}
}

func (w *world) terminateBackends() {
	conn, err := pgx.Connect(context.Background(), testenv.AdminURL())
	if err != nil {
		return
	}
	defer conn.Close(context.Background())
	cfg, _ := pgx.ParseConfig(w.dbURL)
	var n int64
	_ = conn.QueryRow(context.Background(), `SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity
		WHERE application_name = $1 AND pid <> pg_backend_pid()`, cfg.RuntimeParams["application_name"]).Scan(&n)
	w.pgKills.Add(n)
}

// republishSomeOrders publishes a few already-published OrderCreated
// envelopes again under new Nats-Msg-Ids: the duplicate window cannot catch
// them, processed_events must.
func (w *world) republishSomeOrders(ctx context.Context) {
	w.publishCopies(ctx, w.handledOrders(ctx, 3), ":chaos-dup")
}

// published is an outbox row already published: its subject and envelope.
type published struct {
	subject string
	data    []byte
}

// handledOrders returns up to n published OrderCreated rows, at random
// (none when the database does not answer).
func (w *world) handledOrders(ctx context.Context, n int) []published {
	rows, err := w.orderDB.Query(ctx, `SELECT subject, envelope FROM outbox WHERE published_at IS NOT NULL ORDER BY random() LIMIT $1`, n)
	if err != nil {
		return nil
	}
	defer rows.Close()
	var out []published
	for rows.Next() {
		var p published
		if rows.Scan(&p.subject, &p.data) == nil {
			out = append(out, p)
		}
	}
	return out
}

// publishCopies publishes each again, under its Nats-Msg-Id plus suffix.
func (w *world) publishCopies(ctx context.Context, copies []published, suffix string) {
	for _, c := range copies {
		env, err := event.Decode(c.data)
		if err != nil {
			continue
		}
		h := event.Headers(env)
		h.Set(nats.MsgIdHdr, env.GetId()+suffix)
		if _, err := w.js.PublishMsg(ctx, &nats.Msg{Subject: c.subject, Data: c.data, Header: h}); err == nil {
			w.dupPublishes.Add(1)
		}
	}
}

// awaitQuiet waits until every order has a decision, every consumer and
// outbox is drained, and the DLQ holds as many dead letters as poison events
// were published. The last is eventual: the server publishes a
// MSG_TERMINATED advisory after the Term that empties the consumer, and the
// collector needs a moment to file it. Should dead letters still be missing
// 30 s after everything else drained, it returns and check names them.
func (w *world) awaitQuiet(t *testing.T, accepted int) {
	deadline := time.Now().Add(5 * time.Minute)
	var drainedAt time.Time
	for {
		var pending, unpublished int64
		_ = w.orderDB.QueryRow(context.Background(), `SELECT (SELECT count(*) FROM orders WHERE status IN ('PENDING', 'REVIEW')),
			(SELECT count(*) FROM outbox WHERE published_at IS NULL)`).Scan(&pending, &unpublished)
		var invUnpublished, fraudUnpublished int64
		_ = w.invDB.QueryRow(context.Background(), `SELECT count(*) FROM outbox WHERE published_at IS NULL`).Scan(&invUnpublished)
		_ = w.fraudDB.QueryRow(context.Background(), `SELECT count(*) FROM outbox WHERE published_at IS NULL`).Scan(&fraudUnpublished)
		invUnpublished += fraudUnpublished
		drained := pending == 0 && unpublished == 0 && invUnpublished == 0 &&
			w.consumerIdle("ECOMMERCE_ORDER", "inventory-reserve-stock") &&
			w.consumerIdle("ECOMMERCE_ORDER", "fraud-score-order") &&
			w.consumerIdle("ECOMMERCE_INVENTORY", "order-apply-inventory-outcome") &&
			w.consumerIdle("ML_FRAUD", "order-apply-fraud-score") &&
			w.consumerIdle(deadletter.AdvisoryStream, "deadletter-collector")
		switch {
		case !drained:
			drainedAt = time.Time{}
		case w.deadLetters() >= w.poisonCount():
			return
		case drainedAt.IsZero():
			drainedAt = time.Now()
		case time.Since(drainedAt) > 30*time.Second:
			return
		}
		if time.Now().After(deadline) {
			var decisions int64
			_ = w.invDB.QueryRow(context.Background(), `SELECT count(*) FROM decisions`).Scan(&decisions)
			groups, err := messaging.ListGroups(context.Background(), w.js)
			t.Logf("inventory decisions: %d; consumer groups (%v):", decisions, err)
			for _, g := range groups {
				t.Logf("  %s: members %v", g.Name, g.Members)
				for _, p := range g.Partitions {
					t.Logf("    %s owner %q pending %d ack pending %d redelivered %d ack floor %d missing %v err %v",
						p.Consumer, p.Owner, p.Pending, p.AckPending, p.Redelivered, p.AckFloor, p.Missing, p.Err)
				}
			}
			t.Fatalf("not quiet after 5 minutes: %d orders PENDING or in REVIEW, %d + %d outbox rows unpublished", pending, unpublished, invUnpublished)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func (w *world) deadLetters() int {
	dls, _, err := deadletter.NewStore(w.js).List(context.Background(), deadletter.Filter{}, 0, 10_000)
	if err != nil {
		return -1
	}
	return len(dls)
}

// poisonCount is how many dead letters the poison events make: one per
// consumer of order.created (inventory's and fraud's) each.
func (w *world) poisonCount() int {
	n := 0
	w.poisonSeqs.Range(func(any, any) bool { n++; return true })
	return 2 * n
}

func (w *world) consumerIdle(stream, durable string) bool {
	ctx := context.Background()
	names := []string{durable}
	if n, err := messaging.Partitions(ctx, w.js, stream); err == nil && stream != deadletter.AdvisoryStream {
		names = names[:0]
		for p := range n {
			names = append(names, messaging.PartitionDurable(durable, p))
		}
	}
	for _, name := range names {
		c, err := w.js.Consumer(ctx, stream, name)
		if err != nil {
			return false
		}
		info, err := c.Info(ctx)
		if err != nil || info.NumPending != 0 || info.NumAckPending != 0 {
			return false
		}
	}
	return true
}

// check verifies the invariants and prints the summary line.
func (w *world) check(t *testing.T, accepted []string) {
	ctx := context.Background()
	var orders, confirmed, rejected, pending int64
	if err := w.orderDB.QueryRow(ctx, `SELECT count(*), count(*) FILTER (WHERE status = 'CONFIRMED'),
		count(*) FILTER (WHERE status = 'REJECTED'), count(*) FILTER (WHERE status IN ('PENDING', 'REVIEW')) FROM orders`).
		Scan(&orders, &confirmed, &rejected, &pending); err != nil {
		t.Fatal(err)
	}
	confirmedUnits := map[string]int64{}
	rows, err := w.orderDB.Query(ctx, `SELECT l.sku, sum(l.quantity) FROM orders o JOIN order_lines l ON l.order_id = o.id
		WHERE o.status = 'CONFIRMED' GROUP BY l.sku`)
	if err != nil {
		t.Fatal(err)
	}
	for rows.Next() {
		var s string
		var n int64
		if err := rows.Scan(&s, &n); err != nil {
			t.Fatal(err)
		}
		confirmedUnits[s] = n
	}
	rows.Close()
	var oversold, negative int64
	rows, err = w.invDB.Query(ctx, `SELECT sku, on_hand, reserved FROM stock`)
	if err != nil {
		t.Fatal(err)
	}
	for rows.Next() {
		var s string
		var onHand, reserved int64
		if err := rows.Scan(&s, &onHand, &reserved); err != nil {
			t.Fatal(err)
		}
		if onHand < 0 {
			negative++
		}
		if onHand+reserved != stockPerSKU() || reserved != confirmedUnits[s] {
			oversold++
			t.Errorf("%s: on hand %d + reserved %d != %d, or reserved != %d units of confirmed orders", s, onHand, reserved, stockPerSKU(), confirmedUnits[s])
		}
	}
	rows.Close()
	var decisions, outcomes, released, releasedOrders, processedInv, processedOutcomes, processedScores, rejections int64
	_ = w.invDB.QueryRow(ctx, `SELECT (SELECT count(*) FROM decisions),
		(SELECT count(*) FROM outbox WHERE subject LIKE 'ecommerce.inventory.adjusted.%' OR subject LIKE 'ecommerce.inventory.rejected.%'),
		(SELECT count(*) FROM outbox WHERE subject LIKE 'ecommerce.inventory.released.%'),
		(SELECT count(DISTINCT substring(subject from '[^.]+$')) FROM outbox WHERE subject LIKE 'ecommerce.inventory.released.%'),
		(SELECT count(*) FROM processed_events)`).Scan(&decisions, &outcomes, &released, &releasedOrders, &processedInv)
	_ = w.orderDB.QueryRow(ctx, `SELECT (SELECT count(*) FROM processed_events WHERE consumer = 'order-apply-inventory-outcome'),
		(SELECT count(*) FROM processed_events WHERE consumer = 'order-apply-fraud-score'),
		(SELECT count(*) FROM outbox WHERE subject LIKE 'ecommerce.order.rejected.%')`).Scan(&processedOutcomes, &processedScores, &rejections)
	processedOutcomes -= skus + released // the prices, each applied once, and the releases
	var scores, scoredEvents, declined, confirmedDeclined, heldStock int64
	_ = w.fraudDB.QueryRow(ctx, `SELECT (SELECT count(*) FROM scores), (SELECT count(*) FROM outbox),
		(SELECT count(*) FROM scores WHERE decision = 'DECLINE')`).Scan(&scores, &scoredEvents, &declined)
	// Across the three schemas (one database): no order the model declined
	// is CONFIRMED, and no stock is held for an order that is not.
	ord, inv, frd := pgx.Identifier{w.orders.Schema}.Sanitize(), pgx.Identifier{w.inv.Schema}.Sanitize(), pgx.Identifier{w.fraud.Schema}.Sanitize()
	_ = w.orderDB.QueryRow(ctx, `SELECT (SELECT count(*) FROM `+ord+`.orders o JOIN `+frd+`.scores s ON s.order_id = o.id
			WHERE s.decision = 'DECLINE' AND o.status = 'CONFIRMED'),
		(SELECT count(DISTINCT r.order_id) FROM `+inv+`.reservations r JOIN `+ord+`.orders o ON o.id = r.order_id WHERE o.status <> 'CONFIRMED')`).
		Scan(&confirmedDeclined, &heldStock)
	if confirmedDeclined != 0 {
		t.Errorf("%d CONFIRMED orders have a DECLINE score", confirmedDeclined)
	}
	if heldStock != 0 || released != rejections || releasedOrders != released {
		t.Errorf("compensation: %d orders not CONFIRMED still hold stock; %d order.rejected, %d inventory.released for %d orders: want one release per rejection",
			heldStock, rejections, released, releasedOrders)
	}

	// Lost: accepted but not stored; stuck: stored but never decided.
	lost := max(int64(len(accepted))-orders, 0)
	doubled := (decisions - orders) + (outcomes - orders) + (processedOutcomes - orders) + (processedScores - orders) + (scores - orders) + (scoredEvents - orders) + (released - releasedOrders)
	if lost != 0 || pending != 0 || int64(len(accepted)) != orders {
		t.Errorf("accepted %d, stored %d, decided %d, pending or in review %d", len(accepted), orders, confirmed+rejected, pending)
	}
	if doubled != 0 {
		t.Errorf("doubled: %d decisions, %d outcome events, %d outcomes applied, %d scores, %d order.scored, %d scores applied for %d orders",
			decisions, outcomes, processedOutcomes, scores, scoredEvents, processedScores, orders)
	}

	// The DLQ holds every poison event once per consumer, and nothing else.
	poison := map[uint64]string{}
	w.poisonSeqs.Range(func(k, v any) bool { poison[k.(uint64)] = v.(string); return true })
	dls, _, err := deadletter.NewStore(w.js).List(ctx, deadletter.Filter{}, 0, 10_000)
	if err != nil {
		t.Fatal(err)
	}
	seen := map[uint64]int{}
	for _, dl := range dls {
		if dl.GetOriginalStream() != "ECOMMERCE_ORDER" || poison[dl.GetOriginalSequence()] == "" {
			t.Errorf("unexpected dead letter: %v", dl)
			continue
		}
		seen[dl.GetOriginalSequence()]++
	}
	for seq, kind := range poison {
		if seen[seq] != 2 {
			t.Errorf("poison event #%d (%s) is in the DLQ %d times, want twice (inventory's and fraud's consumers)", seq, kind, seen[seq])
		}
	}
	if w.natsRestarts.Load() < 2 || w.pgKills.Load() == 0 {
		t.Errorf("faults missing: %d NATS restarts (want 2), %d PostgreSQL connections terminated (want some)", w.natsRestarts.Load(), w.pgKills.Load())
	}
	if w.killed.Load() == 0 {
		t.Error("the instance to kill between commit and acks never committed a batch")
	}
	inBatch := 0
	w.poisonInBatch.Range(func(any, any) bool { inBatch++; return true })
	if inBatch == 0 {
		t.Error("no poison event reached a handler inside a batch of several")
	}
	faults := w.natsRestarts.Load() + w.pgKills.Load() + w.ackLost.Load() + w.dupPublishes.Load() + int64(len(poison)) + min(w.killed.Load(), 1)
	fmt.Printf("chaos: orders=%d confirmed=%d rejected=%d faults=%d (nats_restarts=%d pg_terminated=%d pg_outage=%v ack_lost=%d dup_publishes=%d poison=%d poison_in_batch=%d killed_after_commit=%d) declined=%d reviewed=%d released=%d nudged=%d dlq=%d batched=%d lost=%d stuck=%d doubled=%d oversold=%d negative=%d\n",
		len(accepted), confirmed, rejected, faults, w.natsRestarts.Load(), w.pgKills.Load(), *outageFlag*time.Duration(w.outages.Load()), w.ackLost.Load(), w.dupPublishes.Load(),
		len(poison), inBatch, min(w.killed.Load(), 1), declined, w.reviewed.Load(), released, w.nudged.Load(), len(dls), w.batched(), lost, pending, doubled, oversold, negative)
}

// batched is how many events of the order flow's streams a relay stored in
// atomic batches (reported: it depends on how large the backlogs grew).
func (w *world) batched() int {
	n := 0
	for _, name := range []string{"ECOMMERCE_ORDER", "ECOMMERCE_INVENTORY", "ML_FRAUD"} {
		n += testenv.InAtomicBatches(testenv.StreamMessages(w.t, w.js, name))
	}
	return n
}
