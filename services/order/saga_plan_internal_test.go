package order

import (
	"context"
	"testing"

	"github.com/jackc/pgx/v5"

	"github.com/shopbus/shopbus/internal/testenv"
	"github.com/shopbus/shopbus/services"
)

// TestSagaFindsOrdersByIndexAsTheTableGrows: the saga reads and writes
// orders through the primary key however small the table was when the
// connection first ran its statements. A generic plan made on a table of
// three orders scanned the whole table, on every event, until PostgreSQL
// next analyzed it.
func TestSagaFindsOrdersByIndexAsTheTableGrows(t *testing.T) {
	t.Parallel()
	pool, _ := testenv.Postgres(t, services.Migrations("order"))
	ctx := context.Background()
	conn, err := pool.Acquire(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Release()
	insert := func(n int) []string {
		t.Helper()
		rows, err := conn.Query(ctx, `INSERT INTO orders (id, customer_id, idempotency_key, request_hash, currency, total_minor)
			SELECT gen_random_uuid(), gen_random_uuid(), 'k' || g, '\x00', 'EUR', 100 FROM generate_series(1, $1) g
			RETURNING id::text`, n)
		if err != nil {
			t.Fatal(err)
		}
		ids, err := pgx.CollectRows(rows, pgx.RowTo[string])
		if err != nil {
			t.Fatal(err)
		}
		return ids
	}
	// scans runs the saga's read and write of order id, on conn, and
	// returns the sequential scans of orders they made.
	scans := func(id string) int64 {
		t.Helper()
		tx, err := conn.Begin(ctx)
		if err != nil {
			t.Fatal(err)
		}
		defer tx.Rollback(ctx) //nolint:errcheck // nothing to keep
		// The counts of this backend not yet reported, earlier
		// transactions' included: what changes is this one's.
		count := func() (n int64) {
			if err := tx.QueryRow(ctx, `SELECT seq_scan FROM pg_stat_xact_user_tables WHERE relid = 'orders'::regclass`).Scan(&n); err != nil {
				t.Fatal(err)
			}
			return n
		}
		before := count()
		orders, err := loadSaga(ctx, tx, []string{id})
		if err != nil || orders[id] == nil {
			t.Fatalf("load order %s: %v, %v", id, orders, err)
		}
		orders[id].changed = true
		if _, err := (&Service{}).saveSaga(ctx, tx, orders); err != nil {
			t.Fatal(err)
		}
		return count() - before
	}
	few := insert(3)
	for range 10 { // past the five custom plans after which PostgreSQL may keep a generic one
		scans(few[0])
	}
	many := insert(5000)
	if n := scans(many[len(many)-1]); n != 0 {
		t.Errorf("%d sequential scans of orders for one order among 5,003; want it found by its id", n)
	}
}
