-- The post service's read model: per partition key, what its
-- social/post events left (apply_post_events.go).
CREATE TABLE post_activity (
    key           text PRIMARY KEY,
    events        bigint NOT NULL CHECK (events > 0),
    last_event_id text NOT NULL,
    last_type     text NOT NULL,
    updated_at    timestamptz NOT NULL
);
