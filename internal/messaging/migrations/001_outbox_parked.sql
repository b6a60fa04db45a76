-- An outbox row the relay can never publish (larger than the server takes,
-- or no stream captures its subject) is parked: set aside with its reason,
-- so that it never blocks the rows behind it (messaging.Relay).
ALTER TABLE outbox ADD COLUMN parked_at timestamptz, ADD COLUMN park_reason text;
DROP INDEX outbox_unpublished;
CREATE INDEX outbox_unpublished ON outbox (seq) WHERE published_at IS NULL AND parked_at IS NULL;
