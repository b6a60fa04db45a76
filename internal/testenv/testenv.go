// Package testenv gives integration tests the real dependencies, isolated
// per test: an embedded nats-server with its own store, and a fresh schema in
// the local PostgreSQL (DATABASE_URL, default postgres.DefaultURL), dropped
// at cleanup.
package testenv

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net/url"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"google.golang.org/protobuf/proto"

	"github.com/shopbus/shopbus/internal/event"
	"github.com/shopbus/shopbus/internal/messaging"
	"github.com/shopbus/shopbus/internal/natsembed"
	"github.com/shopbus/shopbus/internal/postgres"
	"github.com/shopbus/shopbus/internal/servicekit"
	"github.com/shopbus/shopbus/services"
)

// DatabaseURL is DATABASE_URL or the local server.
func DatabaseURL() string {
	if u := os.Getenv("DATABASE_URL"); u != "" {
		return u
	}
	return postgres.DefaultURL
}

// StackDatabaseURL is DatabaseURL for a test that starts a whole stack
// (six services with two pools each): pools of StackPoolSize connections
// unless DATABASE_URL names a pool size. The server's 100 connections are
// shared by the tests running alongside: two stack tests with the services'
// default pools of 16 went past them.
func StackDatabaseURL() string {
	if strings.Contains(DatabaseURL(), "pool_max_conns") {
		return DatabaseURL()
	}
	return WithPoolSize(DatabaseURL(), StackPoolSize)
}

// StackPoolSize is the pool size of StackDatabaseURL.
const StackPoolSize = 4

// WithPoolSize returns the database URL u with pools of n connections.
func WithPoolSize(u string, n int) string {
	parsed, err := url.Parse(u)
	if err != nil || parsed.Scheme == "" {
		return u // a key=value DSN: left as it is
	}
	q := parsed.Query()
	q.Set("pool_max_conns", strconv.Itoa(n))
	parsed.RawQuery = q.Encode()
	return parsed.String()
}

// AdminURL is DatabaseURL with the server's maintenance database
// (postgres), which exists on a fresh server: for creating, closing and
// dropping databases of a test's own.
func AdminURL() string {
	u, err := url.Parse(DatabaseURL())
	if err != nil {
		return DatabaseURL()
	}
	u.Path = "/postgres"
	return u.String()
}

// Runtime returns the runtime of the service name for the test: a JetStream
// on its own embedded nats-server (NATS), a fresh schema migrated with the
// service's migrations (Postgres, services.Migrations), and a logger that
// writes nowhere.
func Runtime(t testing.TB, name string) servicekit.Runtime {
	t.Helper()
	_, js := NATS(t)
	pool, schema := Postgres(t, services.Migrations(name))
	return servicekit.NewRuntime(name, pool, js, schema, slog.New(slog.DiscardHandler))
}

// Run runs svc (a service) until the test ends and returns the context it
// runs under, for the test's calls. An error Run returns before the end
// fails the test.
func Run(t testing.TB, svc interface{ Run(context.Context) error }) context.Context {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- svc.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil && !errors.Is(err, context.Canceled) {
			t.Error(err)
		}
	})
	return ctx
}

// NATS starts an embedded nats-server for the test, with the catalog's
// streams declared, and returns it and a JetStream client.
func NATS(t testing.TB) (*server.Server, jetstream.JetStream) {
	t.Helper()
	return NATSWith(t, messaging.StreamOptions{})
}

// NATSWith is NATS with the streams declared with opts (a partition count
// of the test's own, say).
func NATSWith(t testing.TB, opts messaging.StreamOptions) (*server.Server, jetstream.JetStream) {
	t.Helper()
	s, err := natsembed.Start(natsembed.Options{StoreDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	nc, err := nats.Connect(s.ClientURL(), nats.InProcessServer(s))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		nc.Close()
		s.Shutdown()
		s.WaitForShutdown()
	})
	js, err := messaging.NewJetStream(nc)
	if err != nil {
		t.Fatal(err)
	}
	opts.AtomicBatches = true // the embedded server has them
	if err := messaging.EnsureStreams(context.Background(), js, opts); err != nil {
		t.Fatal(err)
	}
	return s, js
}

// Schema returns a new schema name, unique to this run.
func Schema() string {
	b := make([]byte, 6)
	_, _ = rand.Read(b)
	return "t_" + hex.EncodeToString(b)
}

