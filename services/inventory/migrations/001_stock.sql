CREATE TABLE stock (
    sku        text PRIMARY KEY,
    on_hand    bigint NOT NULL CHECK (on_hand >= 0),   -- never negative, whatever the code does
    reserved   bigint NOT NULL DEFAULT 0 CHECK (reserved >= 0),
    updated_at timestamptz NOT NULL DEFAULT now()
);

-- One row per order line that stock was reserved for.
CREATE TABLE reservations (
    order_id   uuid NOT NULL,
    sku        text NOT NULL REFERENCES stock (sku),
    quantity   bigint NOT NULL CHECK (quantity > 0),
    created_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (order_id, sku)
);

-- One decision per order, whatever event carried it (a v1 and a v2 of the
-- same order, published during a migration, reserve stock once).
CREATE TABLE decisions (
    order_id   uuid PRIMARY KEY,
    outcome    text CHECK (outcome IN ('ADJUSTED', 'REJECTED')), -- set in the same transaction
    decided_at timestamptz NOT NULL DEFAULT now()
);
