package post

import (
	"context"
	"fmt"

	"github.com/jackc/pgx/v5"

	inventoryeventsv1 "github.com/shopbus/shopbus/gen/go/ecommerce/inventory/v1"
	"github.com/shopbus/shopbus/internal/messaging"
)

// CatalogConsumer is the consumer of the inventory service's
// inventory.priced events, keyed by SKU: how the post service learns the
// SKUs a post may review (event-carried state; it never calls the inventory
// service).
func CatalogConsumer() messaging.ConsumerConfig {
	return messaging.KeyBasedConsumer("post-keep-catalog", "ecommerce.inventory.priced")
}

// KeepCatalog records the SKUs of a batch of inventory.priced events (one
// partition's) as known, with one statement in one transaction, each event
// once (OnceBatchAll). A SKU once priced stays known: a post only needs it
// to exist, not its price. An event of another type is dead-lettered alone.
func (s *Service) KeepCatalog(ctx context.Context, batch []*messaging.Delivery) error {
	return messaging.OnceBatchAll(ctx, s.Events(), CatalogConsumer().Durable, batch, func(ctx context.Context, tx pgx.Tx, fresh []*messaging.Delivery) error {
		skus := make([]string, 0, len(fresh))
		for _, d := range fresh {
			e, ok := d.Event.(*inventoryeventsv1.InventoryPriced)
			if !ok {
				return s.UnexpectedEvent(d)
			}
			skus = append(skus, e.GetSku())
		}
		if _, err := tx.Exec(ctx, `INSERT INTO products (sku) SELECT unnest($1::text[]) ON CONFLICT DO NOTHING`, skus); err != nil {
			return fmt.Errorf("keep catalog: %w", err)
		}
		return nil
	})
}
