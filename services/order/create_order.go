package order

import (
	"context"
	"fmt"
	"time"

	"github.com/google/uuid"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	ordereventsv2 "github.com/shopbus/shopbus/gen/go/ecommerce/order/v2"
	orderv1 "github.com/shopbus/shopbus/gen/go/shopbus/order/v1"
	"github.com/shopbus/shopbus/internal/messaging"
	"github.com/shopbus/shopbus/internal/servicekit"
)

// CreateOrder places an order: the order, its lines and its OrderCreated
// event (in the outbox) are written by one statement. req must be valid
// (the Connect handler's validation interceptor sees to it). The server
// prices the order from the prices the catalog published (inventory.priced,
// kept in the prices table): a line's unit_price_minor of 0 takes the
// current price, and any other value must be the current price. A line
// whose SKU has another price fails with ErrPriceMismatch, another currency
// than the order's with ErrCurrencyMismatch, no known price with
// ErrUnpriced, and nothing is written. A request whose customer and
// idempotency key were seen before returns that order, with replayed true,
// and writes nothing, whatever the prices are now; with a different request
// it fails with ErrIdempotencyKeyReused.
func (s *Service) CreateOrder(ctx context.Context, req *orderv1.CreateOrderRequest) (o *orderv1.Order, replayed bool, err error) {
	hash, err := requestHash(req)
	if err != nil {
		return nil, false, err
	}
	// One read before the insert. A retry is answered before the prices are
	// checked: a price may have changed since the order was placed.
	known, prior, err := s.readPricesAndKey(ctx, req)
	if err != nil {
		return nil, false, err
	}
	if prior != nil {
		return s.replay(ctx, req, hash, *prior)
	}
	prices, total, err := priceLines(req, known)
	if err != nil {
		return nil, false, err
	}
	if total > MaxTotalMinor {
		return nil, false, fmt.Errorf("%w: the total %d exceeds %d minor units", ErrInvalidOrder, total, int64(MaxTotalMinor))
	}
	id, err := uuid.NewV7()
	if err != nil {
		return nil, false, fmt.Errorf("order id: %w", err)
	}
	// Microseconds, PostgreSQL's precision: the order returned is the order
	// stored.
	now := time.Now().UTC().Truncate(time.Microsecond)
	customer := req.GetCustomerId()
	if c, err := uuid.Parse(customer); err == nil {
		customer = c.String()
	}
	env, err := s.NewEvent(ctx, orderCreated(id.String(), req, prices, total, now))
	if err != nil {
		return nil, false, fmt.Errorf("create order: %w", err)
	}
	row, end, err := messaging.NewOutboxRow(ctx, env)
	if err != nil {
		return nil, false, fmt.Errorf("create order: %w", err)
	}
	n := len(req.GetLines())
	lineNo, skus, quantities := make([]int32, n), make([]string, n), make([]int64, n)
	for i, l := range req.GetLines() {
		lineNo[i], skus[i], quantities[i] = int32(i+1), l.GetSku(), int64(l.GetQuantity())
	}
	// The order, its lines and its event in one statement: one round trip,
	// atomic without BEGIN and COMMIT. A replayed idempotency key inserts
	// no order, so no lines and no event either.
	var inserted bool
	err = s.Pool.QueryRow(ctx, `WITH o AS (
			INSERT INTO orders (id, customer_id, idempotency_key, request_hash, currency, total_minor, coupon_code, created_at, updated_at, created_event)
			VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $8, $13)
			ON CONFLICT (customer_id, idempotency_key) DO NOTHING
			RETURNING id
		), l AS (
			INSERT INTO order_lines (order_id, line_no, sku, quantity, unit_price_minor)
			SELECT o.id, v.* FROM o, unnest($9::int[], $10::text[], $11::bigint[], $12::bigint[]) AS v
		), e AS (
			INSERT INTO outbox (id, subject, envelope) SELECT $13, $14, $15 FROM o
		)
		SELECT EXISTS (SELECT 1 FROM o)`,
		id, req.GetCustomerId(), req.GetIdempotencyKey(), hash, req.GetCurrency(), total, req.GetCouponCode(), now,
		lineNo, skus, quantities, prices, row.ID, row.Subject, row.Envelope).Scan(&inserted)
	end(err)
	if err != nil {
		return nil, false, fmt.Errorf("create order: insert order: %w", err)
	}
	if inserted {
		messaging.WakeRelays(s.Pool)
		o := &orderv1.Order{
			OrderId: id.String(), CustomerId: customer, Currency: req.GetCurrency(), TotalMinor: total,
			CouponCode: req.GetCouponCode(), Status: orderv1.OrderStatus_ORDER_STATUS_PENDING,
			CreatedAt: timestamppb.New(now), UpdatedAt: timestamppb.New(now),
		}
		for i, l := range req.GetLines() {
			o.Lines = append(o.Lines, &orderv1.OrderLine{Sku: l.GetSku(), Quantity: l.GetQuantity(), UnitPriceMinor: prices[i]})
		}
		return o, false, nil
	}
	// A concurrent request with the same key inserted first.
	var existingID uuid.UUID
	var existingHash []byte
	err = s.Pool.QueryRow(ctx, `SELECT id, request_hash FROM orders WHERE customer_id = $1 AND idempotency_key = $2`,
		req.GetCustomerId(), req.GetIdempotencyKey()).Scan(&existingID, &existingHash)
	if err != nil {
		return nil, false, fmt.Errorf("create order: read the order of idempotency key: %w", err)
	}
	return s.replay(ctx, req, hash, priorOrder{id: existingID.String(), hash: existingHash})
}

