// Package postgres opens shopbus's PostgreSQL connection pools and applies a
// service's embedded migrations. Each service keeps its tables in a schema of
// its own (search_path), so services share a database but never a table.
package postgres

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"path"
	"slices"
	"strings"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
)

// DefaultURL is the local server of a development machine.
const DefaultURL = "postgres://postgres@127.0.0.1:5432/shopbus?sslmode=disable"

// DefaultMaxConns is the size of each service's pool unless DATABASE_URL
// sets pool_max_conns.
const DefaultMaxConns = 16

// ErrUnavailable means the server could not be reached.
var ErrUnavailable = errors.New("postgres unavailable")

// Open connects to url with search_path set to schema, creates the schema
// (and, when it is missing and createDB is true, the database), and applies
// the migrations: every "*.sql" file in every fs.FS given, in file name order
// across all of them ("000_outbox.sql" before "001_orders.sql"), each once, in
// a transaction, under an advisory lock so that concurrent starts are safe.
func Open(ctx context.Context, url, schema string, createDB bool, migrations ...fs.FS) (*pgxpool.Pool, error) {
	if !validIdent(schema) {
		return nil, fmt.Errorf("postgres: schema %q must be lower-case letters, digits and underscores", schema)
	}
	cfg, err := pgxpool.ParseConfig(url)
	if err != nil {
		return nil, fmt.Errorf("postgres: DATABASE_URL: %w", err)
	}
	cfg.ConnConfig.RuntimeParams["search_path"] = schema
	if !strings.Contains(url, "pool_max_conns") {
		// pgxpool's default is max(4, CPUs): too few for a service whose
		// relay, LISTEN connection and consumers hold connections beside
		// its RPCs. DATABASE_URL's pool_max_conns overrides this.
		cfg.MaxConns = DefaultMaxConns
	}
	if createDB {
		if err := createDatabase(ctx, cfg.ConnConfig); err != nil {
			return nil, err
		}
	}
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("postgres: %w", err)
	}
	if err := pool.Ping(ctx); err != nil {
		pool.Close()
		return nil, fmt.Errorf("%w: %s:%d: %w", ErrUnavailable, cfg.ConnConfig.Host, cfg.ConnConfig.Port, err)
	}
	if err := migrate(ctx, pool, schema, migrations); err != nil {
		pool.Close()
		return nil, err
	}
	return pool, nil
}

// createDatabase creates the database named in cfg if it does not exist,
// connecting to the "postgres" maintenance database to do so.
func createDatabase(ctx context.Context, cfg *pgx.ConnConfig) error {
	conn, err := pgx.ConnectConfig(ctx, cfg)
	if err == nil {
		return conn.Close(ctx)
	}
	var pgErr *pgconn.PgError
	if !errors.As(err, &pgErr) || pgErr.Code != "3D000" { // invalid_catalog_name
		return fmt.Errorf("%w: %s:%d: %w", ErrUnavailable, cfg.Host, cfg.Port, err)
	}
	admin := cfg.Copy()
	admin.Database = "postgres"
	conn, err = pgx.ConnectConfig(ctx, admin)
	if err != nil {
		return fmt.Errorf("%w: %s:%d: %w", ErrUnavailable, cfg.Host, cfg.Port, err)
	}
	defer conn.Close(ctx)
	_, err = conn.Exec(ctx, "CREATE DATABASE "+pgx.Identifier{cfg.Database}.Sanitize())
	// A concurrent start won: duplicate_database, or, when both passed the
	// existence check at once, unique_violation on pg_database's name index.
	if errors.As(err, &pgErr) && (pgErr.Code == "42P04" || pgErr.Code == "23505") {
		return nil
	}
	if err != nil {
		return fmt.Errorf("postgres: create database %s: %w", cfg.Database, err)
	}
	return nil
}

