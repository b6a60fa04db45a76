package messaging_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"google.golang.org/protobuf/types/known/timestamppb"

	ordereventsv2 "github.com/shopbus/shopbus/gen/go/ecommerce/order/v2"
	eventv1 "github.com/shopbus/shopbus/gen/go/shopbus/event/v1"
	"github.com/shopbus/shopbus/internal/event"
	"github.com/shopbus/shopbus/internal/messaging"
	"github.com/shopbus/shopbus/internal/testenv"
)

func TestRetryPolicyDelay(t *testing.T) {
	p := messaging.RetryPolicy{MaxDeliver: 10, Base: 250 * time.Millisecond, Cap: 30 * time.Second}
	for _, tc := range []struct {
		policy   messaging.RetryPolicy
		attempt  int
		min, max time.Duration
	}{
		{p, 1, 125 * time.Millisecond, 250 * time.Millisecond},
		{p, 2, 250 * time.Millisecond, 500 * time.Millisecond},
		{p, 8, 15 * time.Second, 30 * time.Second}, // 32s capped
		{p, 1000, 15 * time.Second, 30 * time.Second},
		{p, 0, 125 * time.Millisecond, 250 * time.Millisecond},
		{messaging.RetryPolicy{}, 1, 125 * time.Millisecond, 250 * time.Millisecond}, // defaults
		{messaging.RetryPolicy{Base: time.Hour}, 40, 30 * time.Minute, time.Hour},    // no overflow
		{messaging.RetryPolicy{Base: 20 * time.Millisecond, Cap: 100 * time.Millisecond}, 5, 50 * time.Millisecond, 100 * time.Millisecond},
	} {
		for range 50 {
			if d := tc.policy.Delay(tc.attempt); d < tc.min || d > tc.max {
				t.Errorf("%+v.Delay(%d) = %v, want within [%v, %v]", tc.policy, tc.attempt, d, tc.min, tc.max)
				break
			}
		}
	}
}

func TestIsPermanent(t *testing.T) {
	for _, tc := range []struct {
		err  error
		want bool
	}{
		{errors.New("connection refused"), false},
		{context.DeadlineExceeded, false},
		{fmt.Errorf("decode: %w", event.ErrMalformed), true},
		{fmt.Errorf("%w: bad field", event.ErrInvalid), true},
		{event.ErrUnknownType, true},
		{messaging.Permanent(errors.New("order does not exist")), true},
		{fmt.Errorf("wrapped: %w", messaging.Permanent(errors.New("x"))), true},
		{fmt.Errorf("insert: %w", &pgconn.PgError{Code: "22021", Message: "invalid byte sequence for encoding \"UTF8\": 0x00"}), true},
		{fmt.Errorf("upsert: %w", &pgconn.PgError{Code: "22003", Message: "value out of range: overflow"}), true},
		{fmt.Errorf("insert: %w", &pgconn.PgError{Code: "40001", Message: "could not serialize access"}), false},
	} {
		if got := messaging.IsPermanent(tc.err); got != tc.want {
			t.Errorf("IsPermanent(%v) = %v, want %v", tc.err, got, tc.want)
		}
	}
	if messaging.Permanent(nil) != nil {
		t.Error("Permanent(nil) != nil")
	}
}

