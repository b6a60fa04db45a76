package messaging_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"google.golang.org/protobuf/types/known/timestamppb"

	ordereventsv2 "github.com/shopbus/shopbus/gen/go/ecommerce/order/v2"
	eventv1 "github.com/shopbus/shopbus/gen/go/shopbus/event/v1"
	"github.com/shopbus/shopbus/internal/event"
	"github.com/shopbus/shopbus/internal/messaging"
	"github.com/shopbus/shopbus/internal/testenv"
)

// batchRig is a batch consumer of order.created over 2 partitions whose
// effect is a row per event in PostgreSQL, with the sequence (the line's
// quantity) each key's events were published in.
type batchRig struct {
	t        *testing.T
	js       jetstream.JetStream
	pool     *pgxpool.Pool
	cfg      messaging.ConsumerConfig
	keys     []string
	seqs     map[string]uint32
	events   []*eventv1.Envelope
	maxBatch atomic.Int64
	calls    atomic.Int64

	mu          sync.Mutex
	deadLetters []string // envelope ids
}

const batchDurable = "test-batch"

func newBatchRig(t *testing.T, strategy messaging.Strategy) *batchRig {
	t.Helper()
	_, js := testenv.NATSWith(t, messaging.StreamOptions{Partitions: 2})
	pool, _ := testenv.Postgres(t)
	if _, err := pool.Exec(context.Background(), `CREATE TABLE effects (
		event_id uuid NOT NULL, key text NOT NULL, seq int NOT NULL, out_of_order boolean NOT NULL)`); err != nil {
		t.Fatal(err)
	}
	r := &batchRig{t: t, js: js, pool: pool, seqs: map[string]uint32{}}
	for range 5 {
		r.keys = append(r.keys, uuid.NewString())
	}
	r.cfg = messaging.ConsumerConfig{
		Stream: "ECOMMERCE_ORDER", Durable: batchDurable, Subjects: []string{"ecommerce.order.created"},
		Strategy: strategy, BatchSize: 8, BatchWait: 20 * time.Millisecond, Lease: time.Second,
		Retry: messaging.RetryPolicy{MaxDeliver: 5, Base: 10 * time.Millisecond, Cap: 50 * time.Millisecond},
		DeadLetter: func(_ context.Context, msg jetstream.Msg, _ string) error {
			env, err := event.Decode(msg.Data())
			if err != nil {
				return err
			}
			r.mu.Lock()
			defer r.mu.Unlock()
			r.deadLetters = append(r.deadLetters, env.GetId())
			return nil
		},
	}
	return r
}

// publish publishes n events over the rig's keys, numbering each key's.
func (r *batchRig) publish(n int) {
	r.t.Helper()
	r.publishWith(n, nil)
}

// publishWith is publish with edit, when not nil, applied to each envelope
// before it is encoded.
func (r *batchRig) publishWith(n int, edit func(*eventv1.Envelope)) {
	r.t.Helper()
	for i := range n {
		key := r.keys[i%len(r.keys)]
		r.seqs[key]++
		eur := &ordereventsv2.Money{Currency: "EUR", AmountMinor: 1}
		env, err := event.New(context.Background(), &ordereventsv2.OrderCreated{
			OrderId:   key,
			Customer:  &ordereventsv2.Customer{CustomerId: "6f1c2b3a-4d5e-4f60-8a7b-9c0d1e2f3a4b"},
			Lines:     []*ordereventsv2.OrderLine{{Sku: "MUG-001", Quantity: r.seqs[key], UnitPrice: eur}},
			Total:     eur,
			CreatedAt: timestamppb.Now(),
		}, event.WithSource("shopbus/order")) // its declared producer
		if err != nil {
			r.t.Fatal(err)
		}
		if edit != nil {
			edit(env)
		}
		b, _ := event.Encode(env)
		if _, err := r.js.PublishMsg(context.Background(), &nats.Msg{Subject: "ecommerce.order.created.v2." + key, Data: b, Header: event.Headers(env)},
			jetstream.WithMsgID(env.GetId())); err != nil {
			r.t.Fatal(err)
		}
		r.events = append(r.events, env)
	}
}

