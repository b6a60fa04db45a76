-- The transactional outbox: events written in the same transaction as the
-- state they announce, published by messaging.Relay.
CREATE TABLE outbox (
    id           uuid PRIMARY KEY,          -- envelope id = Nats-Msg-Id
    seq          bigint GENERATED ALWAYS AS IDENTITY UNIQUE, -- publish order
    subject      text NOT NULL,
    envelope     bytea NOT NULL,            -- the encoded Envelope
    created_at   timestamptz NOT NULL DEFAULT now(),
    published_at timestamptz                -- set once JetStream acknowledged
);
CREATE INDEX outbox_unpublished ON outbox (seq) WHERE published_at IS NULL;

-- Consumer-side idempotency: one row per (consumer, event) whose effect has
-- been committed, written in the same transaction as the effect.
CREATE TABLE processed_events (
    consumer     text NOT NULL,
    event_id     uuid NOT NULL,
    processed_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (consumer, event_id)
);
