// Package messaging is the runtime every shopbus service uses to exchange
// events over NATS JetStream with state in PostgreSQL:
//
//   - Enqueue writes an event to the service's transactional outbox, in the
//     same transaction as the state change it announces.
//   - Relay publishes outbox rows to JetStream with Nats-Msg-Id = envelope id
//     and marks them sent only after JetStream acknowledged them; a re-publish
//     after a crash is dropped by the stream's duplicate window.
//   - Consume runs a durable pull consumer: it decodes and validates each
//     envelope and payload (upcast to the newest version), calls the handler,
//     and acks only after the handler returned nil (its transaction
//     committed). A handler error is retried with backoff; a permanent one
//     (undecodable, invalid, unknown type, or wrapped with Permanent) is
//     terminated at once so it reaches the dead-letter queue.
//   - Once records (consumer, event id) in processed_events in the handler's
//     transaction, so a redelivered event has no second effect.
//   - EnsureStreams declares the streams of the event catalog, idempotently.
//
// JetStream features come first (duplicate window, MaxDeliver, Nak with
// delay, Term with a reason, advisories: see internal/deadletter); this
// package adds only what JetStream does not give. docs/adr/006 explains the
// retry policy. Partitioned consumers, consumer groups and batched commits fit in
// as more ConsumerConfig fields and another Handler shape.
package messaging

import "embed"

// Migrations holds the tables this package needs in each service's schema:
// outbox and processed_events. Pass it to postgres.Open with the service's
// own migrations.
//
//go:embed migrations/*.sql
var migrations embed.FS

// Migrations returns the migration files of the outbox and processed_events
// tables.
func Migrations() embed.FS { return migrations }
