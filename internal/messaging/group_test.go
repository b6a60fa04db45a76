package messaging_test

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"google.golang.org/protobuf/types/known/timestamppb"

	telemetryv1 "github.com/shopbus/shopbus/gen/go/iot/telemetry/v1"
	"github.com/shopbus/shopbus/internal/event"
	"github.com/shopbus/shopbus/internal/messaging"
	"github.com/shopbus/shopbus/internal/testenv"
)

var (
	// 20,000 keeps `make test` (with -race) within its time on a loaded
	// two-core machine; docs/benchmarks.md records runs of 50,000.
	groupEvents = flag.Int("groups.events", 20_000, "events published by the consumer-group tests")
	groupKeys   = flag.Int("groups.keys", 1_000, "partition keys of the consumer-group tests")
)

// The consumer-group workload: telemetry.raw events of many devices (the
// partition key is the device id), each device's events numbered by their
// sequence field, consumed by instances of one group whose handler has a
// PostgreSQL effect per event. The effect records, per key, whether an
// event arrived after a later one of its key (an order violation).
type workload struct {
	t          testing.TB
	srv        *server.Server
	js         jetstream.JetStream
	pool       *pgxpool.Pool
	cfg        messaging.ConsumerConfig
	keys       []string
	log        *slog.Logger
	failEvery  int          // every failEvery-th event fails its first delivery (0: never)
	handled    atomic.Int64 // first effects
	deliveries atomic.Int64 // handler calls

	mu        sync.Mutex
	instances map[string]*instance
	trace     []handling // who handled which partition when, when tracing
	tracing   bool
}

type handling struct {
	instance  string
	partition int
	at        time.Time
}

// instance is one member of the group, with a NATS connection of its own.
type instance struct {
	name   string
	nc     *nats.Conn
	cancel context.CancelFunc
	done   chan error
}

const workloadStream = "IOT_TELEMETRY"

func newWorkload(t testing.TB, strategy messaging.Strategy, partitions int) *workload {
	t.Helper()
	srv, js := testenv.NATS(t)
	ctx := context.Background()
	// The test stream, with the partition count under test.
	if err := js.DeleteStream(ctx, workloadStream); err != nil {
		t.Fatal(err)
	}
	if err := messaging.EnsureStream(ctx, js, workloadStream, []string{"iot.telemetry.raw.v1"},
		messaging.StreamOptions{Partitions: partitions}); err != nil {
		t.Fatal(err)
	}
	pool, _ := testenv.Postgres(t)
	if _, err := pool.Exec(ctx, `
		CREATE TABLE key_state (key text PRIMARY KEY, last_seq bigint NOT NULL DEFAULT 0);
		CREATE TABLE effects (key text NOT NULL, seq bigint NOT NULL, instance text NOT NULL,
			violation boolean NOT NULL, at timestamptz NOT NULL DEFAULT clock_timestamp())`); err != nil {
		t.Fatal(err)
	}
	w := &workload{
		t: t, srv: srv, js: js, pool: pool, instances: map[string]*instance{},
		log: slog.New(slog.NewTextHandler(io.Discard, nil)),
		cfg: messaging.ConsumerConfig{Stream: workloadStream, Durable: "test-telemetry",
			Subjects: []string{"iot.telemetry.raw"}, Strategy: strategy, Workers: 1},
	}
	if strategy == messaging.RoundRobin {
		w.cfg.Workers = 4
	}
	for i := range *groupKeys {
		w.keys = append(w.keys, uuid.NewSHA1(uuid.NameSpaceOID, []byte(strconv.Itoa(i))).String())
	}
	if _, err := pool.Exec(ctx, `INSERT INTO key_state (key) SELECT unnest($1::text[])`, w.keys); err != nil {
		t.Fatal(err)
	}
	return w
}