// effect is the handler's effect for one event: a row, marked when an
// earlier event of its key comes after a later one.
func effect(ctx context.Context, tx pgx.Tx, d *messaging.Delivery) error {
	o := d.Event.(*ordereventsv2.OrderCreated)
	_, err := tx.Exec(ctx, `INSERT INTO effects (event_id, key, seq, out_of_order)
		VALUES ($1, $2, $3, EXISTS (SELECT 1 FROM effects WHERE key = $2 AND seq > $3))`,
		d.Envelope.GetId(), o.GetOrderId(), o.GetLines()[0].GetQuantity())
	return err
}

// handler is the rig's batch handler: before the effects, before(batch)
// may fail the batch; fn may fail one event.
func (r *batchRig) handler(before func([]*messaging.Delivery) error, fn func(ctx context.Context, tx pgx.Tx, d *messaging.Delivery) error) messaging.BatchHandler {
	if fn == nil {
		fn = effect
	}
	return func(ctx context.Context, batch []*messaging.Delivery) error {
		r.calls.Add(1)
		for n := int64(len(batch)); ; {
			m := r.maxBatch.Load()
			if n <= m || r.maxBatch.CompareAndSwap(m, n) {
				break
			}
		}
		if before != nil {
			if err := before(batch); err != nil {
				return err
			}
		}
		return messaging.OnceBatch(ctx, r.pool, batchDurable, batch, fn)
	}
}

// start runs an instance of the consumer; stop stops it and waits.
func (r *batchRig) start(h messaging.BatchHandler) (stop func()) {
	ctx, cancel := context.WithCancel(context.Background())
	wait := r.run(ctx, h)
	stop = func() { cancel(); wait() }
	r.t.Cleanup(stop)
	return stop
}

// run runs an instance of the consumer until ctx is done; wait waits for
// it to return.
func (r *batchRig) run(ctx context.Context, h messaging.BatchHandler) (wait func()) {
	done := make(chan error, 1)
	go func() {
		done <- messaging.ConsumeBatch(ctx, r.js, r.cfg, h, slog.New(slog.NewTextHandler(io.Discard, nil)))
	}()
	var once sync.Once
	return func() {
		once.Do(func() {
			if err := <-done; err != nil && !errors.Is(err, context.Canceled) {
				r.t.Errorf("ConsumeBatch: %v", err)
			}
		})
	}
}

// awaitEffects waits until n effects are committed and every event is
// settled, then checks each has exactly one effect, in order per key.
func (r *batchRig) awaitEffects(n int) {
	r.t.Helper()
	ctx := context.Background()
	testenv.CheckFor(r.t, 30*time.Second, 20*time.Millisecond, func() error {
		var got int
		if err := r.pool.QueryRow(ctx, "SELECT count(*) FROM effects").Scan(&got); err != nil {
			return err
		}
		if got < n {
			return fmt.Errorf("%d of %d effects", got, n)
		}
		return nil
	})
	testenv.WaitSettled(r.t, r.js, r.cfg.Stream, r.cfg.Durable, uint64(len(r.events)))
	var effects, distinct, outOfOrder int
	if err := r.pool.QueryRow(ctx, `SELECT count(*), count(DISTINCT event_id), count(*) FILTER (WHERE out_of_order) FROM effects`).
		Scan(&effects, &distinct, &outOfOrder); err != nil {
		r.t.Fatal(err)
	}
	if effects != n || distinct != n {
		r.t.Errorf("%d effects of %d events, want %d, one each", effects, distinct, n)
	}
	if r.cfg.Strategy == messaging.KeyBased && outOfOrder != 0 {
		r.t.Errorf("%d effects out of order within their key", outOfOrder)
	}
}

