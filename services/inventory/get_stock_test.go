package inventory_test

import (
	"context"
	"encoding/base64"
	"errors"
	"slices"
	"testing"

	inventoryv1 "github.com/shopbus/shopbus/gen/go/shopbus/inventory/v1"
	"github.com/shopbus/shopbus/services/inventory"
)

// TestListStock: without SKUs every SKU is listed, page by page; with SKUs
// only those.
func TestListStock(t *testing.T) {
	f := newFixture(t) // MUG-001
	ctx := context.Background()
	for _, sku := range []string{"TEE-BLK-M", "CAP-RED"} {
		if _, err := f.svc.SetStock(ctx, sku, 3); err != nil {
			t.Fatal(err)
		}
	}
	skus := func(stock []*inventoryv1.Stock) (out []string) {
		for _, s := range stock {
			out = append(out, s.GetSku())
		}
		return out
	}
	var all []string
	req := &inventoryv1.ListStockRequest{PageSize: 2}
	for {
		page, next, err := f.svc.ListStock(ctx, req)
		if err != nil {
			t.Fatal(err)
		}
		all = append(all, skus(page)...)
		if next == "" {
			break
		}
		req.PageToken = next
	}
	if want := []string{"CAP-RED", "MUG-001", "TEE-BLK-M"}; !slices.Equal(all, want) {
		t.Errorf("every SKU, two a page: %v, want %v", all, want)
	}
	page, _, err := f.svc.ListStock(ctx, &inventoryv1.ListStockRequest{Skus: []string{"MUG-001", "NOPE-1"}})
	if err != nil || !slices.Equal(skus(page), []string{"MUG-001"}) {
		t.Errorf("MUG-001 and an unknown SKU: %v, %v; want MUG-001", skus(page), err)
	}
	// Page tokens it did not issue, PostgreSQL's text refusing the first
	// two (a NUL byte, invalid UTF-8).
	b64 := func(s string) string { return base64.RawURLEncoding.EncodeToString([]byte(s)) }
	for _, tok := range []string{b64("\x00"), b64("\xff"), b64("mug 1"), "%%%"} {
		if _, _, err := f.svc.ListStock(ctx, &inventoryv1.ListStockRequest{PageToken: tok}); !errors.Is(err, inventory.ErrBadPageToken) {
			t.Errorf("page token %q: %v, want ErrBadPageToken", tok, err)
		}
	}
}
