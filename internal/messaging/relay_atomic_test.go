package messaging_test

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"google.golang.org/protobuf/types/known/timestamppb"

	ordereventsv2 "github.com/shopbus/shopbus/gen/go/ecommerce/order/v2"
	"github.com/shopbus/shopbus/internal/event"
	"github.com/shopbus/shopbus/internal/messaging"
	"github.com/shopbus/shopbus/internal/telemetry"
	"github.com/shopbus/shopbus/internal/testenv"
)

// enqueueOrders writes n order.created rows to the outbox over keys order
// ids (each key's rows in turn) and returns their ids in the order written.
func enqueueOrders(t testing.TB, pool *pgxpool.Pool, n, keys int) []string {
	t.Helper()
	ctx := context.Background()
	orderIDs := make([]string, keys)
	for i := range orderIDs {
		orderIDs[i] = uuid.Must(uuid.NewV7()).String()
	}
	eur := &ordereventsv2.Money{Currency: "EUR", AmountMinor: 1}
	var ids []string
	err := pgx.BeginFunc(ctx, pool, func(tx pgx.Tx) error {
		for i := range n {
			env, err := event.New(ctx, &ordereventsv2.OrderCreated{
				OrderId:   orderIDs[i%keys],
				Customer:  &ordereventsv2.Customer{CustomerId: "6f1c2b3a-4d5e-4f60-8a7b-9c0d1e2f3a4b"},
				Lines:     []*ordereventsv2.OrderLine{{Sku: "MUG-001", Quantity: uint32(i + 1), UnitPrice: eur}},
				Total:     eur,
				CreatedAt: timestamppb.Now(),
			}, event.WithSource("shopbus/order"))
			if err != nil {
				return err
			}
			if err := messaging.Enqueue(ctx, tx, env); err != nil {
				return err
			}
			ids = append(ids, env.GetId())
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return ids
}

// storedIDs returns the Nats-Msg-Id of each message of the stream, in
// stream order, and how many an atomic batch stored.
func storedIDs(t testing.TB, js jetstream.JetStream, stream string) (ids []string, batched int) {
	t.Helper()
	msgs := testenv.StreamMessages(t, js, stream)
	for _, msg := range msgs {
		ids = append(ids, msg.Header.Get(jetstream.MsgIDHeader))
	}
	return ids, testenv.InAtomicBatches(msgs)
}

// TestRelayPublishesABacklogAsOneBatch: a pass of at least AtomicPassMin
// rows goes to JetStream as one atomic batch: every row stored once, in the
// order written (so each key's too), each with its row id as Nats-Msg-Id
// and marked published; a pass of fewer rows publishes them one by one.
func TestRelayPublishesABacklogAsOneBatch(t *testing.T) {
	t.Parallel()
	_, js := testenv.NATS(t)
	pool, schema := testenv.Postgres(t)
	ctx := context.Background()
	tel, err := telemetry.New(ctx, telemetry.Options{})
	if err != nil {
		t.Fatal(err)
	}
	relay := messaging.NewRelay(pool, js, schema, messaging.WithRelayLogger(slog.New(slog.NewTextHandler(io.Discard, nil))),
		messaging.WithRelayTelemetry(tel))

	few := enqueueOrders(t, pool, messaging.AtomicPassMin-1, 3)
	if n, err := relay.PublishBatch(ctx); err != nil || n != len(few) {
		t.Fatalf("PublishBatch of %d rows = %d, %v", len(few), n, err)
	}
	if _, batched := storedIDs(t, js, "ECOMMERCE_ORDER"); batched != 0 {
		t.Fatalf("%d rows of a pass of %d went in an atomic batch; want none under %d", batched, len(few), messaging.AtomicPassMin)
	}

	many := enqueueOrders(t, pool, 100, 7)
	if n, err := relay.PublishBatch(ctx); err != nil || n != len(many) {
		t.Fatalf("PublishBatch of %d rows = %d, %v", len(many), n, err)
	}
	got, batched := storedIDs(t, js, "ECOMMERCE_ORDER")
	want := append(append([]string{}, few...), many...)
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("stream holds\n%v\nwant the rows in the order written\n%v", got, want)
	}
	if batched != len(many) {
		t.Fatalf("%d of the %d rows of the large pass carry an atomic batch id; want all", batched, len(many))
	}
	var unpublished int
	if err := pool.QueryRow(ctx, "SELECT count(*) FROM outbox WHERE published_at IS NULL").Scan(&unpublished); err != nil || unpublished != 0 {
		t.Fatalf("%d rows not marked published (%v)", unpublished, err)
	}
	// The metrics count the batch's rows as published, none as failed,
	// and a publish duration for each.
	rec := httptest.NewRecorder()
	tel.Handler().ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/metrics", nil))
	parser := expfmt.NewTextParser(model.UTF8Validation)
	families, err := parser.TextToMetricFamilies(rec.Body)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		family string
		want   float64
	}{
		{"shopbus_outbox_published_total", float64(len(want))},
		{"shopbus_outbox_publish_errors_total", 0},
		{"shopbus_outbox_publish_duration_seconds", float64(len(want))},
	} {
		var got float64
		if f := families[tc.family]; f != nil {
			for _, m := range f.GetMetric() {
				got += m.GetCounter().GetValue() + float64(m.GetHistogram().GetSampleCount())
			}
		}
		if got != tc.want {
			t.Errorf("%s = %v, want %v", tc.family, got, tc.want)
		}
	}
}

// TestAtomicBatchHoldingAStoredRowFallsBack: a row whose publish JetStream
// stored but whose mark was lost makes an atomic batch fail as a whole
// (the duplicate window holds its id). The pass then publishes the rows one
// by one: that row is dropped as a duplicate, the others are stored once,
// in order, and all are marked.
func TestAtomicBatchHoldingAStoredRowFallsBack(t *testing.T) {
	t.Parallel()
	_, js := testenv.NATS(t)
	pool, schema := testenv.Postgres(t)
	ctx := context.Background()
	var log testenv.LogBuffer
	relay := messaging.NewRelay(pool, js, schema, messaging.WithRelayLogger(slog.New(slog.NewTextHandler(&log, nil))))

	ids := enqueueOrders(t, pool, 64, 5)
	var subject string
	var data []byte
	if err := pool.QueryRow(ctx, "SELECT subject, envelope FROM outbox WHERE id = $1", ids[10]).Scan(&subject, &data); err != nil {
		t.Fatal(err)
	}
	if _, err := js.PublishMsg(ctx, &nats.Msg{Subject: subject, Data: data}, jetstream.WithMsgID(ids[10])); err != nil {
		t.Fatal(err)
	}
	if n, err := relay.PublishBatch(ctx); err != nil || n != len(ids) {
		t.Fatalf("PublishBatch = %d, %v; want all %d rows", n, err, len(ids))
	}
	got, batched := storedIDs(t, js, "ECOMMERCE_ORDER")
	want := append([]string{ids[10]}, append(append([]string{}, ids[:10]...), ids[11:]...)...)
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("stream holds\n%v\nwant the row published before, then the others in order, each once\n%v", got, want)
	}
	if batched != 0 {
		t.Fatalf("%d messages carry a batch id; want none (the batch failed as a whole)", batched)
	}
	if !bytes.Contains([]byte(log.String()), []byte("publishing its rows one by one")) {
		t.Errorf("nothing logged about the fallback:\n%s", log.String())
	}

	// The next backlog goes in a batch again: a duplicate is a row's
	// matter, not the stream's.
	more := enqueueOrders(t, pool, 40, 3)
	if n, err := relay.PublishBatch(ctx); err != nil || n != len(more) {
		t.Fatalf("PublishBatch = %d, %v; want %d", n, err, len(more))
	}
	if _, batched := storedIDs(t, js, "ECOMMERCE_ORDER"); batched != len(more) {
		t.Errorf("%d messages carry a batch id; want the %d of the next backlog", batched, len(more))
	}
}

