package postgres_test

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net/url"
	"sync"
	"testing"
	"testing/fstest"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/shopbus/shopbus/internal/postgres"
	"github.com/shopbus/shopbus/internal/testenv"
)

// TestConcurrentFirstStart: services started at the same moment against a
// database that does not exist yet each create it or find it created, and
// migrate their schemas; none fails (issue 12: one used to die with a
// unique violation on pg_database's name index).
func TestConcurrentFirstStart(t *testing.T) {
	t.Parallel()
	b := make([]byte, 6)
	_, _ = rand.Read(b)
	db := "shopbus_first_" + hex.EncodeToString(b)
	u, err := url.Parse(testenv.DatabaseURL())
	if err != nil {
		t.Fatal(err)
	}
	u.Path = "/" + db
	t.Cleanup(func() {
		conn, err := pgx.Connect(context.Background(), testenv.AdminURL())
		if err != nil {
			t.Error(err)
			return
		}
		defer conn.Close(context.Background())
		if _, err := conn.Exec(context.Background(), "DROP DATABASE IF EXISTS "+pgx.Identifier{db}.Sanitize()+" WITH (FORCE)"); err != nil {
			t.Error(err)
		}
	})
	migrations := fstest.MapFS{"001_t.sql": {Data: []byte("CREATE TABLE t (id int PRIMARY KEY)")}}
	var wg sync.WaitGroup
	errs := make(chan error, 8)
	for i := range 8 {
		wg.Go(func() {
			schema := []string{"a", "b"}[i%2] // two services, each started four times
			pool, err := postgres.Open(context.Background(), u.String(), schema, true, migrations)
			if err == nil {
				pool.Close()
			}
			errs <- err
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Error(err)
		}
	}
}

// TestClosedDatabaseIsUnavailable: a database closed to connections
// (ALLOW_CONNECTIONS false, as in an outage or a failover) refuses with
// SQLSTATE 55000 inside a connect error; IsUnavailable must say so, or a
// consumer spends its deliveries on it and dead-letters events (issue 12:
// the chaos suite's outage left orders undecided this way).
func TestClosedDatabaseIsUnavailable(t *testing.T) {
	t.Parallel()
	b := make([]byte, 6)
	_, _ = rand.Read(b)
	db := "shopbus_closed_" + hex.EncodeToString(b)
	admin, err := pgx.Connect(context.Background(), testenv.AdminURL())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { admin.Close(context.Background()) })
	ident := pgx.Identifier{db}.Sanitize()
	if _, err := admin.Exec(context.Background(), "CREATE DATABASE "+ident); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if _, err := admin.Exec(context.Background(), "DROP DATABASE IF EXISTS "+ident+" WITH (FORCE)"); err != nil {
			t.Error(err)
		}
	})
	u, err := url.Parse(testenv.DatabaseURL())
	if err != nil {
		t.Fatal(err)
	}
	u.Path = "/" + db
	pool, err := pgxpool.New(context.Background(), u.String())
	if err != nil {
		t.Fatal(err)
	}
	defer pool.Close()
	if _, err := pool.Exec(context.Background(), "SELECT 1"); err != nil {
		t.Fatal(err)
	}
	if _, err := admin.Exec(context.Background(), "ALTER DATABASE "+ident+" ALLOW_CONNECTIONS false"); err != nil {
		t.Fatal(err)
	}
	pool.Reset() // the next query needs a new connection
	_, err = pool.Exec(context.Background(), "SELECT 1")
	if err == nil {
		t.Fatal("a closed database accepted a connection")
	}
	if !postgres.IsUnavailable(fmt.Errorf("reserve stock: %w", err)) {
		t.Errorf("IsUnavailable(%v) = false, want true", err)
	}
	// A bad query is not an outage.
	_, err = admin.Exec(context.Background(), "SELECT * FROM no_such_table")
	if err == nil || postgres.IsUnavailable(err) {
		t.Errorf("IsUnavailable(%v) = true, want false", err)
	}
}
