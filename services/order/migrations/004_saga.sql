-- The order saga across three domains (saga.go, docs/patterns.md): an
-- order's status follows from three facts, each recorded when its event
-- arrives, in whatever order they arrive:
--   stock   what the inventory service did: PENDING, RESERVED, REJECTED,
--           RELEASED (after the order was rejected for fraud or by review)
--   fraud   the fraud score's decision: PENDING, APPROVE, REVIEW, DECLINE,
--           or DEADLINE (no score in time, held for review)
--   review  a person's decision on an order in REVIEW: '', APPROVED, REJECTED
-- Additive: existing rows get facts that match their status (decided
-- before scoring existed), and binaries before this one never read them.
ALTER TABLE orders DROP CONSTRAINT orders_status_check;
ALTER TABLE orders ADD CONSTRAINT orders_status_check CHECK (status IN ('PENDING', 'CONFIRMED', 'REJECTED', 'REVIEW'));
ALTER TABLE orders
    ADD COLUMN stock text NOT NULL DEFAULT 'PENDING' CHECK (stock IN ('PENDING', 'RESERVED', 'REJECTED', 'RELEASED')),
    ADD COLUMN fraud text NOT NULL DEFAULT 'PENDING' CHECK (fraud IN ('PENDING', 'APPROVE', 'REVIEW', 'DECLINE', 'DEADLINE')),
    ADD COLUMN review text NOT NULL DEFAULT '' CHECK (review IN ('', 'APPROVED', 'REJECTED')),
    ADD COLUMN fraud_score double precision CHECK (fraud_score BETWEEN 0 AND 1),
    ADD COLUMN fraud_reasons text[] NOT NULL DEFAULT '{}',
    ADD COLUMN fraud_model text NOT NULL DEFAULT '',
    ADD COLUMN fraud_model_version text NOT NULL DEFAULT '',
    ADD COLUMN scored_at timestamptz;
UPDATE orders SET stock = 'RESERVED', fraud = 'APPROVE' WHERE status = 'CONFIRMED';
UPDATE orders SET stock = 'REJECTED' WHERE status = 'REJECTED';
-- Orders not decided yet (PENDING, REVIEW): the watchdog and reviewers look for them.
DROP INDEX orders_pending;
CREATE INDEX orders_undecided ON orders (created_at) WHERE status IN ('PENDING', 'REVIEW');
