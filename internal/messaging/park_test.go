package messaging_test

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/shopbus/shopbus/internal/messaging"
	"github.com/shopbus/shopbus/internal/testenv"
)

// TestRelayParksUnpublishableRows: a row larger than the server's
// max_payload, and rows that JetStream has refused for ParkAfter (no stream
// captures the subject; larger than its stream's max_msg_size), are set
// aside with their reason and filed, never blocking the rows behind them; a
// row no stream takes yet, but only just written, is retried (its stream
// may be being declared again).
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
	huge := insert("ecommerce.order.created.v2.huge", bytes.Repeat([]byte{1}, 3<<20), 0)
	nowhere := insert("nowhere.at.all", []byte{1}, messaging.ParkAfter+time.Minute)
	large := insert("ecommerce.order.created.v2.large", bytes.Repeat([]byte{1}, 8192), messaging.ParkAfter+time.Minute)
	good := newOrderCreated(t)
	if err := pgx.BeginFunc(ctx, pool, func(tx pgx.Tx) error { return messaging.Enqueue(ctx, tx, good) }); err != nil {
		t.Fatal(err)
	}
	if n, err := relay.PublishBatch(ctx); err != nil || n != 1 {
		t.Fatalf("PublishBatch = %d, %v; want the good row published behind the unpublishable ones", n, err)
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

	// A row no stream takes, written just now: retried, not parked.
	fresh := insert("nowhere.yet", []byte{1}, 0)
	if _, err := relay.PublishBatch(ctx); err == nil {
		t.Error("PublishBatch of a row no stream takes yet: no error")
	}
	var parked bool
	if err := pool.QueryRow(ctx, "SELECT parked_at IS NOT NULL FROM outbox WHERE id = $1", fresh).Scan(&parked); err != nil || parked {
		t.Errorf("the fresh row: parked %v, %v; want it left to retry", parked, err)
	}
}
