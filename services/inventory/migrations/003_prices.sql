-- The catalog's price of one unit of each SKU (SetPrice), and its revision:
-- every SetPrice raises it by one, and inventory.priced carries it, so that
-- consumers keep the newest price whatever order the events reach them in.
--
-- Additive, safe for a rolling deploy: a SKU has no price (NULL) until
-- SetPrice gives it one, the revision defaults to 0, and the binaries before
-- this one neither read nor write these columns (they name the columns they
-- select). Adding the columns rewrites nothing; the checks read the table
-- once, a row per SKU.
ALTER TABLE stock
    ADD COLUMN unit_price_minor bigint CHECK (unit_price_minor BETWEEN 0 AND 10000000000),
    ADD COLUMN currency text CHECK (currency ~ '^[A-Z]{3}$'),
    ADD COLUMN price_revision bigint NOT NULL DEFAULT 0 CHECK (price_revision >= 0),
    ADD CONSTRAINT stock_price_has_currency CHECK ((unit_price_minor IS NULL) = (currency IS NULL));
