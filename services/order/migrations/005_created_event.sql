-- The id of each order's order.created (its outbox row's), which the
-- watchdog publishes again for a stuck order: found by primary key, where
-- a look-up by subject read the outbox from its newest row back. NULL for
-- orders placed before this migration (the watchdog then looks it up by
-- subject).
ALTER TABLE orders ADD COLUMN created_event uuid;
