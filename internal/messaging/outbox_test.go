package messaging_test

import (
	"context"
	"testing"

	"github.com/jackc/pgx/v5"

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
	wakes, stop := messaging.RelayWakes(schema)
	defer stop()
	woken := func() bool {
		select {
		case <-wakes:
			return true
		default:
			return false
		}
	}
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