// TestBatchOnceEach: events handled in batches take effect once each, in
// order per key, including a batch whose first transaction committed but
// whose acks were lost (the handler fails after commit) and events whose
// effects committed before a crash (processed already).
func TestBatchOnceEach(t *testing.T) {
	for _, strategy := range []messaging.Strategy{messaging.KeyBased, messaging.RoundRobin} {
		t.Run(string(strategy), func(t *testing.T) {
			t.Parallel()
			r := newBatchRig(t, strategy)
			r.publish(60)
			// A crash between commit and acks: five events have their
			// effects already.
			var early []*messaging.Delivery
			for _, env := range r.events[:5] {
				payload, _, err := event.Latest(env)
				if err != nil {
					t.Fatal(err)
				}
				early = append(early, &messaging.Delivery{Envelope: env, Event: payload})
			}
			if err := messaging.OnceBatch(context.Background(), r.pool, batchDurable, early, effect); err != nil {
				t.Fatal(err)
			}
			var lostAck atomic.Bool
			h := r.handler(nil, nil)
			r.start(func(ctx context.Context, batch []*messaging.Delivery) error {
				if err := h(ctx, batch); err != nil {
					return err
				}
				if lostAck.CompareAndSwap(false, true) {
					return errors.New("injected: the acks are lost after commit")
				}
				return nil
			})
			r.awaitEffects(60)
			if r.maxBatch.Load() < 2 {
				t.Errorf("largest batch %d: the events were not batched", r.maxBatch.Load())
			}
			if len(r.deadLetters) != 0 {
				t.Errorf("dead letters %v", r.deadLetters)
			}
		})
	}
}

// TestBatchUpperCaseEventIDs: an envelope id in capitals (a valid UUID,
// which PostgreSQL returns in lower case) is claimed and takes effect once,
// like any other.
func TestBatchUpperCaseEventIDs(t *testing.T) {
	t.Parallel()
	r := newBatchRig(t, messaging.KeyBased)
	r.publishWith(6, func(env *eventv1.Envelope) { env.Id = strings.ToUpper(env.GetId()) })
	r.start(r.handler(nil, nil))
	r.awaitEffects(6)
}

// TestBatchPoison: an event that can never succeed is dead-lettered alone;
// the rest of its batch commits.
func TestBatchPoison(t *testing.T) {
	t.Parallel()
	r := newBatchRig(t, messaging.KeyBased)
	r.publish(30)
	poison := r.events[7].GetId()
	r.start(r.handler(nil, func(ctx context.Context, tx pgx.Tx, d *messaging.Delivery) error {
		if d.Envelope.GetId() == poison {
			return messaging.Permanent(errors.New("injected: a rule that can never pass"))
		}
		return effect(ctx, tx, d)
	}))
	r.awaitEffects(29)
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.deadLetters) != 1 || r.deadLetters[0] != poison {
		t.Errorf("dead letters %v, want only %s", r.deadLetters, poison)
	}
}

// TestBatchPanic: a handler that panics on one event does not crash the
// process: the batch is handled one event at a time, the others take
// effect, and the one that panics is dead-lettered once it has used its
// deliveries.
func TestBatchPanic(t *testing.T) {
	t.Parallel()
	r := newBatchRig(t, messaging.KeyBased)
	r.publish(30)
	bad := r.events[7].GetId()
	r.start(r.handler(nil, func(ctx context.Context, tx pgx.Tx, d *messaging.Delivery) error {
		if d.Envelope.GetId() == bad {
			var m map[string]int
			m["boom"]++ // a nil map: a handler's bug
		}
		return effect(ctx, tx, d)
	}))
	r.awaitEffects(29)
	testenv.CheckFor(t, 30*time.Second, 20*time.Millisecond, func() error {
		r.mu.Lock()
		defer r.mu.Unlock()
		if len(r.deadLetters) != 1 || r.deadLetters[0] != bad {
			return fmt.Errorf("dead letters %v, want only %s", r.deadLetters, bad)
		}
		return nil
	})
}

