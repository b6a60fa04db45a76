package messaging

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
)

// InTx runs fn in a transaction on pool and, once it committed, wakes the
// relays of pool's schema (its search_path) running in this process if fn
// enqueued events (Enqueue, SendWithEvents), so they are published at once.
// Every shopbus process that enqueues runs its schema's relay; rows written
// by a process that runs none are published at the relay's next poll.
//
// The statements fn sends last with SendWithEvents go in the round trip of
// the COMMIT (txn): their errors, if any, are InTx's, and nothing of fn's
// commits. fn's transaction has no savepoints (its Begin fails).
func InTx(ctx context.Context, pool *pgxpool.Pool, fn func(tx pgx.Tx) error) error {
	return inTx(ctx, pool, nil, fn)
}

// txBatch returns a batch that begins a transaction: sent by inTx, its
// statements share the round trip of the BEGIN.
func txBatch() *pgx.Batch {
	b := &pgx.Batch{}
	b.Queue("begin")
	return b
}

// inTx is InTx, the transaction begun by first (a txBatch) when it is not
// nil: first's statements and their callbacks run before fn, in the round
// trip of the BEGIN, and a failure of theirs rolls back.
func inTx(ctx context.Context, pool *pgxpool.Pool, first *pgx.Batch, fn func(tx pgx.Tx) error) error {
	if first == nil {
		first = txBatch()
	}
	conn, err := pool.Acquire(ctx)
	if err != nil {
		return err
	}
	t := &txn{conn: conn}
	defer func() {
		// Also when fn panics or calls runtime.Goexit (t.FailNow).
		p := recover()
		if !t.closed {
			_ = t.Rollback(ctx) //nolint:errcheck // the panic, or the error returned, is what to report
		}
		if p != nil {
			panic(p)
		}
	}()
	if err := conn.SendBatch(ctx, first).Close(); err != nil {
		return err // rolled back by the deferred call
	}
	if err := fn(t); err != nil {
		return err
	}
	if err := t.Commit(ctx); err != nil {
		return err
	}
	if t.enqueued {
		WakeRelays(pool)
	}
	return nil
}

// errNoSavepoints is the error of txn.Begin.
var errNoSavepoints = errors.New("messaging: a transaction run by InTx has no savepoints")

// txn is a transaction run by inTx on a connection of its pool. Its last
// statements share the round trip of its COMMIT (sendAtCommit): a batch's
// effects and outcome events, a relay's marks. A consumer batch of one
// event then pays two round trips (BEGIN with the claim, the effects with
// the COMMIT) and a relay pass two, where pgx.Tx pays a round trip for the
// COMMIT alone (docs/benchmarks.md). It also records that outbox rows were
// written (markEnqueued), so that inTx wakes the relays only then.
type txn struct {
	conn     *pgxpool.Conn
	enqueued bool
	// atCommit holds the statements sent with the COMMIT; ends are told
	// their outcome. Any other statement sends them first.
	atCommit *pgx.Batch
	ends     []func(error)
	// failed is the error of held statements sent before the COMMIT:
	// the transaction must not commit without them, even if fn ignored
	// the error (one that never reached the server leaves it open).
	failed error
	closed bool
}

var _ pgx.Tx = (*txn)(nil)

// sendAtCommit sends b on tx: in the round trip of its COMMIT when inTx
// runs tx (end is told the outcome then), else at once. A statement sent on
// tx in between sends b before it. b's arguments are encoded when it is
// sent. A batch with a callback (QueuedQuery.Exec, Query, QueryRow) is sent
// at once: its callback runs after the server has answered, when the
// COMMIT would already have run, so it could not stop it.
func sendAtCommit(ctx context.Context, tx pgx.Tx, b *pgx.Batch, end func(error)) error {
	t, ok := tx.(*txn)
	if !ok || t.closed || slices.ContainsFunc(b.QueuedQueries, func(q *pgx.QueuedQuery) bool { return q.Fn != nil }) {
		err := tx.SendBatch(ctx, b).Close()
		end(err)
		return err
	}
	if t.atCommit == nil {
		t.atCommit = &pgx.Batch{}
	}
	t.atCommit.QueuedQueries = append(t.atCommit.QueuedQueries, b.QueuedQueries...)
	t.ends = append(t.ends, end)
	return nil
}

// sendHeld sends the statements tx holds for its COMMIT, if any.
func sendHeld(ctx context.Context, tx pgx.Tx) error {
	if t, ok := tx.(*txn); ok {
		return t.flush(ctx)
	}
	return nil
}

// markEnqueued records that tx wrote outbox rows, when inTx runs it.
func markEnqueued(tx pgx.Tx) {
	if t, ok := tx.(*txn); ok {
		t.enqueued = true
	}
}

// flush sends the statements held for the COMMIT, before another.
func (t *txn) flush(ctx context.Context) error {
	if t.closed {
		return pgx.ErrTxClosed
	}
	if t.atCommit == nil {
		return nil
	}
	b := t.atCommit
	t.atCommit = nil
	err := errRolledBack // unless sent
	defer t.settle(&err)
	err = t.conn.SendBatch(ctx, b).Close()
	if err != nil {
		t.failed = err
	}
	return err
}

