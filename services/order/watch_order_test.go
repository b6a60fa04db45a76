package order

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"google.golang.org/protobuf/proto"

	orderv1 "github.com/shopbus/shopbus/gen/go/shopbus/order/v1"

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
	// The watches wait before the listener starts: it wakes those it
	// finds once it listens, which a watch registered a moment later (the
	// pool's idle connection LISTENs within a millisecond) would miss.
	decided, stopDecided := d.wait("0193a5e2-7c1d-7b3e-9f4a-2d6c8e0f1a2b")
	defer stopDecided()
	other, stopOther := d.wait("0193a5e2-7c1d-7b3e-9f4a-000000000000")
	defer stopOther()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); d.listen(ctx, pool, quiet) }()
	t.Cleanup(func() { cancel(); <-done })
	// Once it listens, the listener wakes every watch with no news
	// (notifications may have been lost before): they read their order.
	for _, w := range []*watch{decided, other} {
		select {
		case <-w.wake:
		case <-time.After(10 * time.Second):
			t.Fatal("the listener did not wake the watches once it listened")
		}
		if n := w.take(); n.order != nil {
			t.Errorf("the first wake brought news %v, want none", n.order)
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
	score := 0.12
	confirmed := &sagaOrder{id: "0193a5e2-7c1d-7b3e-9f4a-2d6c8e0f1a2b", status: statusConfirmed, fraud: fraudApprove, score: &score,
		reasons: []string{"HIGH_TOTAL"}, model: "fraud-logreg", modelVersion: "v1", scoredAt: &now}
	review := &sagaOrder{id: "0193a5e2-7c1d-7b3e-9f4a-111111111111", status: statusReview}
	if err := queueNotify(b, []transition{{id: confirmed.id, watched: confirmed.watched()}, {id: review.id, watched: review.watched()}}); err != nil {
		t.Fatal(err)
	}
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
	if n := decided.take(); !proto.Equal(n.order, confirmed.watched()) || !n.at.Equal(now) {
		t.Errorf("the decided order's news: %v at %v, want %v at %v", n.order, n.at, confirmed.watched(), now)
	}
	select {
	case <-other.wake:
		t.Error("a watch of an order that was not decided was woken")
	default:
	}
}

// TestNotificationsParse: a payload of an earlier version (bare ids) names
// its orders with no news, so their watches read them; one that does not
// parse is an error; a large batch of orders is split into payloads that
// PostgreSQL takes, each naming its orders with what changed, and an order
// too large for a payload is named alone by its id, to be read.
func TestNotificationsParse(t *testing.T) {
	t.Parallel()
	got, err := parseNotification("a,b")
	if err != nil || len(got) != 2 || got[0].id != "a" || got[0].order != nil || got[1].id != "b" || got[1].order != nil {
		t.Errorf("bare ids: %v, %v; want a and b with no news", got, err)
	}
	if _, err := parseNotification(`{"at": 1, "orders": [{"orderId": 7}]}`); err == nil {
		t.Error("a payload that does not parse was taken")
	}
	huge := &sagaOrder{id: "0193a5e2-7c1d-7b3e-9f4a-999999999999", status: statusRejected, rejectReason: strings.Repeat("x", notifyBytes)}
	moved := []transition{{id: huge.id, watched: huge.watched()}}
	for i := range 300 {
		o := &sagaOrder{id: fmt.Sprintf("0193a5e2-7c1d-7b3e-9f4a-%012d", i), status: statusRejected, rejectReason: strings.Repeat("out of stock: MUG-001 ", 5)}
		moved = append(moved, transition{id: o.id, watched: o.watched()})
	}
	b := &pgx.Batch{}
	if err := queueNotify(b, moved); err != nil {
		t.Fatal(err)
	}
	if len(b.QueuedQueries) < 2 {
		t.Fatalf("300 orders in %d notifications", len(b.QueuedQueries))
	}
	named := 0
	for _, q := range b.QueuedQueries {
		payload := q.Arguments[1].(string)
		if payload == huge.id {
			named++ // too large for a payload: named alone, to be read
			continue
		}
		payload = strings.Replace(payload, "[", `{"at": 1764750000123456, "orders": [`, 1) + "}"
		if len(payload) >= 8000 {
			t.Errorf("a payload of %d bytes", len(payload))
		}
		all, err := parseNotification(payload)
		if err != nil {
			t.Fatal(err)
		}
		for _, n := range all {
			named++
			if n.order.GetStatus() != orderv1.OrderStatus_ORDER_STATUS_REJECTED || !strings.HasPrefix(n.order.GetRejectReason(), "out of stock") ||
				!n.at.Equal(time.UnixMicro(1764750000123456)) {
				t.Errorf("%s: %v at %v", n.id, n.order, n.at)
			}
		}
	}
	if named != len(moved) {
		t.Errorf("the payloads named %d orders, want %d", named, len(moved))
	}
}