// TestBatchPanicKeepsKeyOrder: a batch whose handler panics is handled
// one event at a time, and an event that fails again there, transiently,
// is retried in place, not handed back behind the later events of its key.
func TestBatchPanicKeepsKeyOrder(t *testing.T) {
	t.Parallel()
	r := newBatchRig(t, messaging.KeyBased)
	r.publish(30)
	first := r.events[0].GetId()
	var panics atomic.Int64
	r.start(r.handler(func(batch []*messaging.Delivery) error {
		if batch[0].Envelope.GetId() == first && panics.Add(1) <= 2 {
			panic("injected: a bug that goes away")
		}
		return nil
	}, nil))
	r.awaitEffects(30)
	if panics.Load() < 2 {
		t.Errorf("the handler panicked %d times, want at least 2 (the batch, then its first event alone)", panics.Load())
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.deadLetters) != 0 {
		t.Errorf("dead letters %v, want none: the failure went away", r.deadLetters)
	}
}

// TestBatchPausesWhilePostgresIsDown: failures that are not the batch's
// fault, however many, dead-letter nothing. PostgreSQL unreachable for
// longer than the retry budget (here four times MaxDeliver attempts): the
// batch waits in hand, paused, and takes effect once the database is back
// (issue 12: "pause instead of burn"). A transaction that keeps losing to
// concurrent ones (deadlocks, serialization failures) more often than
// MaxDeliver: the batch is run again until it wins.
func TestBatchPausesWhilePostgresIsDown(t *testing.T) {
	for _, c := range []struct {
		name     string
		failures int // times MaxDeliver
		err      func(n int64) error
	}{
		{"outage", 4, func(int64) error {
			return &net.OpError{Op: "dial", Net: "tcp", Err: errors.New("injected: connection refused")}
		}},
		{"conflicts", 2, func(n int64) error {
			if n%2 == 0 {
				return fmt.Errorf("lock stock: %w", &pgconn.PgError{Code: "40P01", Message: "deadlock detected"})
			}
			return fmt.Errorf("update: %w", &pgconn.PgError{Code: "40001", Message: "could not serialize access"})
		}},
	} {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			r := newBatchRig(t, messaging.KeyBased)
			r.publish(30)
			var calls atomic.Int64
			failures := int64(c.failures * r.cfg.Retry.MaxDeliver)
			r.start(r.handler(func([]*messaging.Delivery) error {
				if n := calls.Add(1); n <= failures {
					return c.err(n)
				}
				return nil
			}, nil))
			r.awaitEffects(30)
			if calls.Load() <= failures {
				t.Fatalf("%d calls, want more than the %d failures", calls.Load(), failures)
			}
			r.mu.Lock()
			defer r.mu.Unlock()
			if len(r.deadLetters) != 0 {
				t.Errorf("dead letters %v after %s, want none", r.deadLetters, c.name)
			}
		})
	}
}

