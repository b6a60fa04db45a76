package messaging_test

import (
	"context"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/shopbus/shopbus/internal/messaging"
	"github.com/shopbus/shopbus/internal/testenv"
)

// TestPrune: published outbox rows go a day after their publish, unpublished
// ones never; processed events of the consumer go once older than twice the
// stream's retention plus a day (a redrive's copy, stored while the
// original is still there, lives a retention more), others' stay, and none
// goes when the stream keeps events forever.
func TestPrune(t *testing.T) {
	t.Parallel()
	pool, _ := testenv.Postgres(t)
	ctx := context.Background()
	now := time.Now()
	outbox := func(published *time.Time) uuid.UUID {
		id := uuid.New()
		if _, err := pool.Exec(ctx, `INSERT INTO outbox (id, subject, envelope, created_at, published_at) VALUES ($1, 's', '\x00', $2, $3)`,
			id, now.Add(-72*time.Hour), published); err != nil {
			t.Fatal(err)
		}
		return id
	}
	processed := func(consumer string, age time.Duration) uuid.UUID {
		id := uuid.New()
		if _, err := pool.Exec(ctx, `INSERT INTO processed_events (consumer, event_id, processed_at) VALUES ($1, $2, $3)`,
			consumer, id, now.Add(-age)); err != nil {
			t.Fatal(err)
		}
		return id
	}
	at := func(d time.Duration) *time.Time { v := now.Add(-d); return &v }
	oldPublished, recentPublished, unpublished := outbox(at(48*time.Hour)), outbox(at(time.Hour)), outbox(nil)
	week := 7 * 24 * time.Hour
	expired, keptInMargin, others := processed("c", 2*week+25*time.Hour), processed("c", 2*week+23*time.Hour), processed("other", 30*week)

	if p, err := messaging.Prune(ctx, pool, "c", 0, now); err != nil || p != (messaging.Pruned{Outbox: 1}) {
		t.Fatalf("Prune with a stream that keeps events forever: %+v, %v; want only the old published outbox row", p, err)
	}
	if p, err := messaging.Prune(ctx, pool, "c", week, now); err != nil || p != (messaging.Pruned{Processed: 1}) {
		t.Fatalf("Prune with a 7-day stream: %+v, %v; want one processed event", p, err)
	}
	exists := func(table, col string, id uuid.UUID) bool {
		var n int
		if err := pool.QueryRow(ctx, "SELECT count(*) FROM "+table+" WHERE "+col+" = $1", id).Scan(&n); err != nil {
			t.Fatal(err)
		}
		return n == 1
	}
	for name, tc := range map[string]struct {
		table, col string
		id         uuid.UUID
		want       bool
	}{
		"outbox published 2 days ago":        {"outbox", "id", oldPublished, false},
		"outbox published an hour ago":       {"outbox", "id", recentPublished, true},
		"outbox never published":             {"outbox", "id", unpublished, true},
		"processed 15 days and an hour ago":  {"processed_events", "event_id", expired, false},
		"processed 14 days and 23 hours ago": {"processed_events", "event_id", keptInMargin, true},
		"another consumer's, 30 weeks old":   {"processed_events", "event_id", others, true},
	} {
		if got := exists(tc.table, tc.col, tc.id); got != tc.want {
			t.Errorf("%s: there %v, want %v", name, got, tc.want)
		}
	}
}
