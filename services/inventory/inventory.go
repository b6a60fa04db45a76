// Package inventory is the inventory service: it keeps stock per SKU,
// reserves stock for each order.created event exactly once (all lines or
// none, never below zero), publishes the outcome (inventory.adjusted or
// inventory.rejected) through its outbox, and serves stock queries and the
// admin SetStock and Restock. It owns the catalog's prices too: the admin
// SetPrice stores a SKU's price and publishes it (inventory.priced) for the
// order service, which prices every order with it.
//
// Use cases: reserve_stock.go (the consumer), get_stock.go, set_stock.go,
// set_price.go; handler.go maps them onto the Connect API.
package inventory

import (
	"context"
	"embed"
	"errors"
	"log/slog"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/shopbus/shopbus/internal/messaging"
	"github.com/shopbus/shopbus/internal/telemetry"
)

// Source names this service in the envelopes it produces.
const Source = "shopbus/inventory"

// Migrations holds the service's tables; messaging.Migrations adds the
// outbox and processed_events.
//
//go:embed migrations/*.sql
var Migrations embed.FS

// Errors of the inventory service's use cases.
var (
	// ErrNotFound means no stock row has the given SKU.
	ErrNotFound = errors.New("SKU not found")
	// ErrBadPageToken means a page token was not one this service issued.
	ErrBadPageToken = errors.New("invalid page token")
)

// Service is the inventory service.
type Service struct {
	pool   *pgxpool.Pool
	js     jetstream.JetStream
	schema string
	log    *slog.Logger
	// EventPool, when set, is the pool of the event path: the outbox
	// relay, the consumer's transactions and retention (and, for the order
	// service, its LISTEN connection), so that a flood of RPCs, which use
	// the pool New was given, cannot starve it. The RPC pool when nil.
	EventPool *pgxpool.Pool
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
	// Instance names this process in its consumer group (default: host,
	// process id and a random suffix).
	Instance string
	// Telemetry receives the service's metrics and spans (none when nil).
	Telemetry *telemetry.Telemetry
}

// New returns the inventory service on pool (its search_path is schema,
// migrated with Migrations and messaging.Migrations) and js.
func New(pool *pgxpool.Pool, js jetstream.JetStream, schema string, log *slog.Logger) *Service {
	return &Service{pool: pool, js: js, schema: schema, log: log.With("service", "inventory")}
}

// Run relays the outbox and consumes order.created until ctx is done.
func (s *Service) Run(ctx context.Context) error {
	cfg := ReserveStockConsumer()
	cfg.Instance = s.Instance
	cfg.Retry = s.Retry
	cfg.DeadLetter = s.DeadLetter
	cfg.Unpublishable = s.Unpublishable
	cfg.Telemetry = s.Telemetry
	return messaging.RunService(ctx, s.events(), s.js, s.schema, cfg, s.ReserveStock, s.log)
}

// Schema is the PostgreSQL schema the service works in (its outbox's).
func (s *Service) Schema() string { return s.schema }

// events is the event path's pool (EventPool, or the RPC pool).
func (s *Service) events() *pgxpool.Pool {
	if s.EventPool != nil {
		return s.EventPool
	}
	return s.pool
}