// TestBatchTooSlowForItsTime: a batch that runs out of its HandleTimeout
// while PostgreSQL answers (its work is too slow for it, not the database
// away) is handled one event at a time, and the events that fit in the
// time take effect, once each and in order; an event that alone still runs
// out of its time is retried MaxDeliver times and dead-lettered, instead
// of pausing its partition for good as an outage would. That event is slow
// on its first delivery only: JetStream may deliver it again while it is in
// hand (a copy that waited in the iterator, unkept-alive, past the rig's 1 s
// AckWait behind a batch handled one event at a time), and that copy must
// neither take effect, after the later events of its key, nor be filed
// again.
func TestBatchTooSlowForItsTime(t *testing.T) {
	t.Parallel()
	r := newBatchRig(t, messaging.KeyBased)
	r.cfg.HandleTimeout = 500 * time.Millisecond
	r.cfg.Ping = r.pool.Ping
	r.publish(30)
	huge := r.events[10].GetId() // the third of its key
	var hugeCalls atomic.Int64
	r.start(r.handler(nil, func(ctx context.Context, tx pgx.Tx, d *messaging.Delivery) error {
		// 0.1 s each: a batch of 8 takes 0.8 s, beyond its 0.5 s.
		secs := 0.1
		if d.Envelope.GetId() == huge && d.Metadata.NumDelivered == 1 {
			hugeCalls.Add(1)
			secs = 30
		}
		if _, err := tx.Exec(ctx, `SELECT pg_sleep($1)`, secs); err != nil {
			return fmt.Errorf("sleep: %w", err)
		}
		return effect(ctx, tx, d)
	}))
	r.awaitEffects(29)
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.deadLetters) != 1 || r.deadLetters[0] != huge {
		t.Errorf("dead letters %v, want the one event too slow alone, %s, once", r.deadLetters, huge)
	}
	if got := hugeCalls.Load(); got < int64(r.cfg.Retry.MaxDeliver) {
		t.Errorf("the event too slow alone was tried %d times, want at least MaxDeliver %d", got, r.cfg.Retry.MaxDeliver)
	}
}

// TestBatchConflictRetriedAtOnce: a batch that lost once to a concurrent
// transaction runs again at once, not after the retry policy's delay (an
// hour here, so waiting for it fails the test).
func TestBatchConflictRetriedAtOnce(t *testing.T) {
	t.Parallel()
	r := newBatchRig(t, messaging.KeyBased)
	r.cfg.Retry = messaging.RetryPolicy{MaxDeliver: 5, Base: time.Hour, Cap: time.Hour}
	r.publish(30)
	var lost atomic.Bool
	r.start(r.handler(func([]*messaging.Delivery) error {
		if lost.CompareAndSwap(false, true) {
			return fmt.Errorf("lock stock: %w", &pgconn.PgError{Code: "40P01", Message: "deadlock detected"})
		}
		return nil
	}, nil))
	r.awaitEffects(30)
}

// TestBatchTransient: a batch that fails twice (the database away, say) is
// retried as a whole with the policy's delay and then takes effect once,
// in order; nothing is dead-lettered.
func TestBatchTransient(t *testing.T) {
	t.Parallel()
	r := newBatchRig(t, messaging.KeyBased)
	r.publish(30)
	var failures atomic.Int64
	r.start(r.handler(func([]*messaging.Delivery) error {
		if failures.Add(1) <= 2 {
			return errors.New("injected: connection refused")
		}
		return nil
	}, nil))
	r.awaitEffects(30)
	if len(r.deadLetters) != 0 {
		t.Errorf("dead letters %v", r.deadLetters)
	}
}

// TestBatchRetriesExhausted: a batch that keeps failing is dead-lettered,
// every event of it, after MaxDeliver attempts.
func TestBatchRetriesExhausted(t *testing.T) {
	t.Parallel()
	r := newBatchRig(t, messaging.RoundRobin)
	r.cfg.Workers = 1
	r.publish(3)
	r.start(r.handler(func([]*messaging.Delivery) error { return errors.New("injected: always down") }, nil))
	testenv.CheckFor(t, 30*time.Second, 20*time.Millisecond, func() error {
		r.mu.Lock()
		defer r.mu.Unlock()
		if len(r.deadLetters) != 3 {
			return fmt.Errorf("%d dead letters", len(r.deadLetters))
		}
		return nil
	})
	testenv.WaitSettled(t, r.js, r.cfg.Stream, r.cfg.Durable, 3)
	if got := r.calls.Load(); got != int64(r.cfg.Retry.MaxDeliver) {
		t.Errorf("%d attempts, want MaxDeliver %d", got, r.cfg.Retry.MaxDeliver)
	}
}

