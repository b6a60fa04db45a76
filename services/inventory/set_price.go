package inventory

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"time"

	"github.com/jackc/pgx/v5"
	"google.golang.org/protobuf/types/known/timestamppb"

	inventoryeventsv1 "github.com/shopbus/shopbus/gen/go/ecommerce/inventory/v1"
	inventoryv1 "github.com/shopbus/shopbus/gen/go/shopbus/inventory/v1"
	"github.com/shopbus/shopbus/internal/messaging"
)

// SetPrice sets the price of one unit of sku, unitPriceMinor minor units of
// currency, raises the SKU's price revision by one and writes the
// inventory.priced event that carries them to the outbox, all in one
// transaction. A SKU that does not exist is created with nothing on hand:
// the catalog may price a product before its stock arrives (an order for it
// is then rejected as out of stock). The arguments must be valid (the
// Connect handler's validation interceptor sees to it).
func (s *Service) SetPrice(ctx context.Context, sku string, unitPriceMinor int64, currency string) (*inventoryv1.Stock, error) {
	return s.setPrice(ctx, sku, unitPriceMinor, currency, false)
}

// SeedPrices gives each SKU of prices (minor units of currency) its price,
// as SetPrice does, unless it has one already, so seeding again after a
// restart changes nothing and publishes nothing.
func (s *Service) SeedPrices(ctx context.Context, currency string, prices map[string]int64) error {
	for _, sku := range slices.Sorted(maps.Keys(prices)) {
		if _, err := s.setPrice(ctx, sku, prices[sku], currency, true); err != nil {
			return fmt.Errorf("seed prices: %w", err)
		}
	}
	return nil
}

// setPrice is SetPrice; with onlyUnpriced, a SKU that has a price keeps it,
// nothing is published and the stock returned is nil.
func (s *Service) setPrice(ctx context.Context, sku string, unitPriceMinor int64, currency string, onlyUnpriced bool) (st *inventoryv1.Stock, err error) {
	err = messaging.InTx(ctx, s.Pool, func(tx pgx.Tx) error {
		st, err = scanStock(tx.QueryRow(ctx, `INSERT INTO stock (sku, on_hand, unit_price_minor, currency, price_revision)
			VALUES ($1, 0, $2, $3, 1)
			ON CONFLICT (sku) DO UPDATE SET unit_price_minor = EXCLUDED.unit_price_minor, currency = EXCLUDED.currency,
				price_revision = stock.price_revision + 1
			WHERE NOT $4 OR stock.unit_price_minor IS NULL
			RETURNING `+stockColumns, sku, unitPriceMinor, currency, onlyUnpriced))
		if onlyUnpriced && errors.Is(err, pgx.ErrNoRows) {
			st = nil
			return nil // priced already
		}
		if err != nil {
			return fmt.Errorf("set price %s: %w", sku, err)
		}
		env, err := s.NewEvent(ctx, &inventoryeventsv1.InventoryPriced{
			Sku:       st.GetSku(),
			UnitPrice: &inventoryeventsv1.Money{Currency: st.GetPrice().GetCurrency(), AmountMinor: st.GetPrice().GetUnitPriceMinor()},
			Revision:  st.GetPrice().GetRevision(),
			PricedAt:  timestamppb.New(time.Now()),
		})
		if err != nil {
			return fmt.Errorf("set price %s: %w", sku, err)
		}
		return messaging.Enqueue(ctx, tx, env)
	})
	if err != nil {
		return nil, err
	}
	return st, nil
}
