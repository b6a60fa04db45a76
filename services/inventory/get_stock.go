package inventory

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"regexp"
	"time"

	"github.com/jackc/pgx/v5"
	"google.golang.org/protobuf/types/known/timestamppb"

	inventoryv1 "github.com/shopbus/shopbus/gen/go/shopbus/inventory/v1"
	"github.com/shopbus/shopbus/internal/servicekit"
)

const stockColumns = `sku, on_hand, reserved, updated_at, unit_price_minor, currency, price_revision`

// GetStock returns the stock of sku, with its price once it has one, or
// ErrNotFound.
func (s *Service) GetStock(ctx context.Context, sku string) (*inventoryv1.Stock, error) {
	st, err := scanStock(s.Pool.QueryRow(ctx, `SELECT `+stockColumns+` FROM stock WHERE sku = $1`, sku))
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, fmt.Errorf("%w: %s", ErrNotFound, sku)
	}
	if err != nil {
		return nil, fmt.Errorf("get stock %s: %w", sku, err)
	}
	return st, nil
}

// skuPattern is the contracts' rule for a SKU (inventory_service.proto).
var skuPattern = regexp.MustCompile(`^[A-Z0-9][A-Z0-9-]{2,31}$`)

// ListStock returns a page of stock by SKU (only skus, when given) and the
// token of the next page ("" on the last).
func (s *Service) ListStock(ctx context.Context, req *inventoryv1.ListStockRequest) ([]*inventoryv1.Stock, string, error) {
	size := int(req.GetPageSize())
	if size == 0 {
		size = 100
	}
	after := ""
	if tok := req.GetPageToken(); tok != "" {
		// The token is the last SKU of a page: anything else (a NUL byte,
		// invalid UTF-8) is not one this service issued.
		b, err := base64.RawURLEncoding.DecodeString(tok)
		if err != nil || !skuPattern.Match(b) {
			return nil, "", ErrBadPageToken
		}
		after = string(b)
	}
	skus := req.GetSkus()
	rows, err := s.Pool.Query(ctx, `SELECT `+stockColumns+` FROM stock
		WHERE sku > $1 AND (coalesce(cardinality($2::text[]), 0) = 0 OR sku = ANY($2))
		ORDER BY sku LIMIT $3`, after, skus, size+1)
	if err != nil {
		return nil, "", fmt.Errorf("list stock: %w", err)
	}
	return servicekit.Page(rows, size, scanStock, func(last *inventoryv1.Stock) string {
		return base64.RawURLEncoding.EncodeToString([]byte(last.GetSku()))
	}, "list stock")
}

func scanStock(row pgx.Row) (*inventoryv1.Stock, error) {
	st := &inventoryv1.Stock{}
	var updated time.Time
	var price *int64
	var currency *string
	var revision int64
	if err := row.Scan(&st.Sku, &st.OnHand, &st.Reserved, &updated, &price, &currency, &revision); err != nil {
		return nil, err
	}
	st.UpdatedAt = timestamppb.New(updated)
	if price != nil && currency != nil {
		st.Price = &inventoryv1.Price{UnitPriceMinor: *price, Currency: *currency, Revision: revision}
	}
	return st, nil
}