// TestRelayPublishesOneByOneToAStreamWithoutAtomicBatches: a stream whose
// configuration does not allow atomic batches (an older server, or a stream
// not updated yet) gets a pass's rows one by one. A relay that learned
// before that it allowed them tries once, fails, publishes the rows one by
// one, and leaves the stream alone for a while.
func TestRelayPublishesOneByOneToAStreamWithoutAtomicBatches(t *testing.T) {
	t.Parallel()
	_, js := testenv.NATS(t)
	pool, schema := testenv.Postgres(t)
	ctx := context.Background()
	var log testenv.LogBuffer
	relay := messaging.NewRelay(pool, js, schema, messaging.WithRelayLogger(slog.New(slog.NewTextHandler(&log, nil))))
	first := enqueueOrders(t, pool, 40, 4)
	if n, err := relay.PublishBatch(ctx); err != nil || n != len(first) {
		t.Fatalf("PublishBatch = %d, %v; want %d", n, err, len(first))
	}

	s, err := js.Stream(ctx, "ECOMMERCE_ORDER")
	if err != nil {
		t.Fatal(err)
	}
	cfg := s.CachedInfo().Config
	cfg.AllowAtomicPublish = false
	if _, err := js.UpdateStream(ctx, cfg); err != nil {
		t.Fatal(err)
	}
	var log2 testenv.LogBuffer
	fresh := messaging.NewRelay(pool, js, schema, messaging.WithRelayLogger(slog.New(slog.NewTextHandler(&log2, nil))))
	want := first
	for _, r := range []*messaging.Relay{relay, relay, fresh} {
		ids := enqueueOrders(t, pool, 50, 4)
		want = append(want, ids...)
		if n, err := r.PublishBatch(ctx); err != nil || n != len(ids) {
			t.Fatalf("PublishBatch = %d, %v; want %d", n, err, len(ids))
		}
	}
	got, batched := storedIDs(t, js, "ECOMMERCE_ORDER")
	if fmt.Sprint(got) != fmt.Sprint(want) || batched != len(first) {
		t.Fatalf("stream holds %d messages, %d batched:\n%v\nwant the first %d batched, then the rest one by one\n%v",
			len(got), batched, got, len(first), want)
	}
	if n := bytes.Count([]byte(log.String()), []byte("the stream refused an atomic batch")); n != 1 {
		t.Errorf("the failed batch logged %d times; want once (then the stream is left alone for a while):\n%s", n, log.String())
	}
	if log2.String() != "" {
		t.Errorf("a relay that read the stream's configuration tried a batch:\n%s", log2.String())
	}
}

