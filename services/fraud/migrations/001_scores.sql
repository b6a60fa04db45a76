-- The fraud service's read model of orders, kept from order.created
-- (event-carried state transfer: it never asks the order service): what
-- the model needs of a customer's history, their orders' times and totals.
CREATE TABLE customer_orders (
    order_id    uuid PRIMARY KEY,
    customer_id uuid NOT NULL,
    total_minor bigint NOT NULL CHECK (total_minor >= 0),
    created_at  timestamptz NOT NULL
);
CREATE INDEX customer_orders_by_customer ON customer_orders (customer_id, created_at);

-- One score per order: the first order.created of an order is scored, a
-- second one (a v1 beside a v2, a re-publish under another id) is not.
CREATE TABLE scores (
    order_id      uuid PRIMARY KEY,
    score         double precision NOT NULL CHECK (score BETWEEN 0 AND 1),
    decision      text NOT NULL CHECK (decision IN ('APPROVE', 'REVIEW', 'DECLINE')),
    reasons       text[] NOT NULL,
    model_version text NOT NULL,
    scored_at     timestamptz NOT NULL
);
