package messaging_test

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"sync/atomic"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/shopbus/shopbus/internal/messaging"
	"github.com/shopbus/shopbus/internal/testenv"
)

// roundTrips counts the statements and batches a pool's connections send:
// a round trip each.
type roundTrips struct{ n atomic.Int64 }

func (r *roundTrips) TraceQueryStart(ctx context.Context, _ *pgx.Conn, _ pgx.TraceQueryStartData) context.Context {
	r.n.Add(1)
	return ctx
}
func (r *roundTrips) TraceQueryEnd(context.Context, *pgx.Conn, pgx.TraceQueryEndData) {}
func (r *roundTrips) TraceBatchStart(ctx context.Context, _ *pgx.Conn, _ pgx.TraceBatchStartData) context.Context {
	r.n.Add(1)
	return ctx
}
func (r *roundTrips) TraceBatchQuery(context.Context, *pgx.Conn, pgx.TraceBatchQueryData) {}
func (r *roundTrips) TraceBatchEnd(context.Context, *pgx.Conn, pgx.TraceBatchEndData)     {}

// TestBatchCommitsInTwoRoundTrips: a consumer's batch sends its BEGIN with
// the processed-events claim, and its effects and outcome events with the
// COMMIT: two round trips, where a pgx.Tx spends a third on the COMMIT.
func TestBatchCommitsInTwoRoundTrips(t *testing.T) {
	t.Parallel()
	base, _ := testenv.Postgres(t)
	ctx := context.Background()
	cfg := base.Config()
	trips := &roundTrips{}
	cfg.ConnConfig.Tracer = trips
	cfg.MaxConns = 1
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer pool.Close()
	batch := func() error {
		return messaging.OnceBatchAll(ctx, pool, "c", []*messaging.Delivery{{Envelope: newOrderCreated(t)}},
			func(ctx context.Context, tx pgx.Tx, _ []*messaging.Delivery) error {
				b := &pgx.Batch{}
				b.Queue("SELECT 1")
				return messaging.SendWithEvents(ctx, tx, b, []messaging.Outgoing{{Ctx: ctx, Env: newOrderCreated(t)}})
			})
	}
	if err := batch(); err != nil { // connects and prepares the statements
		t.Fatal(err)
	}
	trips.n.Store(0)
	if err := batch(); err != nil {
		t.Fatal(err)
	}
	if n := trips.n.Load(); n != 2 {
		t.Errorf("a batch of one event took %d round trips; want 2: the BEGIN with the claim, the effects with the COMMIT", n)
	}
	if n := testenv.Scalar(t, pool, "SELECT count(*) FROM outbox"); n != 2 {
		t.Errorf("%d events in the outbox after two batches; want 2", n)
	}
}

// TestStatementsSentWithTheCommit: statements held for the COMMIT
// (SendWithEvents in InTx) commit with the transaction or not at all. When
// one fails, InTx returns its error, nothing of the transaction commits and
// no relay is woken; a statement sent after them sends them first; and a
// transaction whose statement failed never commits silently.
func TestStatementsSentWithTheCommit(t *testing.T) {
	t.Parallel()
	pool, schema := testenv.Postgres(t)
	ctx := context.Background()
	woken := relaysWoken(t, schema)
	stored := func(id string) int64 {
		t.Helper()
		return testenv.Scalar(t, pool, fmt.Sprintf("SELECT count(*) FROM outbox WHERE id = '%s'", id))
	}
	dup := newOrderCreated(t)
	if err := messaging.InTx(ctx, pool, func(tx pgx.Tx) error { return messaging.Enqueue(ctx, tx, dup) }); err != nil {
		t.Fatal(err)
	}
	woken()

	first := newOrderCreated(t)
	err := messaging.InTx(ctx, pool, func(tx pgx.Tx) error {
		if err := messaging.Enqueue(ctx, tx, first); err != nil {
			return err
		}
		return messaging.SendWithEvents(ctx, tx, &pgx.Batch{}, []messaging.Outgoing{{Ctx: ctx, Env: dup}})
	})
	var pgErr *pgconn.PgError
	if !errors.As(err, &pgErr) || pgErr.Code != "23505" {
		t.Errorf("an event already in the outbox, sent with the commit: err %v; want the unique violation", err)
	}
	if n, w := stored(first.GetId()), woken(); n != 0 || w {
		t.Errorf("after the commit failed: the transaction's other event stored %d times, relays woken %v; want 0 and not woken", n, w)
	}

	second := newOrderCreated(t)
	var seen int64
	err = messaging.InTx(ctx, pool, func(tx pgx.Tx) error {
		if err := messaging.SendWithEvents(ctx, tx, &pgx.Batch{}, []messaging.Outgoing{{Ctx: ctx, Env: second}}); err != nil {
			return err
		}
		return tx.QueryRow(ctx, "SELECT count(*) FROM outbox WHERE id = $1", second.GetId()).Scan(&seen)
	})
	if err != nil || seen != 1 || stored(second.GetId()) != 1 || !woken() {
		t.Errorf("a statement after the held ones: err %v, saw the event %d times; want no error, 1, committed and relays woken", err, seen)
	}

	third := newOrderCreated(t)
	err = messaging.InTx(ctx, pool, func(tx pgx.Tx) error {
		_, _ = tx.Exec(ctx, "SELECT 1/0") //nolint:errcheck // a handler that ignores a failed statement
		return messaging.SendWithEvents(ctx, tx, &pgx.Batch{}, []messaging.Outgoing{{Ctx: ctx, Env: third}})
	})
	if err == nil || stored(third.GetId()) != 0 {
		t.Errorf("a transaction whose statement failed: err %v, event stored %d times; want an error and nothing stored", err, stored(third.GetId()))
	}

	connectionsBackIdle(t, pool)
}

