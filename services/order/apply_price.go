package order

import (
	"github.com/jackc/pgx/v5"

	inventoryeventsv1 "github.com/shopbus/shopbus/gen/go/ecommerce/inventory/v1"
)

// queuePrices queues on b the one statement that applies a batch's
// inventory.priced events to the prices table: for each SKU, the event of
// the highest revision, and only over an older revision, so a redelivered,
// redriven or late event never rolls a price back. Nothing is queued for no
// events.
func queuePrices(b *pgx.Batch, priced []*inventoryeventsv1.InventoryPriced) {
	if len(priced) == 0 {
		return
	}
	// One row per SKU: an upsert may not touch a row twice.
	newest := map[string]*inventoryeventsv1.InventoryPriced{}
	var order []string
	for _, p := range priced {
		cur, ok := newest[p.GetSku()]
		if !ok {
			order = append(order, p.GetSku())
		}
		if !ok || p.GetRevision() > cur.GetRevision() {
			newest[p.GetSku()] = p
		}
	}
	skus, prices, currencies, revisions := make([]string, len(order)), make([]int64, len(order)), make([]string, len(order)), make([]int64, len(order))
	for i, sku := range order {
		p := newest[sku]
		skus[i], prices[i], currencies[i], revisions[i] = sku, p.GetUnitPrice().GetAmountMinor(), p.GetUnitPrice().GetCurrency(), p.GetRevision()
	}
	b.Queue(`INSERT INTO prices (sku, unit_price_minor, currency, revision)
		SELECT * FROM unnest($1::text[], $2::bigint[], $3::text[], $4::bigint[])
		ON CONFLICT (sku) DO UPDATE SET unit_price_minor = EXCLUDED.unit_price_minor, currency = EXCLUDED.currency,
			revision = EXCLUDED.revision, updated_at = now()
		WHERE prices.revision < EXCLUDED.revision`, skus, prices, currencies, revisions)
}