// Postgres opens a pool on a fresh schema migrated with the messaging tables
// and migrations; the schema is dropped at cleanup.
func Postgres(t testing.TB, migrations ...fs.FS) (*pgxpool.Pool, string) {
	t.Helper()
	schema := Schema()
	pool, err := postgres.Open(context.Background(), DatabaseURL(), schema, true,
		append([]fs.FS{messaging.Migrations()}, migrations...)...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		pool.Close()
		DropSchemas(t, schema)
	})
	return pool, schema
}

// DropStackSchemas drops the schemas a stack on base made: base_<service>
// for every service (services.Names).
func DropStackSchemas(t testing.TB, base string) {
	t.Helper()
	var schemas []string
	for _, name := range services.Names() {
		schemas = append(schemas, base+"_"+name)
	}
	DropSchemas(t, schemas...)
}

// DropSchemas drops schemas and everything in them.
func DropSchemas(t testing.TB, schemas ...string) {
	t.Helper()
	conn, err := pgx.Connect(context.Background(), DatabaseURL())
	if err != nil {
		t.Errorf("drop schemas: %v", err)
		return
	}
	defer conn.Close(context.Background())
	for _, s := range schemas {
		if _, err := conn.Exec(context.Background(), "DROP SCHEMA IF EXISTS "+pgx.Identifier{s}.Sanitize()+" CASCADE"); err != nil {
			t.Errorf("drop schema %s: %v", s, err)
		}
	}
}

// CheckFor calls f every interval until it returns nil, and fails the test
// with f's last error if that has not happened within total: a condition
// polled with a deadline instead of a sleep.
func CheckFor(t testing.TB, total, interval time.Duration, f func() error) {
	t.Helper()
	deadline := time.Now().Add(total)
	for {
		err := f()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("not within %v: %v", total, err)
		}
		time.Sleep(interval)
	}
}

// WaitSettled waits (up to 30s) until the consumer group durable on stream
// has settled the events at the stream sequences seqs and everything before
// them in their partitions (messaging.Settled).
func WaitSettled(t testing.TB, js jetstream.JetStream, stream, durable string, seqs ...uint64) {
	t.Helper()
	CheckFor(t, 30*time.Second, 20*time.Millisecond, func() error {
		for _, seq := range seqs {
			ok, err := messaging.Settled(context.Background(), js, stream, durable, seq)
			if err != nil {
				return err
			}
			if !ok {
				return fmt.Errorf("%s has not settled %s #%d", durable, stream, seq)
			}
		}
		return nil
	})
}

// Scope is a testing.TB whose Cleanup functions run when Close is called
// rather than at the end of the test: a benchmark that builds a fresh
// environment each round (a NATS server, a PostgreSQL schema and pool)
// releases it at the round's end.
type Scope struct {
	testing.TB
	cleanups []func()
}

// NewScope returns a scope of tb.
func NewScope(tb testing.TB) *Scope { return &Scope{TB: tb} }

// Cleanup registers f to run at Close.
func (s *Scope) Cleanup(f func()) { s.cleanups = append(s.cleanups, f) }

// Close runs the cleanups, last registered first.
func (s *Scope) Close() {
	for i := len(s.cleanups) - 1; i >= 0; i-- {
		s.cleanups[i]()
	}
	s.cleanups = nil
}

// Publish publishes msg onto its subject as its declared producer would, as
// a new event (a fresh envelope and Nats-Msg-Id), and returns its stream
// sequence.
func Publish(t testing.TB, js jetstream.JetStream, msg proto.Message) uint64 {
	t.Helper()
	spec, err := event.SpecOf(msg)
	if err != nil {
		t.Fatal(err)
	}
	env, err := event.New(context.Background(), msg, event.WithSource(spec.Producer))
	if err != nil {
		t.Fatal(err)
	}
	b, err := event.Encode(env)
	if err != nil {
		t.Fatal(err)
	}
	ack, err := js.PublishMsg(context.Background(), &nats.Msg{Subject: spec.SubjectFor(env.GetPartitionKey()), Data: b, Header: event.Headers(env)},
		jetstream.WithMsgID(env.GetId()))
	if err != nil {
		t.Fatal(err)
	}
	return ack.Sequence
}

// Scalar runs sql, a query of one integer, on pool.
func Scalar(t testing.TB, pool *pgxpool.Pool, sql string) int64 {
	t.Helper()
	var n int64
	if err := pool.QueryRow(context.Background(), sql).Scan(&n); err != nil {
		t.Fatalf("%s: %v", sql, err)
	}
	return n
}
