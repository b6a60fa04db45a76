package messaging_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/shopbus/shopbus/internal/messaging"
	"github.com/shopbus/shopbus/internal/testenv"
)

// TestRelayParksUnpublishableRows: a row larger than the server's
// max_payload is set aside at once, and rows that JetStream has refused for
// ParkAfter (no stream captures the subject; larger than its stream's
// max_msg_size) once it has refused them that long, each with its reason,
// and filed, never blocking the rows behind them. ParkAfter counts from the
// first refusal, not from the row's creation: a row written long ago (after
// an outage, say) and refused once is retried (its stream may be being
// declared again).
func TestRelayParksUnpublishableRows(t *testing.T) {
	t.Parallel()
	_, js := testenv.NATS(t)
	pool, schema := testenv.Postgres(t)
	ctx := context.Background()
	var mu sync.Mutex
	var filed []messaging.UnpublishableRow
	relay := messaging.NewRelay(pool, js, schema, messaging.WithRelayLogger(slog.New(slog.NewTextHandler(io.Discard, nil))),
		messaging.WithUnpublishable(func(_ context.Context, row messaging.UnpublishableRow) error {
			mu.Lock()
			defer mu.Unlock()
			filed = append(filed, row)
			return nil
		}))
	insert := func(subject string, envelope []byte, age time.Duration) string {
		var id string
		if err := pool.QueryRow(ctx, `INSERT INTO outbox (id, subject, envelope, created_at) VALUES (gen_random_uuid(), $1, $2, $3) RETURNING id::text`,
			subject, envelope, time.Now().Add(-age)).Scan(&id); err != nil {
			t.Fatal(err)
		}
		return id
	}
	s, err := js.Stream(ctx, "ECOMMERCE_ORDER")
	if err != nil {
		t.Fatal(err)
	}
	cfg := s.CachedInfo().Config
	cfg.MaxMsgSize = 4096
	if _, err := js.UpdateStream(ctx, cfg); err != nil {
		t.Fatal(err)
	}
	const parkAfter = 300 * time.Millisecond
	messaging.SetParkAfter(relay, parkAfter)
	huge := insert("ecommerce.order.created.v2.huge", bytes.Repeat([]byte{1}, 3<<20), 0)
	nowhere := insert("nowhere.at.all", []byte{1}, time.Hour)
	large := insert("ecommerce.order.created.v2.large", bytes.Repeat([]byte{1}, 8192), time.Hour)
	good := newOrderCreated(t)
	if err := pgx.BeginFunc(ctx, pool, func(tx pgx.Tx) error { return messaging.Enqueue(ctx, tx, good) }); err != nil {
		t.Fatal(err)
	}
	firstRefusal := time.Now()
	if n, err := relay.PublishBatch(ctx); err != nil || n != 1 {
		t.Fatalf("PublishBatch = %d, %v; want the good row published behind the unpublishable ones", n, err)
	}
	parkedRows := func() (n int) {
		if err := pool.QueryRow(ctx, "SELECT count(*) FROM outbox WHERE parked_at IS NOT NULL").Scan(&n); err != nil {
			t.Fatal(err)
		}
		return n
	}
	if n := parkedRows(); n != 1 {
		t.Fatalf("%d rows set aside after the first pass, want only the one over max_payload (the others were refused once)", n)
	}
	testenv.CheckFor(t, 10*time.Second, 50*time.Millisecond, func() error {
		if _, err := relay.PublishBatch(ctx); err != nil && !errors.Is(err, jetstream.ErrNoStreamResponse) && !errors.Is(err, jetstream.ErrStreamMessageExceedsMaximum) {
			return err
		}
		if n := parkedRows(); n != 3 {
			return fmt.Errorf("%d rows set aside", n)
		}
		return nil
	})
	if waited := time.Since(firstRefusal); waited < parkAfter {
		t.Errorf("rows set aside %v after their first refusal, before the %v the relay keeps trying them", waited, parkAfter)
	}
	reasons := map[string]string{}
	rows, err := pool.Query(ctx, "SELECT id::text, coalesce(park_reason, '') FROM outbox WHERE parked_at IS NOT NULL")
	if err != nil {
		t.Fatal(err)
	}
	for rows.Next() {
		var id, reason string
		if err := rows.Scan(&id, &reason); err != nil {
			t.Fatal(err)
		}
		reasons[id] = reason
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	if len(reasons) != 3 || !strings.Contains(reasons[huge], "max_payload") || !strings.Contains(reasons[nowhere], "no stream captures") ||
		!strings.Contains(reasons[large], "max_msg_size") {
		t.Errorf("parked rows %v; want %s (max_payload), %s (no stream) and %s (max_msg_size)", reasons, huge, nowhere, large)
	}
	mu.Lock()
	if len(filed) != 3 {
		t.Errorf("%d rows filed, want 3", len(filed))
	}
	mu.Unlock()

	// A row no stream takes, refused once: retried, not parked.
	fresh := insert("nowhere.yet", []byte{1}, time.Hour)
	if _, err := relay.PublishBatch(ctx); err == nil {
		t.Error("PublishBatch of a row no stream takes yet: no error")
	}
	var parked bool
	if err := pool.QueryRow(ctx, "SELECT parked_at IS NOT NULL FROM outbox WHERE id = $1", fresh).Scan(&parked); err != nil || parked {
		t.Errorf("the fresh row: parked %v, %v; want it left to retry", parked, err)
	}
}

// TestRowIsParkedOnlyOnceFiled: a row that can never be published, whose
// filing in the dead-letter queue fails (a full queue, NATS away), is not
// set aside unfiled: it stays in the outbox and a later pass files and
// parks it.
func TestRowIsParkedOnlyOnceFiled(t *testing.T) {
	t.Parallel()
	_, js := testenv.NATS(t)
	pool, schema := testenv.Postgres(t)
	ctx := context.Background()
	var mu sync.Mutex
	attempts, filed := 0, 0
	relay := messaging.NewRelay(pool, js, schema, messaging.WithRelayLogger(slog.New(slog.NewTextHandler(io.Discard, nil))),
		messaging.WithUnpublishable(func(context.Context, messaging.UnpublishableRow) error {
			mu.Lock()
			defer mu.Unlock()
			if attempts++; attempts == 1 {
				return errors.New("injected: the dead-letter queue is full")
			}
			filed++
			return nil
		}))
	if _, err := pool.Exec(ctx, `INSERT INTO outbox (id, subject, envelope) VALUES (gen_random_uuid(), 'ecommerce.order.created.v2.huge', $1)`,
		bytes.Repeat([]byte{1}, 3<<20)); err != nil { // over max_payload: set aside at once
		t.Fatal(err)
	}
	parked := func() (n int) {
		if err := pool.QueryRow(ctx, "SELECT count(*) FROM outbox WHERE parked_at IS NOT NULL").Scan(&n); err != nil {
			t.Fatal(err)
		}
		return n
	}
	if _, err := relay.PublishBatch(ctx); err != nil {
		t.Fatal(err)
	}
	if n := parked(); n != 0 {
		t.Fatalf("%d rows set aside after a filing that failed, want 0", n)
	}
	if _, err := relay.PublishBatch(ctx); err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	defer mu.Unlock()
	if n := parked(); n != 1 || attempts != 2 || filed != 1 {
		t.Errorf("after a second pass: %d rows set aside, %d filings tried, %d filed; want 1, 2 and 1", n, attempts, filed)
	}
}

// TestNoAnswerFromACapturingStreamIsNotParked: "no stream answered" sets a
// row aside only when no stream captures its subject. A stream that has
// one, but no leader to answer (a cluster without quorum), is waited for,
// however long.
func TestNoAnswerFromACapturingStreamIsNotParked(t *testing.T) {
	t.Parallel()
	_, js := testenv.NATS(t)
	pool, schema := testenv.Postgres(t)
	relay := messaging.NewRelay(pool, js, schema)
	ctx := context.Background()
	if messaging.NeverCaptured(ctx, relay, jetstream.ErrNoStreamResponse, "ecommerce.order.created.v2.k1") {
		t.Error("a subject ECOMMERCE_ORDER captures: reported as captured by none")
	}
	if !messaging.NeverCaptured(ctx, relay, jetstream.ErrNoStreamResponse, "nowhere.at.all") {
		t.Error("a subject no stream captures: reported as captured")
	}
	if !messaging.NeverCaptured(ctx, relay, jetstream.ErrStreamMessageExceedsMaximum, "ecommerce.order.created.v2.k1") {
		t.Error("a row larger than its stream takes: not set aside")
	}
}
