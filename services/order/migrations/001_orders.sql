CREATE TABLE orders (
    id              uuid PRIMARY KEY,
    customer_id     uuid NOT NULL,
    idempotency_key text NOT NULL,
    request_hash    bytea NOT NULL,          -- sha256 of the CreateOrder request
    currency        text NOT NULL,
    total_minor     bigint NOT NULL CHECK (total_minor >= 0),
    coupon_code     text NOT NULL DEFAULT '',
    status          text NOT NULL DEFAULT 'PENDING' CHECK (status IN ('PENDING', 'CONFIRMED', 'REJECTED')),
    reject_reason   text NOT NULL DEFAULT '',
    created_at      timestamptz NOT NULL DEFAULT now(),
    updated_at      timestamptz NOT NULL DEFAULT now(),
    UNIQUE (customer_id, idempotency_key)
);
CREATE INDEX orders_by_time ON orders (created_at DESC, id DESC);
CREATE INDEX orders_by_customer ON orders (customer_id, created_at DESC, id DESC);

CREATE TABLE order_lines (
    order_id         uuid NOT NULL REFERENCES orders (id),
    line_no          int NOT NULL,
    sku              text NOT NULL,
    quantity         int NOT NULL CHECK (quantity > 0),
    unit_price_minor bigint NOT NULL CHECK (unit_price_minor >= 0),
    PRIMARY KEY (order_id, line_no)
);
