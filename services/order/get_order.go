package order

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"google.golang.org/protobuf/types/known/timestamppb"

	orderv1 "github.com/shopbus/shopbus/gen/go/shopbus/order/v1"
	"github.com/shopbus/shopbus/internal/servicekit"
)

const orderColumns = `id::text, customer_id::text, currency, total_minor, coupon_code, status, reject_reason, created_at, updated_at,
	fraud, fraud_score, fraud_reasons, fraud_model, fraud_model_version, scored_at`

// GetOrder returns the order with its lines, or ErrNotFound: one statement.
func (s *Service) GetOrder(ctx context.Context, id string) (*orderv1.Order, error) {
	if _, err := uuid.Parse(id); err != nil {
		return nil, fmt.Errorf("%w: %q is not a UUID", ErrNotFound, id)
	}
	var skus []string
	var quantities []uint32
	var prices []int64
	o, err := scanOrder(s.Pool.QueryRow(ctx, `SELECT `+orderColumns+`, l.skus, l.quantities, l.prices FROM orders
		CROSS JOIN LATERAL (SELECT array_agg(sku ORDER BY line_no) AS skus, array_agg(quantity ORDER BY line_no) AS quantities,
			array_agg(unit_price_minor ORDER BY line_no) AS prices FROM order_lines WHERE order_id = orders.id) AS l
		WHERE id = $1`, id), &skus, &quantities, &prices)
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, fmt.Errorf("%w: %s", ErrNotFound, id)
	}
	if err != nil {
		return nil, fmt.Errorf("get order %s: %w", id, err)
	}
	for i := range skus {
		o.Lines = append(o.Lines, &orderv1.OrderLine{Sku: skus[i], Quantity: quantities[i], UnitPriceMinor: prices[i]})
	}
	return o, nil
}

// ListOrders returns a page of orders, newest first, and the token of the
// next page ("" on the last).
func (s *Service) ListOrders(ctx context.Context, req *orderv1.ListOrdersRequest) ([]*orderv1.Order, string, error) {
	size := int(req.GetPageSize())
	if size == 0 {
		size = 50
	}
	where, args := []string{"true"}, []any{}
	arg := func(v any) string { args = append(args, v); return fmt.Sprintf("$%d", len(args)) }
	if req.GetCustomerId() != "" {
		where = append(where, "customer_id = "+arg(req.GetCustomerId()))
	}
	if req.GetStatus() != orderv1.OrderStatus_ORDER_STATUS_UNSPECIFIED {
		where = append(where, "status = "+arg(statusName(req.GetStatus())))
	}
	if tok := req.GetPageToken(); tok != "" {
		at, id, err := servicekit.DecodeTimeCursor(tok)
		if err != nil {
			return nil, "", fmt.Errorf("%w: %w", ErrBadPageToken, err)
		}
		where = append(where, "(created_at, id) < ("+arg(at)+", "+arg(id)+")")
	}
	rows, err := s.Pool.Query(ctx, `SELECT `+orderColumns+` FROM orders WHERE `+strings.Join(where, " AND ")+
		` ORDER BY created_at DESC, id DESC LIMIT `+arg(size+1), args...)
	if err != nil {
		return nil, "", fmt.Errorf("list orders: %w", err)
	}
	orders, next, err := servicekit.Page(rows, size, func(r pgx.Row) (*orderv1.Order, error) { return scanOrder(r) }, func(last *orderv1.Order) string {
		return servicekit.EncodeTimeCursor(last.GetCreatedAt().AsTime(), last.GetOrderId())
	}, "list orders")
	if err != nil {
		return nil, "", err
	}
	if err := s.loadLines(ctx, orders); err != nil {
		return nil, "", err
	}
	return orders, next, nil
}

// ErrBadPageToken means a page token was not one this service issued.
var ErrBadPageToken = errors.New("invalid page token")

func (s *Service) loadLines(ctx context.Context, orders []*orderv1.Order) error {
	if len(orders) == 0 {
		return nil
	}
	byID := map[string]*orderv1.Order{}
	ids := make([]string, len(orders))
	for i, o := range orders {
		byID[o.GetOrderId()], ids[i] = o, o.GetOrderId()
	}
	rows, err := s.Pool.Query(ctx, `SELECT order_id::text, sku, quantity, unit_price_minor FROM order_lines
		WHERE order_id = ANY($1::uuid[]) ORDER BY order_id, line_no`, ids)
	if err != nil {
		return fmt.Errorf("order lines: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var id string
		l := &orderv1.OrderLine{}
		if err := rows.Scan(&id, &l.Sku, &l.Quantity, &l.UnitPriceMinor); err != nil {
			return fmt.Errorf("order lines: %w", err)
		}
		byID[id].Lines = append(byID[id].Lines, l)
	}
	return rows.Err()
}

// scanOrder scans orderColumns, then more into dest.
func scanOrder(row pgx.Row, more ...any) (*orderv1.Order, error) {
	o := &orderv1.Order{}
	var status, fraud string
	var created, updated time.Time
	var score *float64
	var scoredAt *time.Time
	f := &orderv1.FraudScore{}
	if err := row.Scan(append([]any{&o.OrderId, &o.CustomerId, &o.Currency, &o.TotalMinor, &o.CouponCode, &status, &o.RejectReason, &created, &updated,
		&fraud, &score, &f.ReasonCodes, &f.Model, &f.ModelVersion, &scoredAt}, more...)...); err != nil {
		return nil, err
	}
	o.Status = statusOf(status)
	o.CreatedAt, o.UpdatedAt = timestamppb.New(created), timestamppb.New(updated)
	if score != nil { // scored
		f.Score, f.Decision = *score, fraudDecisionOf[fraud]
		if scoredAt != nil {
			f.ScoredAt = timestamppb.New(*scoredAt)
		}
		o.Fraud = f
	}
	return o, nil
}

// fraudDecisionOf is the FraudDecision of a fraud column with a score.
var fraudDecisionOf = map[string]orderv1.FraudDecision{
	fraudApprove: orderv1.FraudDecision_FRAUD_DECISION_APPROVE,
	fraudReview:  orderv1.FraudDecision_FRAUD_DECISION_REVIEW,
	fraudDecline: orderv1.FraudDecision_FRAUD_DECISION_DECLINE,
	// A deadline's placeholder has no score; a late score replaced it.
}

// statusOf is the OrderStatus of a status column.
func statusOf(status string) orderv1.OrderStatus {
	return orderv1.OrderStatus(orderv1.OrderStatus_value["ORDER_STATUS_"+status])
}

func statusName(s orderv1.OrderStatus) string {
	return strings.TrimPrefix(s.String(), "ORDER_STATUS_")
}
