package order

import (
	"context"
	"io"
	"log/slog"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/shopbus/shopbus/internal/testenv"
	"github.com/shopbus/shopbus/services"
)

var quiet = slog.New(slog.NewTextHandler(io.Discard, nil))

// TestDecisionsReachListeners: the notification that names decided orders
// wakes the watches of those orders, and only those, in a process listening
// on the same database, with their new status and the time of the
// transaction that moved them.
func TestDecisionsReachListeners(t *testing.T) {
	t.Parallel()
	pool, _ := testenv.Postgres(t, services.Migrations("order"))
	d := newDecisions()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); d.listen(ctx, pool, quiet) }()
	t.Cleanup(func() { cancel(); <-done })

	decided, stopDecided := d.wait("0193a5e2-7c1d-7b3e-9f4a-2d6c8e0f1a2b")
	defer stopDecided()
	other, stopOther := d.wait("0193a5e2-7c1d-7b3e-9f4a-000000000000")
	defer stopOther()
	// Once it listens, the listener wakes every watch with no news
	// (notifications may have been lost before): they read their order.
	for _, w := range []*watch{decided, other} {
		select {
		case <-w.wake:
		case <-time.After(10 * time.Second):
			t.Fatal("the listener did not wake the watches once it listened")
		}
		if n := w.take(); n != (news{}) {
			t.Errorf("the first wake brought news %+v, want none", n)
		}
	}
	tx, err := pool.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var now time.Time
	if err := tx.QueryRow(ctx, "SELECT now()").Scan(&now); err != nil {
		t.Fatal(err)
	}
	b := &pgx.Batch{}
	queueNotify(b, []transition{{id: "0193a5e2-7c1d-7b3e-9f4a-2d6c8e0f1a2b", to: "CONFIRMED"}, {id: "0193a5e2-7c1d-7b3e-9f4a-111111111111", to: "REVIEW"}})
	if err := tx.SendBatch(ctx, b).Close(); err != nil {
		t.Fatal(err)
	}
	if err := tx.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	select {
	case <-decided.wake:
	case <-time.After(10 * time.Second):
		t.Fatal("the decided order's watch was not woken")
	}
	if n := decided.take(); n.status != "CONFIRMED" || !n.at.Equal(now) {
		t.Errorf("the decided order's news: %+v, want CONFIRMED at %v", n, now)
	}
	select {
	case <-other.wake:
		t.Error("a watch of an order that was not decided was woken")
	default:
	}
}

// TestNotificationsParse: a payload names each order with its status and
// time; one of an earlier version (bare ids) or one that does not parse
// names the orders with no news, so their watches read them.
func TestNotificationsParse(t *testing.T) {
	t.Parallel()
	at := time.UnixMicro(1764750000123456)
	for _, tc := range []struct {
		payload string
		want    map[string]news
	}{
		{"1764750000123456;a CONFIRMED,b REVIEW", map[string]news{"a": {"CONFIRMED", at}, "b": {"REVIEW", at}}},
		{"a,b", map[string]news{"a": {}, "b": {}}},
		{"x;a CONFIRMED", map[string]news{"a": {}}},
	} {
		got := map[string]news{}
		parseNotification(tc.payload, func(id string, n news) { got[id] = n })
		if len(got) != len(tc.want) {
			t.Errorf("%q named %v, want %v", tc.payload, got, tc.want)
		}
		for id, n := range tc.want {
			if g, ok := got[id]; !ok || g.status != n.status || !g.at.Equal(n.at) {
				t.Errorf("%q: %s got %+v, want %+v", tc.payload, id, g, n)
			}
		}
	}
}