// TestBatchStop: an instance stopped with a batch in hand finishes it (its
// effects commit and it is acked); one stopped while a batch waits to be
// retried hands it back at once (not after the retry's delay), and another
// instance completes it. Every event takes effect once, and each key's
// events in stream order, although JetStream redelivers a handed-back or
// stranded event as its Nak delay or AckWait runs out, not in stream order:
// the successor restarts the partition after its last settled event
// (takeOver).
func TestBatchStop(t *testing.T) {
	t.Parallel()
	r := newBatchRig(t, messaging.KeyBased)
	r.publish(10)
	inHand, release := make(chan struct{}), make(chan struct{})
	var first atomic.Bool
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	wait := r.run(ctx, r.handler(func([]*messaging.Delivery) error {
		if first.CompareAndSwap(false, true) {
			close(inHand)
			<-release
		}
		return nil
	}, nil))
	<-inHand
	cancel() // the stop begins with the batch in hand
	close(release)
	wait()
	var n int
	if err := r.pool.QueryRow(context.Background(), "SELECT count(*) FROM effects").Scan(&n); err != nil || n == 0 {
		t.Fatalf("after a stop with a batch in hand: %d effects, %v; want the batch committed", n, err)
	}
	// Stopped in a retry's wait: handed back at once, completed by
	// another long before the retry's delay (minutes) would have let it.
	r.cfg.Retry.Base, r.cfg.Retry.Cap = 10*time.Minute, 10*time.Minute
	r.publish(10)
	failing := make(chan struct{})
	var once sync.Once
	stop := r.start(r.handler(func([]*messaging.Delivery) error {
		once.Do(func() { close(failing) })
		return errors.New("injected: down")
	}, nil))
	<-failing
	stop()
	r.start(r.handler(nil, nil))
	r.awaitEffects(20)
}

// TestTakeOverKeepsOrder: a partition's previous owner died holding a
// key's four events; one was handed back with a delay and the others at
// once, so JetStream would redeliver the second, third and fourth before
// the first. The new owner starts the partition again after its last
// settled event, and the key's events take effect once each, in order.
func TestTakeOverKeepsOrder(t *testing.T) {
	t.Parallel()
	r := newBatchRig(t, messaging.KeyBased)
	r.keys = r.keys[:1]
	// An owner settles the key's first event, and stops.
	r.publish(1)
	stop := r.start(r.handler(nil, nil))
	r.awaitEffects(1)
	stop()
	r.publish(4)

	held := r.holdAsDeadOwner(4)
	if err := held[0].NakWithDelay(3 * time.Second); err != nil {
		t.Fatal(err)
	}
	for _, msg := range held[1:] {
		if err := msg.Nak(); err != nil {
			t.Fatal(err)
		}
	}
	if err := r.js.Conn().Flush(); err != nil {
		t.Fatal(err)
	}

	r.start(r.handler(nil, nil))
	r.awaitEffects(5)
}

// TestTakeOverKeepsDeliveryCounts: when the owners of a partition have
// settled nothing since its durable was made (or last reset), a new owner
// does not reset it, so JetStream's delivery count, which MaxDeliver
// counts, goes on: an event that kills every owner it reaches is
// dead-lettered in the end instead of going round the group forever.
func TestTakeOverKeepsDeliveryCounts(t *testing.T) {
	t.Parallel()
	r := newBatchRig(t, messaging.KeyBased)
	r.keys = r.keys[:1]
	r.declareDurables()
	r.publish(1)
	r.holdAsDeadOwner(1) // delivered once, never settled
	var delivered atomic.Uint64
	r.start(r.handler(func(batch []*messaging.Delivery) error {
		delivered.Store(batch[0].Metadata.NumDelivered)
		return nil
	}, nil))
	r.awaitEffects(1)
	if n := delivered.Load(); n != 2 {
		t.Errorf("the new owner got the event as delivery %d, want 2 (the count kept)", n)
	}
}

