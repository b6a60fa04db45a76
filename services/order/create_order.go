package order

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	ordereventsv2 "github.com/shopbus/shopbus/gen/go/ecommerce/order/v2"
	orderv1 "github.com/shopbus/shopbus/gen/go/shopbus/order/v1"
	"github.com/shopbus/shopbus/internal/event"
	"github.com/shopbus/shopbus/internal/messaging"
)

// CreateOrder places an order: the order, its lines and its OrderCreated
// event (in the outbox) are written in one transaction. req must be valid
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
	// The order, its lines and its event, sent as one batch: one round trip
	// between BEGIN and COMMIT.
	err = messaging.InTx(ctx, s.pool, func(tx pgx.Tx) error {
		n := len(req.GetLines())
		lineNo, skus, quantities, prices := make([]int32, n), make([]string, n), make([]int64, n), make([]int64, n)
		for i, l := range req.GetLines() {
			lineNo[i], skus[i], quantities[i], prices[i] = int32(i+1), l.GetSku(), int64(l.GetQuantity()), l.GetUnitPriceMinor()
		}
		b := &pgx.Batch{}
		b.Queue(`INSERT INTO orders
			(id, customer_id, idempotency_key, request_hash, currency, total_minor, coupon_code, created_at, updated_at)
			VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $8)
			ON CONFLICT (customer_id, idempotency_key) DO NOTHING`,
			id, req.GetCustomerId(), req.GetIdempotencyKey(), hash, req.GetCurrency(), total, req.GetCouponCode(), now)
		// Only when the order was inserted (not a replay of its key).
		b.Queue(`INSERT INTO order_lines (order_id, line_no, sku, quantity, unit_price_minor)
			SELECT $1, * FROM unnest($2::int[], $3::text[], $4::bigint[], $5::bigint[])
			WHERE EXISTS (SELECT 1 FROM orders WHERE id = $1)`, id, lineNo, skus, quantities, prices)
		end, err := messaging.QueueEnqueue(ctx, b, env)
		if err != nil {
			return err
		}
		res := tx.SendBatch(ctx, b)
		tag, err := res.Exec()
		if err == nil && tag.RowsAffected() == 0 {
			replayed = true
		}
		for i := 1; i < b.Len() && err == nil; i++ {
			_, err = res.Exec()
		}
		if cerr := res.Close(); err == nil {
			err = cerr
		}
		end(err)
		if err != nil {
			return fmt.Errorf("insert order: %w", err)
		}
		if replayed {
			return errReplayed // roll back the event written for nothing
		}
		return nil
	})
	if err != nil && !errors.Is(err, errReplayed) {
		return nil, false, fmt.Errorf("create order: %w", err)
	}
	if !replayed {
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

// errReplayed rolls back CreateOrder's transaction when its idempotency key
// had created an order already.
var errReplayed = errors.New("replayed")

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
