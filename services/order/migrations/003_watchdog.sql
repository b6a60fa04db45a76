-- The watchdog (recover_stuck_orders.go) nudges an order that stays PENDING
-- past its deadline: how many times, and when last, so that it backs off.
ALTER TABLE orders ADD COLUMN nudges int NOT NULL DEFAULT 0, ADD COLUMN nudged_at timestamptz;
CREATE INDEX orders_pending ON orders (created_at) WHERE status = 'PENDING';
