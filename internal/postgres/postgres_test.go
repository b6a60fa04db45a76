package postgres_test

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"net/url"
	"sync"
	"testing"
	"testing/fstest"

	"github.com/jackc/pgx/v5"

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
		conn, err := pgx.Connect(context.Background(), testenv.DatabaseURL())
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
