package order

import (
	"context"
	"crypto/sha256"
	"fmt"
	"time"

	"github.com/google/uuid"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	ordereventsv2 "github.com/shopbus/shopbus/gen/go/ecommerce/order/v2"
	orderv1 "github.com/shopbus/shopbus/gen/go/shopbus/order/v1"
	"github.com/shopbus/shopbus/internal/event"
	"github.com/shopbus/shopbus/internal/messaging"
)

// CreateOrder places an order: the order, its lines and its OrderCreated
// event (in the outbox) are written by one statement. req must be valid
// (the Connect handler's validation interceptor sees to it). A request whose
// customer and idempotency key were seen before returns that order, with
// replayed true, and writes nothing; with a different request it fails with
// ErrIdempotencyKeyReused.
func (s *Service) CreateOrder(ctx context.Context, req *orderv1.CreateOrderRequest) (o *orderv1.Order, replayed bool, err error) {
	hash, err := requestHash(req)
	if err != nil {
		return nil, false, err
	}
	id, err := uuid.NewV7()
	if err != nil {
		return nil, false, fmt.Errorf("order id: %w", err)
	}
	// Microseconds, PostgreSQL's precision: the order returned is the order
	// stored.
	now := time.Now().UTC().Truncate(time.Microsecond)
	var total int64
	for _, l := range req.GetLines() {
		total += int64(l.GetQuantity()) * l.GetUnitPriceMinor() // ≤ 100 × 1e4 × 1e10: no overflow
	}
	if total > MaxTotalMinor {
		return nil, false, fmt.Errorf("%w: the total %d exceeds %d minor units", ErrInvalidOrder, total, int64(MaxTotalMinor))
	}
	customer := req.GetCustomerId()
	if c, err := uuid.Parse(customer); err == nil {
		customer = c.String()
	}
	env, err := event.New(ctx, orderCreated(id.String(), req, total, now), event.WithSource(Source))
	if err != nil {
		return nil, false, fmt.Errorf("create order: %w", err)
	}
	row, end, err := messaging.NewOutboxRow(ctx, env)
	if err != nil {
		return nil, false, fmt.Errorf("create order: %w", err)
	}
	n := len(req.GetLines())
	lineNo, skus, quantities, prices := make([]int32, n), make([]string, n), make([]int64, n), make([]int64, n)
	for i, l := range req.GetLines() {
		lineNo[i], skus[i], quantities[i], prices[i] = int32(i+1), l.GetSku(), int64(l.GetQuantity()), l.GetUnitPriceMinor()
	}
	// The order, its lines and its event in one statement: one round trip,
	// atomic without BEGIN and COMMIT. A replayed idempotency key inserts
	// no order, so no lines and no event either.
	var inserted bool
	err = s.pool.QueryRow(ctx, `WITH o AS (
			INSERT INTO orders (id, customer_id, idempotency_key, request_hash, currency, total_minor, coupon_code, created_at, updated_at)
			VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $8)
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
		messaging.WakeRelays(s.pool)
		o := &orderv1.Order{
			OrderId: id.String(), CustomerId: customer, Currency: req.GetCurrency(), TotalMinor: total,
			CouponCode: req.GetCouponCode(), Status: orderv1.OrderStatus_ORDER_STATUS_PENDING,
			CreatedAt: timestamppb.New(now), UpdatedAt: timestamppb.New(now),
		}
		for _, l := range req.GetLines() {
			o.Lines = append(o.Lines, &orderv1.OrderLine{Sku: l.GetSku(), Quantity: l.GetQuantity(), UnitPriceMinor: l.GetUnitPriceMinor()})
		}
		return o, false, nil
	}
	// A retry: return the order the key created, if the request is the same.
	var existing uuid.UUID
	var existingHash []byte
	err = s.pool.QueryRow(ctx, `SELECT id, request_hash FROM orders WHERE customer_id = $1 AND idempotency_key = $2`,
		req.GetCustomerId(), req.GetIdempotencyKey()).Scan(&existing, &existingHash)
	if err != nil {
		return nil, false, fmt.Errorf("create order: read the order of idempotency key: %w", err)
	}
	if string(existingHash) != string(hash) {
		return nil, false, fmt.Errorf("%w: key %q created order %s", ErrIdempotencyKeyReused, req.GetIdempotencyKey(), existing)
	}
	o, err = s.GetOrder(ctx, existing.String())
	return o, true, err
}

// requestHash fingerprints a request, to tell a retry from a different order
// under the same idempotency key.
func requestHash(req *orderv1.CreateOrderRequest) ([]byte, error) {
	if id, err := uuid.Parse(req.GetCustomerId()); err == nil && id.String() != req.GetCustomerId() {
		req = proto.CloneOf(req)
		req.CustomerId = id.String() // the same customer, however the id is cased
	}
	b, err := proto.MarshalOptions{Deterministic: true}.Marshal(req)
	if err != nil {
		return nil, fmt.Errorf("hash request: %w", err)
	}
	sum := sha256.Sum256(b)
	return sum[:], nil
}

func orderCreated(id string, req *orderv1.CreateOrderRequest, total int64, at time.Time) *ordereventsv2.OrderCreated {
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
	for _, l := range req.GetLines() {
		e.Lines = append(e.Lines, &ordereventsv2.OrderLine{
			Sku: l.GetSku(), Quantity: l.GetQuantity(), UnitPrice: money(l.GetUnitPriceMinor()),
		})
	}
	return e
}
