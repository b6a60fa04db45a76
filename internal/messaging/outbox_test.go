package messaging_test

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/shopbus/shopbus/internal/messaging"
	"github.com/shopbus/shopbus/internal/testenv"
)

// TestRelaysWokenOnlyForEvents: a transaction wakes its schema's relays
// once it commits events, and not when it enqueued none (a consumer's
// batch that only records its effects): a pass for nothing costs a
// transaction of three round trips.
func TestRelaysWokenOnlyForEvents(t *testing.T) {
	t.Parallel()
	pool, schema := testenv.Postgres(t)
	ctx := context.Background()
	woken := relaysWoken(t, schema)
	check := func(what string, err error, wantErr, wantWoken bool) {
		t.Helper()
		if w := woken(); (err != nil) != wantErr || w != wantWoken {
			t.Errorf("%s: err %v, relays woken %v; want an error %v, woken %v", what, err, w, wantErr, wantWoken)
		}
	}
	check("a transaction without events", messaging.InTx(ctx, pool, func(tx pgx.Tx) error {
		_, err := tx.Exec(ctx, "SELECT 1")
		return err
	}), false, false)
	nothing := func(context.Context, pgx.Tx, []*messaging.Delivery) error { return nil }
	check("a batch without events", messaging.OnceBatchAll(ctx, pool, "c", []*messaging.Delivery{{Envelope: newOrderCreated(t)}}, nothing), false, false)
	check("a batch with an event", messaging.OnceBatchAll(ctx, pool, "c", []*messaging.Delivery{{Envelope: newOrderCreated(t)}},
		func(ctx context.Context, tx pgx.Tx, _ []*messaging.Delivery) error {
			return messaging.SendWithEvents(ctx, tx, &pgx.Batch{}, []messaging.Outgoing{{Ctx: ctx, Env: newOrderCreated(t)}})
		}), false, true)
	check("a transaction with an event", messaging.InTx(ctx, pool, func(tx pgx.Tx) error {
		return messaging.Enqueue(ctx, tx, newOrderCreated(t))
	}), false, true)
	check("a transaction rolled back", messaging.InTx(ctx, pool, func(tx pgx.Tx) error {
		if err := messaging.Enqueue(ctx, tx, newOrderCreated(t)); err != nil {
			return err
		}
		return context.Canceled
	}), true, false)
}

// relaysWoken returns a function that reports whether schema's relays in
// this process were woken since it last looked, until the test ends.
func relaysWoken(t *testing.T, schema string) func() bool {
	wakes, stop := messaging.RelayWakes(schema)
	t.Cleanup(stop)
	return func() bool {
		select {
		case <-wakes:
			return true
		default:
			return false
		}
	}
}

// TestFailedBeginningReturnsTheConnection: when a statement sent with the
// BEGIN fails, or its callback fails or panics, the transaction is rolled
// back and its connection goes back to the pool, never left in a
// transaction.
func TestFailedBeginningReturnsTheConnection(t *testing.T) {
	t.Parallel()
	pool, _ := testenv.Postgres(t)
	ctx := context.Background()
	ran := false
	fn := func(pgx.Tx) error { ran = true; return nil }
	for name, queue := range map[string]func(*pgx.Batch){
		"statement fails": func(b *pgx.Batch) { b.Queue("SELECT 1/0") },
		"callback fails": func(b *pgx.Batch) {
			b.Queue("SELECT 1").Exec(func(pgconn.CommandTag) error { return errors.New("callback") })
		},
		"callback panics": func(b *pgx.Batch) {
			b.Queue("SELECT 1").Exec(func(pgconn.CommandTag) error { panic("callback") })
		},
	} {
		err := func() (err error) {
			defer func() {
				if p := recover(); p != nil {
					err = fmt.Errorf("panic: %v", p)
				}
			}()
			return messaging.InTxBeginningWith(ctx, pool, queue, fn)
		}()
		if err == nil || ran {
			t.Errorf("%s: err %v, fn ran %v; want an error and fn not run", name, err, ran)
		}
	}
	connectionsBackIdle(t, pool)
}

// connectionsBackIdle checks that every connection of pool is back in it,
// and none in a transaction.
func connectionsBackIdle(t *testing.T, pool *pgxpool.Pool) {
	t.Helper()
	testenv.CheckFor(t, 5*time.Second, 10*time.Millisecond, func() error {
		if n := pool.Stat().AcquiredConns(); n != 0 {
			return fmt.Errorf("%d connections still acquired", n)
		}
		return nil
	})
	for _, c := range pool.AcquireAllIdle(context.Background()) {
		if st := c.Conn().PgConn().TxStatus(); st != 'I' {
			t.Errorf("a connection back in the pool is in a transaction (status %c)", st)
		}
		c.Release()
	}
}
