-- The telemetry service's read model: per device, minute (of measured_at),
-- metric and unit, the count, sum, min and max of its readings
-- (roll_up_readings.go). sum and count combine across batches; the mean is
-- sum / count.
DROP TABLE IF EXISTS telemetry_activity; -- the scaffold's, never used
CREATE TABLE device_rollups (
    device_id uuid NOT NULL,
    minute    timestamptz NOT NULL,
    metric    text NOT NULL,
    unit      text NOT NULL,
    count     bigint NOT NULL CHECK (count > 0),
    sum       double precision NOT NULL,
    min       double precision NOT NULL,
    max       double precision NOT NULL,
    PRIMARY KEY (device_id, minute, metric, unit)
);