// TestRelaysKeepOrder: while one relay's pass holds the oldest row (here a
// transaction standing in for it), another relay publishes nothing behind
// it; once the holder is done, the rows go out in the order they were
// written. Publishing the second row first would put a key's later event
// before its earlier one.
func TestRelaysKeepOrder(t *testing.T) {
	t.Parallel()
	_, js := testenv.NATS(t)
	pool, schema := testenv.Postgres(t)
	ctx := context.Background()
	relay := messaging.NewRelay(pool, js, schema, messaging.WithRelayLogger(slog.New(slog.NewTextHandler(io.Discard, nil))))
	var ids []string
	for range 2 {
		env := newOrderCreated(t)
		if err := pgx.BeginFunc(ctx, pool, func(tx pgx.Tx) error { return messaging.Enqueue(ctx, tx, env) }); err != nil {
			t.Fatal(err)
		}
		ids = append(ids, env.GetId())
	}

	holder, err := pool.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer holder.Rollback(ctx) //nolint:errcheck // rolled back below; a second rollback does nothing
	var holderPID int32
	if err := holder.QueryRow(ctx, "SELECT pg_backend_pid()").Scan(&holderPID); err != nil {
		t.Fatal(err)
	}
	if _, err := holder.Exec(ctx, "SELECT id FROM outbox WHERE id = $1 FOR UPDATE", ids[0]); err != nil {
		t.Fatal(err)
	}
	type result struct {
		n   int
		err error
	}
	done := make(chan result, 1)
	go func() {
		n, err := relay.PublishBatch(ctx)
		done <- result{n, err}
	}()
	testenv.CheckFor(t, 10*time.Second, 10*time.Millisecond, func() error {
		select {
		case r := <-done:
			done <- r
			return nil // it did not wait: the checks below say what it published
		default:
		}
		var waiting int
		if err := pool.QueryRow(ctx, "SELECT count(*) FROM pg_stat_activity WHERE $1::int = ANY(pg_blocking_pids(pid))", holderPID).Scan(&waiting); err != nil {
			return err
		}
		if waiting == 0 {
			return errors.New("the relay is not waiting for the held row yet")
		}
		return nil
	})
	s, err := js.Stream(ctx, "ECOMMERCE_ORDER")
	if err != nil {
		t.Fatal(err)
	}
	if info, err := s.Info(ctx); err != nil || info.State.Msgs != 0 {
		t.Fatalf("while the oldest row is held: %d messages in the stream (%v), want none", info.State.Msgs, err)
	}
	if err := holder.Rollback(ctx); err != nil {
		t.Fatal(err)
	}
	if r := <-done; r.err != nil || r.n != 2 {
		t.Fatalf("PublishBatch = %d, %v; want both rows", r.n, r.err)
	}
	for seq, id := range ids {
		msg, err := s.GetMsg(ctx, uint64(seq+1))
		if err != nil || msg.Header.Get("Nats-Msg-Id") != id {
			t.Errorf("stream message %d: %v, %v; want row %d (%s)", seq+1, msg, err, seq+1, id)
		}
	}
}

