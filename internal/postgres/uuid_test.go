package postgres_test

import (
	"context"
	"slices"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"

	"github.com/shopbus/shopbus/internal/postgres"
	"github.com/shopbus/shopbus/internal/testenv"
)

// TestUUIDs: the ids PostgreSQL gets are the ids given, in order, and an id
// that is not a UUID is an error naming it.
func TestUUIDs(t *testing.T) {
	t.Parallel()
	ids := []string{"01a236cd-ad32-71a1-b364-874bca18b60f", "6f1c2b3a-4d5e-4f60-8a7b-9c0d1e2f3a4b"}
	uuids, err := postgres.UUIDs(ids)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, testenv.DatabaseURL())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	var got []string
	if err := conn.QueryRow(ctx, "SELECT array_agg(u::text ORDER BY n) FROM unnest($1::uuid[]) WITH ORDINALITY AS t(u, n)", uuids).Scan(&got); err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(got, ids) {
		t.Errorf("PostgreSQL got %v, want %v", got, ids)
	}
	if _, err := postgres.UUIDs([]string{ids[0], "order-1"}); err == nil || !strings.Contains(err.Error(), `"order-1" is not a UUID`) {
		t.Errorf("UUIDs with order-1: %v, want an error naming it", err)
	}
}
