package services_test

import (
	"io/fs"
	"testing"

	"github.com/shopbus/shopbus/services"
)

// TestMigrations: each service's migrations are its own folder's, and a
// name no service has has none.
func TestMigrations(t *testing.T) {
	t.Parallel()
	for name, first := range map[string]string{"order": "001_orders.sql", "inventory": "001_stock.sql", "fraud": "001_scores.sql", "nosuch": ""} {
		files, _ := fs.Glob(services.Migrations(name), "*.sql")
		if (first == "") != (len(files) == 0) || first != "" && files[0] != first {
			t.Errorf("Migrations(%q) holds %v, want it to start with %q", name, files, first)
		}
	}
}
