// Package servicekit is what every shopbus service is built on, so that a
// service's own code is its use cases: the Runtime a service runs in (its
// name, PostgreSQL pools, JetStream, schema, logger and the event path's
// settings), which makes the service's events and runs its outbox relay,
// consumers, retention and periodic tasks; the edge, which maps the
// service's domain errors onto Connect codes (Errors); and what RPCs
// share: a token bucket per caller (KeyedLimiter) and list pages (Page).
// internal/stack builds one Runtime per service it runs and hands it to
// the service's New; `shopbus new service` generates services that use it.
package servicekit

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/nats-io/nats.go/jetstream"
	"google.golang.org/protobuf/proto"

	eventv1 "github.com/shopbus/shopbus/gen/go/shopbus/event/v1"
	"github.com/shopbus/shopbus/internal/event"
	"github.com/shopbus/shopbus/internal/messaging"
	"github.com/shopbus/shopbus/internal/telemetry"
)

// Runtime is a service's share of the platform. A service embeds it, so
// its fields are the service's settings.
type Runtime struct {
	// Name is the service's name ("order"): its envelopes' source is
	// "shopbus/<Name>" (Source).
	Name string
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
	return Runtime{Name: name, Pool: pool, JS: js, Schema: schema, Log: log.With("service", name)}
}

// Source names the service in the envelopes it produces:
// "shopbus/<Name>", the producer the event catalog declares for its events.
func (r *Runtime) Source() string { return "shopbus/" + r.Name }

// NewEvent returns msg in a new envelope from the service (event.New with
// Source, then opts).
func (r *Runtime) NewEvent(ctx context.Context, msg proto.Message, opts ...event.Option) (*eventv1.Envelope, error) {
	return event.New(ctx, msg, append([]event.Option{event.WithSource(r.Source())}, opts...)...)
}

// Events is the event path's pool: EventPool, or Pool.
func (r *Runtime) Events() *pgxpool.Pool {
	if r.EventPool != nil {
		return r.EventPool
	}
	return r.Pool
}

// Consumer returns cfg (a consumer the service declares) with the
// runtime's settings: instance, retry policy, dead-lettering, telemetry,
// and the event path's pool as the database a batch handler uses (Ping).
func (r *Runtime) Consumer(cfg messaging.ConsumerConfig) messaging.ConsumerConfig {
	cfg.Instance = r.Instance
	if pool := r.Events(); pool != nil {
		cfg.Ping = pool.Ping
	}
	cfg.Retry = r.Retry
	cfg.DeadLetter = r.DeadLetter
	cfg.Unpublishable = r.Unpublishable
	cfg.Telemetry = r.Telemetry
	return cfg
}

// UnexpectedEvent is the failure of d, an event of a type the service's
// consumer does not handle, in a messaging.OnceBatchAll handler: a
// messaging.EventError, so that d alone is dead-lettered ("<Name>:
// unexpected event <type>").
func (r *Runtime) UnexpectedEvent(d *messaging.Delivery) error {
	return &messaging.EventError{Delivery: d, Err: messaging.Permanent(fmt.Errorf("%s: unexpected event %s", r.Name, d.Spec))}
}

// Task is work a service does beside its consumers, until ctx is done: a
// listener, or a periodic job (Every).
type Task func(ctx context.Context)

// Every returns the Task that calls do every d. A failure is logged
// ("cannot <what>") and do is called again at the next tick.
func (r *Runtime) Every(d time.Duration, what string, do func(ctx context.Context) error) Task {
	return func(ctx context.Context) {
		t := time.NewTicker(d)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
			}
			if err := do(ctx); err != nil && ctx.Err() == nil {
				r.Log.Warn("cannot "+what, "err", err)
			}
		}
	}
}

// Run relays the service's outbox, runs its consumers (each a
// messaging.Subscription whose Config the runtime's settings complete:
// Consumer), prunes what retention allows (messaging.RunService) and runs
// tasks, until ctx is done; it returns once every task has returned.
func (r *Runtime) Run(ctx context.Context, subs []messaging.Subscription, tasks ...Task) error {
	for i := range subs {
		subs[i].Config = r.Consumer(subs[i].Config)
	}
	ctx, stop := context.WithCancel(ctx)
	var wg sync.WaitGroup
	defer wg.Wait()
	defer stop()
	for _, task := range tasks {
		wg.Go(func() { task(ctx) })
	}
	return messaging.RunService(ctx, r.Events(), r.JS, r.Schema, r.Log, subs...)
}
