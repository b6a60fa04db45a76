-- The order service's copy of the catalog's prices, kept from the inventory
-- service's inventory.priced events (apply_price.go): event-carried state,
-- so CreateOrder prices an order without calling the inventory service. A
-- row holds the newest revision seen of its SKU; an event with a revision
-- that is not higher changes nothing.
--
-- Additive, safe for a rolling deploy: a new table, which the binaries
-- before this one never read.
CREATE TABLE prices (
    sku              text PRIMARY KEY,
    unit_price_minor bigint NOT NULL CHECK (unit_price_minor >= 0),
    currency         text NOT NULL,
    revision         bigint NOT NULL CHECK (revision > 0),
    updated_at       timestamptz NOT NULL DEFAULT now()
);
