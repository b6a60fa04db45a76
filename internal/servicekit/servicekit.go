// Package servicekit is what every shopbus service is built on, so that a
// service's own code is its use cases: the Runtime a service runs in (its
// PostgreSQL pools, its JetStream, its schema, its logger and the event
// path's settings), which runs the service's outbox relay, consumer and
// retention; and the edge, which maps the service's domain errors onto
// Connect codes (Errors). internal/stack builds one Runtime per service it
// runs; `shopbus new service` generates services that use it.
package servicekit

import (
	"context"
	"log/slog"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/shopbus/shopbus/internal/messaging"
	"github.com/shopbus/shopbus/internal/telemetry"
)

// Runtime is a service's share of the platform. A service embeds it, so
// its fields are the service's settings.
type Runtime struct {
	// Pool is the pool of the service's RPCs, on its schema (search_path),
	// migrated with messaging.Migrations and the service's migrations.
	Pool *pgxpool.Pool
	// EventPool, when set, is the pool of the event path: the outbox
	// relay, the consumer's transactions and retention (and any LISTEN
	// connection), so that a flood of RPCs, which use Pool, cannot starve
	// it. Pool when nil.
	EventPool *pgxpool.Pool
	// JS is the service's JetStream, on its own NATS identity when the
	// server is closed (natsauth).
	JS jetstream.JetStream
	// Schema is the PostgreSQL schema the service works in (its outbox's).
	Schema string
	// Log is the service's logger.
	Log *slog.Logger
	// Retry is the consumer's retry policy (messaging.DefaultRetry when
	// zero).
	Retry messaging.RetryPolicy
	// DeadLetter stores a message in the dead-letter queue before the
	// consumer terminates it (deadletter.Filer); nil leaves it to the
	// MSG_TERMINATED advisory.
	DeadLetter messaging.DeadLetterFunc
	// Unpublishable files the outbox rows the relay sets aside
	// (deadletter.OutboxFiler); nil leaves them parked in the outbox, logged.
	Unpublishable messaging.UnpublishableFunc
	// Instance names this process in its consumer groups (default: host,
	// process id and a random suffix).
	Instance string
	// Telemetry receives the service's metrics and spans (none when nil).
	Telemetry *telemetry.Telemetry
}

// NewRuntime returns the Runtime of the service named name (its log lines
// say service=<name>) on pool, whose search_path is schema, and js.
func NewRuntime(name string, pool *pgxpool.Pool, js jetstream.JetStream, schema string, log *slog.Logger) Runtime {
	return Runtime{Pool: pool, JS: js, Schema: schema, Log: log.With("service", name)}
}

// Events is the event path's pool: EventPool, or Pool.
func (r *Runtime) Events() *pgxpool.Pool {
	if r.EventPool != nil {
		return r.EventPool
	}
	return r.Pool
}

// Consumer returns cfg (a consumer the service declares) with the
// runtime's settings: instance, retry policy, dead-lettering and telemetry.
func (r *Runtime) Consumer(cfg messaging.ConsumerConfig) messaging.ConsumerConfig {
	cfg.Instance = r.Instance
	cfg.Retry = r.Retry
	cfg.DeadLetter = r.DeadLetter
	cfg.Unpublishable = r.Unpublishable
	cfg.Telemetry = r.Telemetry
	return cfg
}

// Run relays the service's outbox, runs its consumers (each a
// messaging.Subscription whose Config the runtime's settings complete:
// Consumer) and prunes what retention allows, until ctx is done
// (messaging.RunService).
func (r *Runtime) Run(ctx context.Context, subs ...messaging.Subscription) error {
	for i := range subs {
		subs[i].Config = r.Consumer(subs[i].Config)
	}
	return messaging.RunService(ctx, r.Events(), r.JS, r.Schema, r.Log, subs...)
}