// TestAtomicBatchesAreTurnedOnNeverOff: EnsureStreams with AtomicBatches
// turns them on in an existing stream; without it, it leaves them on in a
// stream that has them (another process turned them on).
func TestAtomicBatchesAreTurnedOnNeverOff(t *testing.T) {
	t.Parallel()
	_, js := testenv.NATS(t) // declares the streams with AtomicBatches
	ctx := context.Background()
	config := func() jetstream.StreamConfig {
		s, err := js.Stream(ctx, "ECOMMERCE_ORDER")
		if err != nil {
			t.Fatal(err)
		}
		return s.CachedInfo().Config
	}
	if !config().AllowAtomicPublish {
		t.Fatal("a stream declared with AtomicBatches does not allow atomic batches")
	}
	if err := messaging.EnsureStreams(ctx, js, messaging.StreamOptions{}); err != nil {
		t.Fatal(err)
	}
	if !config().AllowAtomicPublish {
		t.Fatal("EnsureStreams without AtomicBatches turned them off")
	}
	off := config()
	off.AllowAtomicPublish = false
	if _, err := js.UpdateStream(ctx, off); err != nil {
		t.Fatal(err)
	}
	if err := messaging.EnsureStreams(ctx, js, messaging.StreamOptions{AtomicBatches: true}); err != nil {
		t.Fatal(err)
	}
	if !config().AllowAtomicPublish {
		t.Fatal("EnsureStreams with AtomicBatches did not turn them on again")
	}
}

func TestVersionAtLeast(t *testing.T) {
	for _, tc := range []struct {
		v, min      string
		atLeast, ok bool
	}{
		{"2.12.0", "2.12.0", true, true},
		{"2.15.2", "2.12.0", true, true},
		{"2.11.9", "2.12.0", false, true},
		{"2.9.10", "2.11.0", false, true},
		{"3.0.0-beta.1", "2.12.0", true, true},
		{"2.12", "2.12.0", false, false},
		{"", "2.12.0", false, false},
	} {
		atLeast, ok := messaging.VersionAtLeast(tc.v, tc.min)
		if atLeast != tc.atLeast || ok != tc.ok {
			t.Errorf("VersionAtLeast(%q, %q) = %v, %v; want %v, %v", tc.v, tc.min, atLeast, ok, tc.atLeast, tc.ok)
		}
	}
}

// TestAFailedBatchThatTookThePassFailsIt: a batch that fails after taking
// the pass's whole publishing budget (here a budget too short for any
// answer; in production a commit that gets none) leaves no time to publish
// the rows one by one. The pass then reports the failure, so that the relay
// backs off, rather than an empty pass it would repeat at once. The next
// pass, with time, sends the rows in a batch again: a failure that is not
// the stream's refusal does not turn batches off.
func TestAFailedBatchThatTookThePassFailsIt(t *testing.T) {
	t.Parallel()
	_, js := testenv.NATS(t)
	pool, schema := testenv.Postgres(t)
	ctx := context.Background()
	relay := messaging.NewRelay(pool, js, schema, messaging.WithRelayLogger(slog.New(slog.NewTextHandler(io.Discard, nil))))
	ids := enqueueOrders(t, pool, 40, 4)
	if n, err := relay.PublishBatch(ctx); err != nil || n != len(ids) { // the relay learns the stream takes batches
		t.Fatalf("PublishBatch = %d, %v; want all %d rows", n, err, len(ids))
	}
	more := enqueueOrders(t, pool, 40, 4)
	ids = append(ids, more...)

	messaging.SetPublishBudget(relay, time.Nanosecond)
	if n, err := relay.PublishBatch(ctx); err == nil || n != 0 {
		t.Fatalf("PublishBatch with no time for the batch = %d, %v; want 0 and the batch's failure", n, err)
	}
	messaging.SetPublishBudget(relay, 5*time.Second)
	if n, err := relay.PublishBatch(ctx); err != nil || n != len(more) {
		t.Fatalf("PublishBatch = %d, %v; want all %d rows", n, err, len(more))
	}
	got, batched := storedIDs(t, js, "ECOMMERCE_ORDER")
	if fmt.Sprint(got) != fmt.Sprint(ids) || batched != len(ids) {
		t.Fatalf("stream holds %d messages, %d batched; want the %d rows once each, in order, in a batch", len(got), batched, len(ids))
	}
}