// handle is the group's handler: once per event, in one transaction, it
// records the effect and whether it came after a later event of its key.
func (w *workload) handle(name string) messaging.Handler {
	return func(ctx context.Context, d *messaging.Delivery) error {
		w.deliveries.Add(1)
		e := d.Event.(*telemetryv1.TelemetryRaw)
		seq := int64(e.GetSequence())
		fail := w.failEvery > 0 && d.Metadata.NumDelivered == 1 && int(d.Metadata.Sequence.Stream)%w.failEvery == 0
		if fail && seq%2 == 0 {
			return errors.New("injected: fails before its effect")
		}
		first, err := messaging.Once(ctx, w.pool, w.cfg.Durable, d.Envelope.GetId(), func(tx pgx.Tx) error {
			var last int64
			if err := tx.QueryRow(ctx, `WITH old AS (SELECT last_seq FROM key_state WHERE key = $1 FOR UPDATE)
				UPDATE key_state k SET last_seq = GREATEST(k.last_seq, $2) FROM old WHERE k.key = $1
				RETURNING old.last_seq`, e.GetDeviceId(), seq).Scan(&last); err != nil {
				return err
			}
			_, err := tx.Exec(ctx, `INSERT INTO effects (key, seq, instance, violation) VALUES ($1, $2, $3, $4)`,
				e.GetDeviceId(), seq, name, last > seq)
			return err
		})
		if err != nil {
			return err
		}
		if first {
			w.handled.Add(1)
			if w.tracing {
				tokens := strings.Split(d.Subject, ".")
				p, _ := strconv.Atoi(tokens[len(tokens)-2])
				w.mu.Lock()
				w.trace = append(w.trace, handling{name, p, time.Now()})
				w.mu.Unlock()
			}
		}
		if fail {
			return errors.New("injected: the ack is lost after commit")
		}
		return nil
	}
}

