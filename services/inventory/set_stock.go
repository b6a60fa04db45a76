package inventory

import (
	"context"
	"errors"
	"fmt"

	"github.com/jackc/pgx/v5"

	inventoryv1 "github.com/shopbus/shopbus/gen/go/shopbus/inventory/v1"
)

// SetStock sets the units on hand of sku, creating the SKU if needed.
// Reserved units are not touched.
func (s *Service) SetStock(ctx context.Context, sku string, onHand int64) (*inventoryv1.Stock, error) {
	st, err := scanStock(s.Pool.QueryRow(ctx, `INSERT INTO stock (sku, on_hand) VALUES ($1, $2)
		ON CONFLICT (sku) DO UPDATE SET on_hand = EXCLUDED.on_hand, updated_at = now()
		RETURNING `+stockColumns, sku, onHand))
	if err != nil {
		return nil, fmt.Errorf("set stock %s: %w", sku, err)
	}
	return st, nil
}

// Restock adds quantity units to sku, which must exist (ErrNotFound).
func (s *Service) Restock(ctx context.Context, sku string, quantity int64) (*inventoryv1.Stock, error) {
	st, err := scanStock(s.Pool.QueryRow(ctx, `UPDATE stock SET on_hand = on_hand + $2, updated_at = now()
		WHERE sku = $1 RETURNING `+stockColumns, sku, quantity))
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, fmt.Errorf("%w: %s (create it with SetStock)", ErrNotFound, sku)
	}
	if err != nil {
		return nil, fmt.Errorf("restock %s: %w", sku, err)
	}
	return st, nil
}

// SeedStock creates each SKU with the given units on hand unless it exists
// already, so seeding again after a restart changes nothing.
func (s *Service) SeedStock(ctx context.Context, stock map[string]int64) error {
	for sku, n := range stock {
		if _, err := s.Pool.Exec(ctx, `INSERT INTO stock (sku, on_hand) VALUES ($1, $2) ON CONFLICT (sku) DO NOTHING`, sku, n); err != nil {
			return fmt.Errorf("seed stock %s: %w", sku, err)
		}
	}
	return nil
}
