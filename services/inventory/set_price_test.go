package inventory_test

import (
	"context"
	"testing"

	"github.com/jackc/pgx/v5"

	inventoryeventsv1 "github.com/shopbus/shopbus/gen/go/ecommerce/inventory/v1"
	"github.com/shopbus/shopbus/internal/event"
	"github.com/shopbus/shopbus/internal/testenv"
	"github.com/shopbus/shopbus/services/inventory"
)

// priced returns the inventory.priced events in the outbox, in the order
// they were written, with their subjects.
func (f *fixture) priced(t *testing.T) ([]*inventoryeventsv1.InventoryPriced, []string) {
	t.Helper()
	rows, err := f.pool.Query(context.Background(), `SELECT subject, envelope FROM outbox ORDER BY seq`)
	if err != nil {
		t.Fatal(err)
	}
	var events []*inventoryeventsv1.InventoryPriced
	var subjects []string
	var subject string
	var data []byte
	_, err = pgx.ForEachRow(rows, []any{&subject, &data}, func() error {
		env, err := event.Decode(data)
		if err != nil {
			return err
		}
		msg, _, err := event.Open(env)
		if err != nil {
			return err
		}
		if p, ok := msg.(*inventoryeventsv1.InventoryPriced); ok {
			if env.GetSource() != "shopbus/inventory" {
				t.Errorf("inventory.priced from source %q, want shopbus/inventory", env.GetSource())
			}
			events, subjects = append(events, p), append(subjects, subject)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return events, subjects
}

// TestSetPrice: SetPrice stores the price with the SKU's next revision and,
// in the same transaction, its inventory.priced event in the outbox; a SKU
// that does not exist is created with nothing on hand; GetStock reports the
// price; SeedPrices leaves a priced SKU alone.
func TestSetPrice(t *testing.T) {
	t.Parallel()
	f := newFixture(t) // MUG-001, 10 on hand, no price
	ctx := context.Background()
	if st, err := f.svc.GetStock(ctx, "MUG-001"); err != nil || st.GetPrice() != nil {
		t.Fatalf("GetStock before any price: %v, %v; want no price", st, err)
	}
	st, err := f.svc.SetPrice(ctx, "MUG-001", 1250, "EUR")
	if err != nil {
		t.Fatal(err)
	}
	if p := st.GetPrice(); st.GetOnHand() != 10 || p.GetUnitPriceMinor() != 1250 || p.GetCurrency() != "EUR" || p.GetRevision() != 1 {
		t.Errorf("after SetPrice: %v; want 10 on hand, 1250 EUR, revision 1", st)
	}
	if _, err := f.svc.SetPrice(ctx, "MUG-001", 1300, "EUR"); err != nil {
		t.Fatal(err)
	}
	st, err = f.svc.GetStock(ctx, "MUG-001")
	if err != nil {
		t.Fatal(err)
	}
	if p := st.GetPrice(); p.GetUnitPriceMinor() != 1300 || p.GetRevision() != 2 {
		t.Errorf("GetStock after a second SetPrice: %v; want 1300 EUR, revision 2", st)
	}

	// An unknown SKU is created, unstocked.
	st, err = f.svc.SetPrice(ctx, "NEW-SKU-1", 0, "USD")
	if err != nil {
		t.Fatal(err)
	}
	if p := st.GetPrice(); st.GetOnHand() != 0 || st.GetReserved() != 0 || p.GetCurrency() != "USD" || p.GetRevision() != 1 {
		t.Errorf("SetPrice of a new SKU: %v; want 0 on hand, 0 USD, revision 1", st)
	}

	// Seeding prices only what has no price.
	if err := f.svc.SeedPrices(ctx, "EUR", map[string]int64{"MUG-001": 999, "SEED-ONLY": 500}); err != nil {
		t.Fatal(err)
	}
	if err := f.svc.SeedPrices(ctx, "EUR", map[string]int64{"SEED-ONLY": 700}); err != nil {
		t.Fatal(err)
	}
	for sku, want := range map[string]int64{"MUG-001": 1300, "SEED-ONLY": 500} {
		if st, err := f.svc.GetStock(ctx, sku); err != nil || st.GetPrice().GetUnitPriceMinor() != want {
			t.Errorf("after seeding, %s: %v, %v; want %d", sku, st, err, want)
		}
	}

	events, subjects := f.priced(t)
	type got struct {
		sku, subject, currency string
		price, revision        int64
	}
	want := []got{
		{"MUG-001", "ecommerce.inventory.priced.v1.MUG-001", "EUR", 1250, 1},
		{"MUG-001", "ecommerce.inventory.priced.v1.MUG-001", "EUR", 1300, 2},
		{"NEW-SKU-1", "ecommerce.inventory.priced.v1.NEW-SKU-1", "USD", 0, 1},
		{"SEED-ONLY", "ecommerce.inventory.priced.v1.SEED-ONLY", "EUR", 500, 1},
	}
	if len(events) != len(want) {
		t.Fatalf("%d inventory.priced events in the outbox, want %d: %v", len(events), len(want), events)
	}
	for i, e := range events {
		g := got{e.GetSku(), subjects[i], e.GetUnitPrice().GetCurrency(), e.GetUnitPrice().GetAmountMinor(), e.GetRevision()}
		if g != want[i] || e.GetPricedAt() == nil {
			t.Errorf("event %d: %+v (priced at %v), want %+v", i, g, e.GetPricedAt(), want[i])
		}
	}
}

// TestSetPriceIsAtomic: when the event cannot be written, the price is not
// stored either.
func TestSetPriceIsAtomic(t *testing.T) {
	t.Parallel()
	svc := inventory.New(testenv.Runtime(t, "inventory"))
	ctx := context.Background()
	if _, err := svc.SetStock(ctx, "MUG-001", 10); err != nil {
		t.Fatal(err)
	}
	if _, err := svc.Pool.Exec(ctx, `ALTER TABLE outbox RENAME TO outbox_away`); err != nil {
		t.Fatal(err)
	}
	if _, err := svc.SetPrice(ctx, "MUG-001", 1250, "EUR"); err == nil {
		t.Fatal("SetPrice succeeded without an outbox")
	}
	if _, err := svc.Pool.Exec(ctx, `ALTER TABLE outbox_away RENAME TO outbox`); err != nil {
		t.Fatal(err)
	}
	st, err := svc.GetStock(ctx, "MUG-001")
	if err != nil {
		t.Fatal(err)
	}
	if st.GetPrice() != nil {
		t.Errorf("the price was stored without its event: %v", st.GetPrice())
	}
}