// TestRelayKeepsKeyOrderWhenAPublishFails: when JetStream refuses a row (here
// one larger than the stream takes, until the stream is changed), the rows
// of the same key behind it wait in the outbox: none is stored ahead of it,
// and once it goes through they follow it in the order they were written.
// Without that, the pipelined publish of the second row would be stored
// first, and the retried first row would land behind it. Rows of other keys
// go on meanwhile.
func TestRelayKeepsKeyOrderWhenAPublishFails(t *testing.T) {
	t.Parallel()
	_, js := testenv.NATS(t)
	pool, schema := testenv.Postgres(t)
	ctx := context.Background()
	relay := messaging.NewRelay(pool, js, schema, messaging.WithRelayLogger(slog.New(slog.NewTextHandler(io.Discard, nil))))
	s, err := js.Stream(ctx, "ECOMMERCE_ORDER")
	if err != nil {
		t.Fatal(err)
	}
	setMaxMsgSize := func(n int32) {
		t.Helper()
		info, err := s.Info(ctx)
		if err != nil {
			t.Fatal(err)
		}
		cfg := info.Config
		cfg.MaxMsgSize = n
		if _, err := js.UpdateStream(ctx, cfg); err != nil {
			t.Fatal(err)
		}
	}
	setMaxMsgSize(2048)

	// Two events of one order (one partition key): a large one, then a small one.
	eur := &ordereventsv2.Money{Currency: "EUR", AmountMinor: 1}
	large := &ordereventsv2.OrderCreated{
		OrderId:   "0193a5e2-7c1d-7b3e-9f4a-2d6c8e0f1a2b",
		Customer:  &ordereventsv2.Customer{CustomerId: "6f1c2b3a-4d5e-4f60-8a7b-9c0d1e2f3a4b"},
		Total:     eur,
		CreatedAt: timestamppb.Now(),
	}
	for i := range 100 {
		large.Lines = append(large.Lines, &ordereventsv2.OrderLine{Sku: fmt.Sprintf("MUG-%03d", i), Quantity: 1, UnitPrice: eur})
	}
	first, err := event.New(ctx, large, event.WithSource("shopbus/order"))
	if err != nil {
		t.Fatal(err)
	}
	second := newOrderCreated(t)
	if first.GetPartitionKey() != second.GetPartitionKey() {
		t.Fatalf("partition keys %q and %q, want one", first.GetPartitionKey(), second.GetPartitionKey())
	}
	other, err := event.New(ctx, &ordereventsv2.OrderCreated{
		OrderId:   "0193a5e2-7c1d-7b3e-9f4a-2d6c8e0f1a2c", // another key
		Customer:  &ordereventsv2.Customer{CustomerId: "6f1c2b3a-4d5e-4f60-8a7b-9c0d1e2f3a4b"},
		Lines:     []*ordereventsv2.OrderLine{{Sku: "MUG-001", Quantity: 1, UnitPrice: eur}},
		Total:     eur,
		CreatedAt: timestamppb.Now(),
	}, event.WithSource("shopbus/order"))
	if err != nil {
		t.Fatal(err)
	}
	for _, env := range []*eventv1.Envelope{first, second, other} {
		if err := pgx.BeginFunc(ctx, pool, func(tx pgx.Tx) error { return messaging.Enqueue(ctx, tx, env) }); err != nil {
			t.Fatal(err)
		}
	}

	if n, err := relay.PublishBatch(ctx); err != nil || n != 1 {
		t.Fatalf("PublishBatch with a row the stream refuses = %d, %v; want the other key's row published", n, err)
	}
	if msg, err := s.GetMsg(ctx, 1); err != nil || msg.Header.Get("Nats-Msg-Id") != other.GetId() {
		t.Fatalf("stream message 1: %v, %v; want the other key's row", msg, err)
	}
	if info, err := s.Info(ctx); err != nil || info.State.Msgs != 1 {
		t.Fatalf("while the key's first row is refused: %d messages in the stream (%v), want only the other key's", info.State.Msgs, err)
	}

	setMaxMsgSize(-1)
	if n, err := relay.PublishBatch(ctx); err != nil || n != 2 {
		t.Fatalf("PublishBatch once the stream takes the row = %d, %v; want both rows", n, err)
	}
	for seq, env := range []*eventv1.Envelope{other, first, second} {
		msg, err := s.GetMsg(ctx, uint64(seq+1))
		if err != nil || msg.Header.Get("Nats-Msg-Id") != env.GetId() {
			t.Errorf("stream message %d: %v, %v; want row %d (%s)", seq+1, msg, err, seq+1, env.GetId())
		}
	}
}

// TestRelayPassEndsInTime: rows of one key wait for each other's
// acknowledgement, so when the acknowledgements are slow (here a
// subscriber answers each publish after 100 ms) a pass stops publishing
// once its budget is spent, marks what went out, and the next passes carry
// on, in order. Without the budget, a long run of one key's rows outlasted
// the pass's idle-in-transaction timeout, PostgreSQL ended the pass before
// its marks, and the next pass started over.
func TestRelayPassEndsInTime(t *testing.T) {
	t.Parallel()
	srv, _ := testenv.NATS(t)
	pool, schema := testenv.Postgres(t)
	ctx := context.Background()
	nc, err := nats.Connect(srv.ClientURL())
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	var got []string // Nats-Msg-Id, in the order the "stream" took them
	var mu sync.Mutex
	if _, err := nc.Subscribe("slow.>", func(m *nats.Msg) {
		time.Sleep(100 * time.Millisecond)
		mu.Lock()
		got = append(got, m.Header.Get(jetstream.MsgIDHeader))
		seq := len(got)
		mu.Unlock()
		_ = m.Respond(fmt.Appendf(nil, `{"stream":"SLOW","seq":%d}`, seq))
	}); err != nil {
		t.Fatal(err)
	}
	js, err := messaging.NewJetStream(nc)
	if err != nil {
		t.Fatal(err)
	}
	relay := messaging.NewRelay(pool, js, schema, messaging.WithRelayLogger(slog.New(slog.NewTextHandler(io.Discard, nil))))
	messaging.SetPublishBudget(relay, 300*time.Millisecond)
	var want []string
	for range 10 {
		var id string
		if err := pool.QueryRow(ctx, `INSERT INTO outbox (id, subject, envelope) VALUES (gen_random_uuid(), 'slow.key.event.v1.k', '\x01')
			RETURNING id::text`).Scan(&id); err != nil {
			t.Fatal(err)
		}
		want = append(want, id)
	}
	n, err := relay.PublishBatch(ctx)
	if err != nil || n >= len(want) {
		t.Fatalf("first pass = %d, %v; want part of the %d rows published, no error", n, err, len(want))
	}
	total := n
	for passes := 1; total < len(want); passes++ {
		if passes > 3*len(want) {
			t.Fatalf("%d of %d rows published after %d passes", total, len(want), passes)
		}
		n, err := relay.PublishBatch(ctx)
		if err != nil {
			t.Fatal(err)
		}
		total += n
	}
	mu.Lock()
	defer mu.Unlock()
	if !slices.Equal(got, want) {
		t.Errorf("published %v, want each once, in order: %v", got, want)
	}
}