// declareDurables runs an instance of the consumer until the durables of
// both partitions exist, and stops it.
func (r *batchRig) declareDurables() {
	r.t.Helper()
	stop := r.start(r.handler(nil, nil))
	defer stop()
	testenv.CheckFor(r.t, 10*time.Second, 10*time.Millisecond, func() error {
		for p := range 2 {
			if _, err := r.js.Consumer(context.Background(), r.cfg.Stream, messaging.PartitionDurable(batchDurable, p)); err != nil {
				return fmt.Errorf("partition %d: %w", p, err)
			}
		}
		return nil
	})
}

// holdAsDeadOwner fetches the n events waiting in the partitions, as an
// owner that then dies without settling them, and returns them.
func (r *batchRig) holdAsDeadOwner(n int) []jetstream.Msg {
	r.t.Helper()
	var held []jetstream.Msg
	for p := range 2 {
		cons, err := r.js.Consumer(context.Background(), r.cfg.Stream, messaging.PartitionDurable(batchDurable, p))
		if err != nil {
			r.t.Fatal(err)
		}
		info, err := cons.Info(context.Background())
		if err != nil {
			r.t.Fatal(err)
		}
		if info.NumPending == 0 {
			continue
		}
		// Through the partition's owner group, as its owner would: the
		// fetch returns once it has every event waiting.
		batch, err := cons.Fetch(int(info.NumPending), jetstream.FetchMaxWait(10*time.Second), jetstream.FetchPriorityGroup(messaging.OwnerGroup))
		if err != nil {
			r.t.Fatal(err)
		}
		for msg := range batch.Messages() {
			held = append(held, msg)
		}
	}
	if len(held) != n {
		r.t.Fatalf("the dead owner holds %d events, want %d", len(held), n)
	}
	return held
}

// TestConsumerConfigRefused: a consumer that cannot run is an error at
// start, naming what is wrong, before NATS is touched.
func TestConsumerConfigRefused(t *testing.T) {
	t.Parallel()
	ok := messaging.ConsumerConfig{Stream: "S", Durable: "d", Subjects: []string{"a.b.c"}, Strategy: messaging.KeyBased}
	for _, tc := range []struct {
		name  string
		batch bool
		edit  func(*messaging.ConsumerConfig)
		want  string
	}{
		{"no strategy", false, func(c *messaging.ConsumerConfig) { c.Strategy = "" }, "Strategy"},
		{"negative workers", false, func(c *messaging.ConsumerConfig) { c.Workers = -1 }, "negative"},
		{"batch size without a batch handler", false, func(c *messaging.ConsumerConfig) { c.BatchSize = 10 }, "needs ConsumeBatch"},
		{"batch too large", true, func(c *messaging.ConsumerConfig) { c.BatchSize = messaging.MaxBatchSize + 1 }, "BatchSize"},
		{"negative batch wait", true, func(c *messaging.ConsumerConfig) { c.BatchWait = -time.Second }, "BatchWait"},
		{"key-based with more in flight than a batch", true, func(c *messaging.ConsumerConfig) { c.BatchSize, c.MaxAckPending = 10, 20 }, "MaxAckPending"},
		{"key-based with workers", false, func(c *messaging.ConsumerConfig) { c.Workers = 2 }, "Workers"},
		{"subject with a version", false, func(c *messaging.ConsumerConfig) { c.Subjects = []string{"a.b.c.v1"} }, "type subject"},
	} {
		cfg := ok
		tc.edit(&cfg)
		log := slog.New(slog.DiscardHandler)
		var err error
		if tc.batch {
			err = messaging.ConsumeBatch(context.Background(), nil, cfg, nil, log)
		} else {
			err = messaging.Consume(context.Background(), nil, cfg, nil, log)
		}
		if !errors.Is(err, messaging.ErrBadConfig) || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: %v, want ErrBadConfig naming %s", tc.name, err, tc.want)
		}
	}
}
