// Package messaging is the runtime every shopbus service uses to exchange
// events over NATS JetStream with state in PostgreSQL:
//
//   - Enqueue writes an event to the service's transactional outbox, in the
//     same transaction as the state change it announces.
//   - Relay publishes outbox rows to JetStream with Nats-Msg-Id = envelope id
//     and marks them sent only after JetStream acknowledged them; a re-publish
//     after a crash is dropped by the stream's duplicate window.
//   - Consume runs this instance's part of a consumer group: by its Strategy,
//     round-robin (one shared durable) or key-based (a durable per partition
//     of the stream, each owned by one live instance through leases in a KV
//     bucket, one event in flight at a time, so a key's events take effect
//     in order: group.go, partition.go, docs/adr/008). It decodes and validates each
//     envelope and payload (upcast to the newest version), calls the handler,
//     and acks only after the handler returned nil (its transaction
//     committed). A handler error is retried with backoff; a permanent one
//     (undecodable, invalid, unknown type, or wrapped with Permanent) is
//     terminated at once so it reaches the dead-letter queue.
//   - ConsumeBatch hands a BatchHandler up to BatchSize events of a durable
//     at a time; OnceBatch applies them in one transaction, skipping those
//     handled before, so a batch costs one commit and its acks
//     (batch.go, docs/adr/009). A poison event is dead-lettered alone; a
//     transient failure retries the batch in place, keeping per-key order.
//   - Once records (consumer, event id) in processed_events in the handler's
//     transaction, so a redelivered event has no second effect.
//   - EnsureStreams declares the streams of the event catalog, idempotently,
//     each with the subject transform that maps a partition key to one of N
//     partitions.
//   - ListGroups and Settled show what a group owns and has done.
//
// JetStream features come first (duplicate window, MaxDeliver, Nak with
// delay, Term with a reason, advisories: see internal/deadletter); this
// package adds only what JetStream does not give. docs/adr/006 explains the
// retry policy, docs/adr/008 partitions and groups, docs/adr/009 batches.
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