// TestRelay: a row is published with Nats-Msg-Id = envelope id and marked;
// published again after a crash before the mark, JetStream drops the copy;
// a row that is not a valid event does not block the rows behind it.
func TestRelay(t *testing.T) {
	_, js := testenv.NATS(t)
	pool, schema := testenv.Postgres(t)
	ctx := context.Background()
	relay := messaging.NewRelay(pool, js, schema, messaging.WithRelayLogger(slog.New(slog.NewTextHandler(io.Discard, nil))))
	enqueue := func() string {
		env := newOrderCreated(t)
		if err := pgx.BeginFunc(ctx, pool, func(tx pgx.Tx) error { return messaging.Enqueue(ctx, tx, env) }); err != nil {
			t.Fatal(err)
		}
		return env.GetId()
	}
	streamMsgs := func() uint64 {
		s, err := js.Stream(ctx, "ECOMMERCE_ORDER")
		if err != nil {
			t.Fatal(err)
		}
		info, err := s.Info(ctx)
		if err != nil {
			t.Fatal(err)
		}
		return info.State.Msgs
	}

	id := enqueue()
	if n, err := relay.PublishBatch(ctx); err != nil || n != 1 {
		t.Fatalf("PublishBatch = %d, %v", n, err)
	}
	s, _ := js.Stream(ctx, "ECOMMERCE_ORDER")
	msg, err := s.GetMsg(ctx, 1)
	if err != nil || msg.Header.Get("Nats-Msg-Id") != id || msg.Header.Get("Shopbus-Type") != "order.created" {
		t.Fatalf("stored message %v, %v", msg, err)
	}

	// The relay died after the publish, before its mark committed.
	if _, err := pool.Exec(ctx, "UPDATE outbox SET published_at = NULL"); err != nil {
		t.Fatal(err)
	}
	if n, err := relay.PublishBatch(ctx); err != nil || n != 1 {
		t.Fatalf("re-publish: %d, %v", n, err)
	}
	if n := streamMsgs(); n != 1 {
		t.Errorf("%d messages in the stream after a re-publish, want 1 (duplicate window)", n)
	}

	// A bad row, then a good one.
	if _, err := pool.Exec(ctx, `INSERT INTO outbox (id, subject, envelope) VALUES (gen_random_uuid(), 'ecommerce.order.created.v2.bad', '\x0001')`); err != nil {
		t.Fatal(err)
	}
	enqueue()
	if n, err := relay.PublishBatch(ctx); err != nil || n != 2 {
		t.Fatalf("PublishBatch with a bad row = %d, %v; want both published", n, err)
	}
	var unpublished int
	if err := pool.QueryRow(ctx, "SELECT count(*) FROM outbox WHERE published_at IS NULL").Scan(&unpublished); err != nil || unpublished != 0 {
		t.Errorf("%d rows unpublished, %v", unpublished, err)
	}
}

