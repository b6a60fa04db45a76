-- The telemetry service's read model: per partition key, what its
-- iot/telemetry events left (apply_telemetry_events.go).
CREATE TABLE telemetry_activity (
    key           text PRIMARY KEY,
    events        bigint NOT NULL CHECK (events > 0),
    last_event_id text NOT NULL,
    last_type     text NOT NULL,
    updated_at    timestamptz NOT NULL
);