// TestHeldStatementsFailAlone: what InTx holds for the COMMIT never commits
// past a failure. A batch with a callback, which could only run once the
// COMMIT had, is sent at once, so its callback's error or panic rolls the
// transaction back; OnceBatch sends an event's held statements before the
// next event's, so their failure names their event; a held statement that
// could not be sent fails the commit even if fn ignored it; and a fn that
// ends its goroutine (t.FailNow) leaves no connection behind.
func TestHeldStatementsFailAlone(t *testing.T) {
	t.Parallel()
	pool, _ := testenv.Postgres(t)
	ctx := context.Background()
	if _, err := pool.Exec(ctx, "CREATE TABLE held (x int)"); err != nil {
		t.Fatal(err)
	}
	for name, callback := range map[string]func(pgconn.CommandTag) error{
		"callback fails":  func(pgconn.CommandTag) error { return errors.New("callback refuses") },
		"callback panics": func(pgconn.CommandTag) error { panic("callback panics") },
	} {
		err := func() (err error) {
			defer func() {
				if p := recover(); p != nil {
					err = fmt.Errorf("panic: %v", p)
				}
			}()
			return messaging.InTx(ctx, pool, func(tx pgx.Tx) error {
				b := &pgx.Batch{}
				b.Queue("INSERT INTO held VALUES (1)").Exec(callback)
				return messaging.SendWithEvents(ctx, tx, b, nil)
			})
		}()
		if n := testenv.Scalar(t, pool, "SELECT count(*) FROM held"); err == nil || n != 0 {
			t.Errorf("%s: err %v, %d rows committed; want an error and none", name, err, n)
		}
	}

	// A held statement that cannot even be sent (an argument pgx cannot
	// encode) leaves the transaction open: a fn that ignores the error of
	// the statement that sent it must still not commit.
	err := messaging.InTx(ctx, pool, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, "INSERT INTO held VALUES (2)"); err != nil {
			return err
		}
		b := &pgx.Batch{}
		b.Queue("INSERT INTO held VALUES ($1)", make(chan int))
		if err := messaging.SendWithEvents(ctx, tx, b, nil); err != nil {
			return err
		}
		_, _ = tx.Exec(ctx, "SELECT 1") //nolint:errcheck // a handler that ignores a failed statement
		return nil
	})
	if n := testenv.Scalar(t, pool, "SELECT count(*) FROM held"); err == nil || n != 0 {
		t.Errorf("a held statement that could not be sent: err %v, %d rows committed; want an error and none", err, n)
	}

	d1, d2 := &messaging.Delivery{Envelope: newOrderCreated(t)}, &messaging.Delivery{Envelope: newOrderCreated(t)}
	err = messaging.OnceBatch(ctx, pool, "c", []*messaging.Delivery{d1, d2}, func(ctx context.Context, tx pgx.Tx, d *messaging.Delivery) error {
		b := &pgx.Batch{}
		if d == d1 {
			b.Queue("SELECT 1/0")
		} else {
			b.Queue("SELECT 1")
		}
		return messaging.SendWithEvents(ctx, tx, b, nil)
	})
	var ee *messaging.EventError
	if !errors.As(err, &ee) || ee.Delivery != d1 {
		t.Errorf("the first event's held statement fails: err %v; want an EventError naming the first event", err)
	}

	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = messaging.InTx(ctx, pool, func(pgx.Tx) error { //nolint:errcheck // it never returns
			runtime.Goexit()
			return nil
		})
	}()
	<-done
	connectionsBackIdle(t, pool)
}