// settle tells the held statements' ends their outcome, *err, once.
func (t *txn) settle(err *error) {
	ends := t.ends
	t.ends = nil
	for _, end := range ends {
		end(*err)
	}
}

// Commit sends the statements held for it and the COMMIT in one round
// trip. If any fails, nothing commits and its error is returned.
func (t *txn) Commit(ctx context.Context) error {
	if t.closed {
		return pgx.ErrTxClosed
	}
	if t.failed != nil {
		_ = t.Rollback(ctx) //nolint:errcheck // the statements' error is the one to report
		return fmt.Errorf("commit: a statement held for it failed: %w", t.failed)
	}
	b := t.atCommit
	t.atCommit = nil
	if b == nil {
		b = &pgx.Batch{}
	}
	b.Queue("commit").Exec(func(tag pgconn.CommandTag) error {
		if tag.String() == "ROLLBACK" { // the transaction had failed
			return pgx.ErrTxCommitRollback
		}
		return nil
	})
	err := errRolledBack // unless sent
	defer t.settle(&err)
	err = t.conn.SendBatch(ctx, b).Close()
	t.settle(&err)
	if err != nil {
		_ = t.Rollback(ctx) //nolint:errcheck // the commit's error is the one to report
		return fmt.Errorf("commit: %w", err)
	}
	t.closed = true
	t.conn.Release()
	return nil
}

// Rollback ends the transaction, if it is still open, and hands its
// connection back to the pool, which closes it unless it is idle.
func (t *txn) Rollback(ctx context.Context) error {
	if t.closed {
		return pgx.ErrTxClosed
	}
	t.closed = true
	defer t.conn.Release()
	err := errRolledBack
	t.settle(&err)
	t.atCommit = nil
	// After a panic in a batch's callback the connection is busy, and its
	// status is stale: Release closes it.
	c := t.conn.Conn()
	if c.IsClosed() || c.PgConn().TxStatus() == 'I' {
		return nil // nothing open; or the pool closes the connection
	}
	// Even once ctx is done (a stop, a timeout), so that the connection
	// goes back to the pool rather than being closed; bounded, should the
	// server not answer.
	rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), rollbackTimeout)
	defer cancel()
	_, err = c.Exec(rctx, "rollback")
	return err
}

// rollbackTimeout bounds a rollback.
const rollbackTimeout = 5 * time.Second

// errRolledBack tells the statements held for the COMMIT that it never came.
var errRolledBack = errors.New("rolled back before the commit")

// Begin fails: fn's transaction has no savepoints.
func (t *txn) Begin(context.Context) (pgx.Tx, error) { return nil, errNoSavepoints }

// Exec runs sql after the statements held for the COMMIT.
func (t *txn) Exec(ctx context.Context, sql string, args ...any) (pgconn.CommandTag, error) {
	if err := t.flush(ctx); err != nil {
		return pgconn.CommandTag{}, err
	}
	return t.conn.Exec(ctx, sql, args...)
}

// Query runs sql after the statements held for the COMMIT.
func (t *txn) Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error) {
	if err := t.flush(ctx); err != nil {
		return nil, err
	}
	return t.conn.Query(ctx, sql, args...)
}

// QueryRow runs sql after the statements held for the COMMIT.
func (t *txn) QueryRow(ctx context.Context, sql string, args ...any) pgx.Row {
	if err := t.flush(ctx); err != nil {
		return errRow{err}
	}
	return t.conn.QueryRow(ctx, sql, args...)
}

// SendBatch sends b after the statements held for the COMMIT.
func (t *txn) SendBatch(ctx context.Context, b *pgx.Batch) pgx.BatchResults {
	if err := t.flush(ctx); err != nil {
		return pgx.FailedBatchResults(b, err)
	}
	return t.conn.SendBatch(ctx, b)
}

// CopyFrom copies after the statements held for the COMMIT.
func (t *txn) CopyFrom(ctx context.Context, table pgx.Identifier, columns []string, src pgx.CopyFromSource) (int64, error) {
	if err := t.flush(ctx); err != nil {
		return 0, err
	}
	return t.conn.CopyFrom(ctx, table, columns, src)
}

// Prepare prepares sql after the statements held for the COMMIT.
func (t *txn) Prepare(ctx context.Context, name, sql string) (*pgconn.StatementDescription, error) {
	if err := t.flush(ctx); err != nil {
		return nil, err
	}
	return t.conn.Conn().Prepare(ctx, name, sql)
}

// LargeObjects is not supported: its methods panic.
func (t *txn) LargeObjects() pgx.LargeObjects { return pgx.LargeObjects{} }

// Conn returns the transaction's connection. Statements sent on it
// directly do not send those held for the COMMIT first.
func (t *txn) Conn() *pgx.Conn { return t.conn.Conn() }

// errRow is a pgx.Row whose Scan returns err.
type errRow struct{ err error }

// Scan returns the error.
func (r errRow) Scan(...any) error { return r.err }