// start adds an instance to the group.
func (w *workload) start(name string) *instance {
	w.t.Helper()
	nc, err := nats.Connect(w.srv.ClientURL(), nats.MaxReconnects(-1))
	if err != nil {
		w.t.Fatal(err)
	}
	js, err := jetstream.New(nc)
	if err != nil {
		w.t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	in := &instance{name: name, nc: nc, cancel: cancel, done: make(chan error, 1)}
	cfg := w.cfg
	cfg.Instance = name
	go func() { in.done <- messaging.Consume(ctx, js, cfg, w.handle(name), w.log.With("instance", name)) }()
	w.mu.Lock()
	w.instances[name] = in
	w.mu.Unlock()
	return in
}

// kill drops the instance's connection without a goodbye, the way SIGKILL
// would: its leases expire instead of being released.
func (w *workload) kill(in *instance) {
	in.nc.Close()
	in.cancel()
	<-in.done
	w.forget(in)
}

// stop stops the instance gracefully: it finishes the events in hand and
// releases its partitions.
func (w *workload) stop(in *instance) {
	in.cancel()
	if err := <-in.done; !errors.Is(err, context.Canceled) {
		w.t.Errorf("instance %s: Consume returned %v", in.name, err)
	}
	in.nc.Close()
	w.forget(in)
}

func (w *workload) forget(in *instance) {
	w.mu.Lock()
	delete(w.instances, in.name)
	w.mu.Unlock()
}

func (w *workload) stopAll() {
	w.mu.Lock()
	all := make([]*instance, 0, len(w.instances))
	for _, in := range w.instances {
		all = append(all, in)
	}
	w.mu.Unlock()
	for _, in := range all {
		w.stop(in)
	}
}

// publish publishes n events in order from one connection (so the stream
// keeps the order of each key), and returns the last stream sequence. Keys
// are drawn at random, half of the events from a tenth of the keys (hot
// keys), and each key's events are numbered 1, 2, 3 ...
func (w *workload) publish(ctx context.Context, n int) uint64 {
	w.t.Helper()
	spec, err := event.SpecOf(&telemetryv1.TelemetryRaw{})
	if err != nil {
		w.t.Fatal(err)
	}
	var last atomic.Uint64
	var futures []jetstream.PubAckFuture
	flush := func() {
		for _, f := range futures {
			select {
			case ack := <-f.Ok():
				if ack.Sequence > last.Load() {
					last.Store(ack.Sequence)
				}
			case err := <-f.Err():
				w.t.Fatalf("publish: %v", err)
			case <-time.After(30 * time.Second):
				w.t.Fatal("publish: no ack in 30s")
			}
		}
		futures = futures[:0]
	}
	now := timestamppb.Now()
	rng := rand.New(rand.NewPCG(1, 2))
	seqs := make([]uint64, len(w.keys))
	for i := range n {
		k := rng.IntN(len(w.keys))
		if rng.IntN(2) == 0 {
			k = rng.IntN(max(len(w.keys)/10, 1))
		}
		key := w.keys[k]
		seqs[k]++
		env, err := event.New(ctx, &telemetryv1.TelemetryRaw{
			DeviceId: key, Sequence: seqs[k], MeasuredAt: now,
			Readings: []*telemetryv1.Reading{{Metric: "temperature", Value: float64(i), Unit: "Cel"}},
		}, event.WithSource("shopbus/telemetry"))
		if err != nil {
			w.t.Fatal(err)
		}
		b, err := event.Encode(env)
		if err != nil {
			w.t.Fatal(err)
		}
		f, err := w.js.PublishMsgAsync(&nats.Msg{Subject: spec.SubjectFor(key), Data: b, Header: event.Headers(env)},
			jetstream.WithMsgID(env.GetId()))
		if err != nil {
			w.t.Fatalf("publish: %v", err)
		}
		if futures = append(futures, f); len(futures) == 1000 {
			flush()
		}
	}
	flush()
	return last.Load()
}

// awaitHandled waits until n events have had their effect, or fails after
// timeout.
func (w *workload) awaitHandled(n int, timeout time.Duration) {
	w.t.Helper()
	testenv.CheckFor(w.t, timeout, 50*time.Millisecond, func() error {
		if got := w.handled.Load(); got < int64(n) {
			return fmt.Errorf("%d of %d events handled", got, n)
		}
		return nil
	})
}

type outcome struct {
	effects, distinct, violations, lost int
}

// check reads the effects: every event once, and how many came out of order.
func (w *workload) check(n int) outcome {
	w.t.Helper()
	var o outcome
	if err := w.pool.QueryRow(context.Background(), `SELECT count(*), count(DISTINCT (key, seq)),
		count(*) FILTER (WHERE violation) FROM effects`).Scan(&o.effects, &o.distinct, &o.violations); err != nil {
		w.t.Fatal(err)
	}
	o.lost = n - o.distinct
	return o
}

// TestKeyBasedGroup: three instances of a key-based group handle 20,000
// events (-groups.events) of 1,000 keys while one is killed, one is added, one stops
// gracefully and another is added; 1 in 500 events fails its first delivery
// (half before their effect, half after it, so the ack is lost). Nothing is
// lost, nothing takes effect twice, and no key sees its events out of order.
func TestKeyBasedGroup(t *testing.T) {
	t.Parallel()
	w := newWorkload(t, messaging.KeyBased, 8)
	w.failEvery = 500
	o := runChurn(t, w)
	if o.lost != 0 || o.effects != o.distinct || o.violations != 0 {
		t.Errorf("key-based: lost %d, double effects %d, order violations %d; want none", o.lost, o.effects-o.distinct, o.violations)
	}
}

// TestRoundRobinGroup: the same workload in round-robin mode loses nothing
// and takes no effect twice, but gives no order: it counts the violations.
func TestRoundRobinGroup(t *testing.T) {
	t.Parallel()
	w := newWorkload(t, messaging.RoundRobin, 8)
	w.failEvery = 500
	o := runChurn(t, w)
	if o.lost != 0 || o.effects != o.distinct {
		t.Errorf("round-robin: lost %d, double effects %d; want none", o.lost, o.effects-o.distinct)
	}
	t.Logf("round-robin: %d per-key order violations in %d events (expected: it gives no order)", o.violations, o.distinct)
}

// runChurn runs the workload while instances come and go, and returns what
// the effects show.
func runChurn(t *testing.T, w *workload) outcome {
	n := *groupEvents
	w.start("a")
	b, c := w.start("b"), w.start("c")
	defer w.stopAll()
	ctx := context.Background()
	published := make(chan struct{})
	go func() {
		defer close(published)
		w.publish(ctx, n)
	}()
	w.awaitHandled(n/5, 4*time.Minute)
	w.kill(b)
	w.awaitHandled(2*n/5, 4*time.Minute)
	w.start("d")
	w.awaitHandled(3*n/5, 4*time.Minute)
	w.stop(c)
	w.awaitHandled(4*n/5, 4*time.Minute)
	w.start("e")
	<-published
	w.awaitHandled(n, 5*time.Minute)
	o := w.check(n)
	t.Logf("%s: %d events, %d deliveries, %d effects, %d order violations", w.cfg.Strategy, n, w.deliveries.Load(), o.effects, o.violations)
	return o
}

// TestTakeover: two instances share 8 partitions under a steady load; one is
// killed. Its leases expire (the watch shows the expiry marker) and the
// survivor takes its partitions over. The time from the expiry to the first
// event the survivor handles on a partition it took over is logged; the test
// fails only if no takeover happens within 30s.
func TestTakeover(t *testing.T) {
	t.Parallel()
	var all []time.Duration
	for range *takeoverRuns {
		d := measureTakeover(t)
		all = append(all, d)
		t.Logf("takeover: %v after the lease expired", d.Round(time.Millisecond))
	}
	t.Logf("takeover over %d runs: median %v, max %v", len(all), median(all).Round(time.Millisecond), slices.Max(all).Round(time.Millisecond))
}

var takeoverRuns = flag.Int("groups.takeovers", 1, "takeovers TestTakeover measures")

func measureTakeover(t *testing.T) time.Duration {
	w := newWorkload(t, messaging.KeyBased, 8)
	w.tracing = true
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	w.start("a")
	b := w.start("b")
	defer w.stopAll()
	// Wait until both own half of the partitions.
	var kv jetstream.KeyValue
	testenv.CheckFor(t, 30*time.Second, 20*time.Millisecond, func() (err error) {
		kv, err = w.js.KeyValue(ctx, messaging.GroupBucket(w.cfg.Durable))
		return err
	})
	owned := func() map[string][]int {
		out := map[string][]int{}
		for p := range 8 {
			if e, err := kv.Get(ctx, "partitions."+strconv.Itoa(p)); err == nil {
				owner := strings.Split(strings.Split(string(e.Value()), `"owner":"`)[1], `"`)[0]
				out[owner] = append(out[owner], p)
			}
		}
		return out
	}
	testenv.CheckFor(t, 30*time.Second, 20*time.Millisecond, func() error {
		if o := owned(); len(o["a"]) != 4 || len(o["b"]) != 4 {
			return fmt.Errorf("partitions %v, want 4 each", o)
		}
		return nil
	})
	taken := owned()["b"]
	// A steady load on every key.
	go func() {
		for i := 0; ctx.Err() == nil; i++ {
			w.publishOne(ctx, i)
			time.Sleep(2 * time.Millisecond)
		}
	}()
	w.awaitHandled(200, 30*time.Second)
	watch, err := kv.Watch(ctx, "members.b")
	if err != nil {
		t.Fatal(err)
	}
	defer watch.Stop()
	w.kill(b)
	var expired time.Time
	for e := range watch.Updates() {
		if e != nil && e.Operation() != jetstream.KeyValuePut {
			expired = time.Now()
			break
		}
	}
	var took time.Time
	testenv.CheckFor(t, 30*time.Second, 10*time.Millisecond, func() error {
		w.mu.Lock()
		defer w.mu.Unlock()
		for _, h := range w.trace {
			if h.instance == "a" && slices.Contains(taken, h.partition) && h.at.After(expired) {
				took = h.at
				return nil
			}
		}
		return errors.New("no partition of the killed instance taken over")
	})
	return took.Sub(expired)
}

// publishOne publishes the i-th event of an endless stream over every key.
func (w *workload) publishOne(ctx context.Context, i int) {
	key := w.keys[i%len(w.keys)]
	env, err := event.New(ctx, &telemetryv1.TelemetryRaw{
		DeviceId: key, Sequence: uint64(i/len(w.keys) + 1), MeasuredAt: timestamppb.Now(),
		Readings: []*telemetryv1.Reading{{Metric: "temperature", Value: 1, Unit: "Cel"}},
	}, event.WithSource("shopbus/telemetry"))
	if err != nil {
		return
	}
	b, _ := event.Encode(env)
	_, _ = w.js.PublishMsg(ctx, &nats.Msg{Subject: "iot.telemetry.raw.v1." + key, Data: b, Header: event.Headers(env)})
}

// median returns the median of ds.
func median(ds []time.Duration) time.Duration {
	s := slices.Clone(ds)
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	return s[len(s)/2]
}

// BenchmarkGroups measures events/s of one group, by strategy, instances
// and partitions, in one run: each case publishes -groups.bench.events
// events first, then starts its instances and times the group until every
// event has had its PostgreSQL effect. Run with -benchtime=1x:
//
//	go test -run '^$' -bench Groups -benchtime=1x ./internal/messaging/
func BenchmarkGroups(b *testing.B) {
	for _, strategy := range []messaging.Strategy{messaging.RoundRobin, messaging.KeyBased} {
		for _, instances := range []int{1, 2, 3} {
			for _, partitions := range []int{1, 8, 32} {
				name := fmt.Sprintf("%s/instances=%d/partitions=%d", strategy, instances, partitions)
				b.Run(name, func(b *testing.B) {
					var rate float64
					for range b.N {
						rate = benchGroup(b, strategy, instances, partitions)
					}
					b.ReportMetric(rate, "events/s")
				})
			}
		}
	}
}

var benchEvents = flag.Int("groups.bench.events", 10_000, "events per case of BenchmarkGroups")

func benchGroup(b *testing.B, strategy messaging.Strategy, instances, partitions int) float64 {
	b.StopTimer()
	w := newWorkload(b, strategy, partitions)
	n := *benchEvents
	w.publish(context.Background(), n)
	b.StartTimer()
	start := time.Now()
	for i := range instances {
		w.start(string(rune('a' + i)))
	}
	w.awaitHandled(n, 10*time.Minute)
	elapsed := time.Since(start)
	b.StopTimer()
	w.stopAll()
	return float64(n) / elapsed.Seconds()
}