// TestConsumeSurvivesConsumerDeletion: an operator deletes the durable
// consumers while they run; Consume declares them again and keeps handling
// events instead of stopping silently.
func TestConsumeSurvivesConsumerDeletion(t *testing.T) {
	for _, strategy := range []messaging.Strategy{messaging.RoundRobin, messaging.KeyBased} {
		t.Run(string(strategy), func(t *testing.T) {
			t.Parallel()
			_, js := testenv.NATS(t)
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			handled := make(chan string, 100)
			cfg := messaging.ConsumerConfig{Stream: "ECOMMERCE_ORDER", Durable: "test-survivor",
				Subjects: []string{"ecommerce.order.created"}, Strategy: strategy}
			done := make(chan error, 1)
			go func() {
				done <- messaging.Consume(ctx, js, cfg, func(_ context.Context, d *messaging.Delivery) error {
					handled <- d.Envelope.GetId()
					return nil
				}, slog.New(slog.NewTextHandler(io.Discard, nil)))
			}()
			publish := func() string {
				env := newOrderCreated(t)
				b, _ := event.Encode(env)
				if _, err := js.PublishMsg(ctx, &nats.Msg{Subject: "ecommerce.order.created.v2." + env.GetPartitionKey(), Data: b, Header: event.Headers(env)}); err != nil {
					t.Fatal(err)
				}
				return env.GetId()
			}
			// A consumer declared again delivers the stream from its start: earlier
			// events come again (Once absorbs them in a real handler).
			await := func(id string) {
				t.Helper()
				for deadline := time.After(40 * time.Second); ; {
					select {
					case got := <-handled:
						if got == id {
							return
						}
					case <-deadline:
						t.Fatalf("event %s not handled within 40s", id)
					}
				}
			}
			await(publish())
			stream, err := js.Stream(ctx, cfg.Stream)
			if err != nil {
				t.Fatal(err)
			}
			names := stream.ConsumerNames(ctx)
			for name := range names.Name() {
				if err := js.DeleteConsumer(ctx, cfg.Stream, name); err != nil {
					t.Fatal(err)
				}
			}
			await(publish())
			cancel()
			if err := <-done; !errors.Is(err, context.Canceled) {
				t.Errorf("Consume returned %v, want context.Canceled", err)
			}
		})
	}
}

// newOrderCreated returns a valid order.created.v2 envelope.
func newOrderCreated(t *testing.T) *eventv1.Envelope {
	t.Helper()
	eur := &ordereventsv2.Money{Currency: "EUR", AmountMinor: 1}
	env, err := event.New(context.Background(), &ordereventsv2.OrderCreated{
		OrderId:   "0193a5e2-7c1d-7b3e-9f4a-2d6c8e0f1a2b",
		Customer:  &ordereventsv2.Customer{CustomerId: "6f1c2b3a-4d5e-4f60-8a7b-9c0d1e2f3a4b"},
		Lines:     []*ordereventsv2.OrderLine{{Sku: "MUG-001", Quantity: 1, UnitPrice: eur}},
		Total:     eur,
		CreatedAt: timestamppb.Now(),
	}, event.WithSource("shopbus/order")) // its declared producer
	if err != nil {
		t.Fatal(err)
	}
	return env
}

// TestKeyBasedConsumer: a key-based consumer is declared on the stream the
// event catalog puts its events in, which is not always the subject's
// domain and entity (order.scored is the fraud context's).
func TestKeyBasedConsumer(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		subjects []string
		stream   string
	}{
		{[]string{"ecommerce.order.created", "ecommerce.order.rejected"}, "ECOMMERCE_ORDER"},
		{[]string{"ml.order.scored"}, "ML_FRAUD"},
		{[]string{"ecommerce.widget.made"}, ""},
		{nil, ""},
	} {
		cfg := messaging.KeyBasedConsumer("d", tc.subjects...)
		if cfg.Stream != tc.stream || cfg.Durable != "d" || cfg.Strategy != messaging.KeyBased || len(cfg.Subjects) != len(tc.subjects) {
			t.Errorf("KeyBasedConsumer(%q) = %+v, want stream %q", tc.subjects, cfg, tc.stream)
		}
	}
}
