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
// on the same database.
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
	// Once it listens, the listener wakes every watch (notifications may
	// have been lost before).
	for _, ch := range []<-chan struct{}{decided, other} {
		select {
		case <-ch:
		case <-time.After(10 * time.Second):
			t.Fatal("the listener did not wake the watches once it listened")
		}
	}
	b := &pgx.Batch{}
	queueNotify(b, []string{"0193a5e2-7c1d-7b3e-9f4a-2d6c8e0f1a2b", "0193a5e2-7c1d-7b3e-9f4a-111111111111"})
	if err := pool.SendBatch(ctx, b).Close(); err != nil {
		t.Fatal(err)
	}
	select {
	case <-decided:
	case <-time.After(10 * time.Second):
		t.Fatal("the decided order's watch was not woken")
	}
	select {
	case <-other:
		t.Error("a watch of an order that was not decided was woken")
	default:
	}
}