func migrate(ctx context.Context, pool *pgxpool.Pool, schema string, sources []fs.FS) error {
	type migration struct {
		name string
		src  fs.FS
	}
	var all []migration
	for _, src := range sources {
		err := fs.WalkDir(src, ".", func(p string, d fs.DirEntry, err error) error {
			if err != nil || d.IsDir() || path.Ext(p) != ".sql" {
				return err
			}
			if slices.ContainsFunc(all, func(m migration) bool { return path.Base(m.name) == path.Base(p) }) {
				return fmt.Errorf("two migrations are named %s", path.Base(p))
			}
			all = append(all, migration{p, src})
			return nil
		})
		if err != nil {
			return fmt.Errorf("postgres: migrations: %w", err)
		}
	}
	slices.SortFunc(all, func(a, b migration) int { return strings.Compare(path.Base(a.name), path.Base(b.name)) })
	conn, err := pool.Acquire(ctx)
	if err != nil {
		return fmt.Errorf("postgres: %w", err)
	}
	defer conn.Release()
	// A session-level advisory lock keyed by the schema serializes concurrent
	// starts of the same service.
	if _, err := conn.Exec(ctx, "SELECT pg_advisory_lock(hashtext($1))", "shopbus.migrate."+schema); err != nil {
		return fmt.Errorf("postgres: lock migrations: %w", err)
	}
	defer conn.Exec(context.WithoutCancel(ctx), "SELECT pg_advisory_unlock(hashtext($1))", "shopbus.migrate."+schema) //nolint:errcheck // released with the session anyway
	ident := pgx.Identifier{schema}.Sanitize()
	if _, err := conn.Exec(ctx, "CREATE SCHEMA IF NOT EXISTS "+ident+`;
		CREATE TABLE IF NOT EXISTS `+ident+`.schema_migrations (
			name text PRIMARY KEY,
			applied_at timestamptz NOT NULL DEFAULT now())`); err != nil {
		return fmt.Errorf("postgres: create schema %s: %w", schema, err)
	}
	for _, m := range all {
		name := m.name
		sql, err := fs.ReadFile(m.src, name)
		if err != nil {
			return fmt.Errorf("postgres: migration %s: %w", name, err)
		}
		err = pgx.BeginFunc(ctx, conn, func(tx pgx.Tx) error {
			tag, err := tx.Exec(ctx, "INSERT INTO schema_migrations (name) VALUES ($1) ON CONFLICT DO NOTHING", path.Base(name))
			if err != nil || tag.RowsAffected() == 0 {
				return err
			}
			_, err = tx.Exec(ctx, string(sql))
			return err
		})
		if err != nil {
			return fmt.Errorf("postgres: migration %s of schema %s: %w", name, schema, err)
		}
	}
	return nil
}

func validIdent(s string) bool {
	return s != "" && len(s) <= 63 && strings.IndexFunc(s, func(r rune) bool {
		return !(r >= 'a' && r <= 'z' || r >= '0' && r <= '9' || r == '_')
	}) < 0 && !(s[0] >= '0' && s[0] <= '9')
}

// IsConflict reports whether err is a transaction that lost to a concurrent
// one: a serialization failure (40001) or a deadlock (40P01). Run again, it
// succeeds; IsUnavailable counts it too, as worth retrying.
func IsConflict(err error) bool {
	var pgErr *pgconn.PgError
	return errors.As(err, &pgErr) && (pgErr.Code == "40001" || pgErr.Code == "40P01")
}

// IsUnavailable reports whether err means the database could not be reached
// or the connection broke (worth retrying later), rather than a bad query or
// a broken rule.
//
// Every failure to connect counts, whatever the server said: a database
// that is closed to connections (55000), not there yet (3D000) or starting
// up refuses as surely as one that is down, and a consumer must pause for
// it rather than spend deliveries.
func IsUnavailable(err error) bool {
	var netErr net.Error
	var pgErr *pgconn.PgError
	var connectErr *pgconn.ConnectError
	switch {
	case errors.Is(err, ErrUnavailable), pgconn.Timeout(err), pgconn.SafeToRetry(err), errors.As(err, &netErr),
		errors.As(err, &connectErr):
		return true
	case errors.As(err, &pgErr):
		// Class 08: connection exception; 57P01..57P03: admin shutdown,
		// crash shutdown, cannot connect now; 40001/40P01: serialization
		// failure and deadlock, which succeed when retried.
		return strings.HasPrefix(pgErr.Code, "08") || pgErr.Code == "57P01" || pgErr.Code == "57P02" ||
			pgErr.Code == "57P03" || pgErr.Code == "40001" || pgErr.Code == "40P01"
	}
	return false
}
