package order

import (
	"context"
	"io"
	"log/slog"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/shopbus/shopbus/internal/testenv"
)

// TestDecisionsReachListeners: a transaction that decides orders wakes the
// watches of those orders, and only those, in a process listening on the
// same database, through PostgreSQL's notifications.
func TestDecisionsReachListeners(t *testing.T) {
	t.Parallel()
	pool, _ := testenv.Postgres(t, Migrations)
	d := newDecisions()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); d.listen(ctx, pool, slog.New(slog.NewTextHandler(io.Discard, nil))) }()
	t.Cleanup(func() { cancel(); <-done })

	decided, stopDecided := d.wait("0193a5e2-7c1d-7b3e-9f4a-2d6c8e0f1a2b")
	defer stopDecided()
	other, stopOther := d.wait("0193a5e2-7c1d-7b3e-9f4a-000000000000")
	defer stopOther()
	// Notify until the listener has its connection: a notification sent
	// before LISTEN reaches no one.
	testenv.CheckFor(t, 10*time.Second, 50*time.Millisecond, func() error {
		err := pgx.BeginFunc(ctx, pool, func(tx pgx.Tx) error {
			b := &pgx.Batch{}
			queueNotifyDecided(b, []string{"0193a5e2-7c1d-7b3e-9f4a-2d6c8e0f1a2b", "0193a5e2-7c1d-7b3e-9f4a-111111111111"})
			return tx.SendBatch(ctx, b).Close()
		})
		if err != nil {
			return err
		}
		select {
		case <-decided:
			return nil
		case <-time.After(50 * time.Millisecond):
			return context.DeadlineExceeded
		}
	})
	select {
	case <-other:
		t.Error("a watch of an order that was not decided was woken")
	default:
	}
}