// priorOrder is the order an idempotency key created: its id and the hash of
// the request that created it.
type priorOrder struct {
	id   string
	hash []byte
}

// readPricesAndKey reads, in one statement, the prices the service knows of
// req's SKUs and the order req's idempotency key created (nil if none).
func (s *Service) readPricesAndKey(ctx context.Context, req *orderv1.CreateOrderRequest) (map[string]price, *priorOrder, error) {
	skus := make([]string, len(req.GetLines()))
	for i, l := range req.GetLines() {
		skus[i] = l.GetSku()
	}
	var knownSKUs, currencies []string
	var minors []int64
	var priorID *string
	var priorHash []byte
	err := s.Pool.QueryRow(ctx, `SELECT p.skus, p.minors, p.currencies, o.id::text, o.request_hash
		FROM (SELECT array_agg(sku) AS skus, array_agg(unit_price_minor) AS minors, array_agg(currency) AS currencies
			FROM prices WHERE sku = ANY($1::text[])) AS p
		LEFT JOIN orders o ON o.customer_id = $2 AND o.idempotency_key = $3`,
		skus, req.GetCustomerId(), req.GetIdempotencyKey()).Scan(&knownSKUs, &minors, &currencies, &priorID, &priorHash)
	if err != nil {
		return nil, nil, fmt.Errorf("create order: read prices: %w", err)
	}
	if priorID != nil {
		return nil, &priorOrder{id: *priorID, hash: priorHash}, nil
	}
	known := make(map[string]price, len(knownSKUs))
	for i, sku := range knownSKUs {
		known[sku] = price{minor: minors[i], currency: currencies[i]}
	}
	return known, nil, nil
}

// replay answers a retry of req (whose hash is hash): the order its
// idempotency key created, if that request was the same.
func (s *Service) replay(ctx context.Context, req *orderv1.CreateOrderRequest, hash []byte, prior priorOrder) (*orderv1.Order, bool, error) {
	if string(prior.hash) != string(hash) {
		return nil, false, fmt.Errorf("%w: key %q created order %s", ErrIdempotencyKeyReused, req.GetIdempotencyKey(), prior.id)
	}
	o, err := s.GetOrder(ctx, prior.id)
	return o, true, err
}

// price is the price of one unit of a SKU, as the order service knows it.
type price struct {
	minor    int64
	currency string
}

// priceLines prices each line of req from known (the prices of its SKUs)
// and returns the unit prices, line by line, and the total. A line's
// unit_price_minor of 0 takes the current price; any other value must be
// it (ErrPriceMismatch). A SKU without a known price (ErrUnpriced) or with
// another currency than the order's (ErrCurrencyMismatch) fails too; the
// first line in error is named.
func priceLines(req *orderv1.CreateOrderRequest, known map[string]price) (prices []int64, total int64, err error) {
	prices = make([]int64, len(req.GetLines()))
	for i, l := range req.GetLines() {
		p, ok := known[l.GetSku()]
		switch {
		case !ok:
			return nil, 0, fmt.Errorf("%w: %s (not in the catalog, or its price has not reached the order service yet)", ErrUnpriced, l.GetSku())
		case p.currency != req.GetCurrency():
			return nil, 0, fmt.Errorf("%w: %s is priced in %s, the order is in %s", ErrCurrencyMismatch, l.GetSku(), p.currency, req.GetCurrency())
		case l.GetUnitPriceMinor() != 0 && l.GetUnitPriceMinor() != p.minor:
			return nil, 0, fmt.Errorf("%w: %s costs %d %s per unit, the request says %d (send 0 for the current price)",
				ErrPriceMismatch, l.GetSku(), p.minor, p.currency, l.GetUnitPriceMinor())
		}
		prices[i] = p.minor
		total += int64(l.GetQuantity()) * p.minor // ≤ 100 × 1e4 × 1e12: no overflow
	}
	return prices, total, nil
}

// requestHash fingerprints a request, to tell a retry from a different order
// under the same idempotency key.
func requestHash(req *orderv1.CreateOrderRequest) ([]byte, error) {
	if id, err := uuid.Parse(req.GetCustomerId()); err == nil && id.String() != req.GetCustomerId() {
		req = proto.CloneOf(req)
		req.CustomerId = id.String() // the same customer, however the id is cased
	}
	return servicekit.RequestHash(req)
}

func orderCreated(id string, req *orderv1.CreateOrderRequest, prices []int64, total int64, at time.Time) *ordereventsv2.OrderCreated {
	money := func(minor int64) *ordereventsv2.Money {
		return &ordereventsv2.Money{Currency: req.GetCurrency(), AmountMinor: minor}
	}
	e := &ordereventsv2.OrderCreated{
		OrderId:    id,
		Customer:   &ordereventsv2.Customer{CustomerId: req.GetCustomerId()},
		Total:      money(total),
		CreatedAt:  timestamppb.New(at),
		CouponCode: req.GetCouponCode(),
	}
	for i, l := range req.GetLines() {
		e.Lines = append(e.Lines, &ordereventsv2.OrderLine{
			Sku: l.GetSku(), Quantity: l.GetQuantity(), UnitPrice: money(prices[i]),
		})
	}
	return e
}
