-- The message service's read model: per partition key, what its
-- chat/message events left (apply_message_events.go).
CREATE TABLE message_activity (
    key           text PRIMARY KEY,
    events        bigint NOT NULL CHECK (events > 0),
    last_event_id text NOT NULL,
    last_type     text NOT NULL,
    updated_at    timestamptz NOT NULL
);
