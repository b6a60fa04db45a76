package messaging_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/shopbus/shopbus/internal/event"
	"github.com/shopbus/shopbus/internal/messaging"
	"github.com/shopbus/shopbus/internal/testenv"
)

// TestStreamRetentionIsDeclared: every event stream, declared on a real
// nats-server, keeps its events for the longest retention its events'
// contracts declare, not for a constant.
func TestStreamRetentionIsDeclared(t *testing.T) {
	t.Parallel()
	_, js := testenv.NATS(t)
	ctx := context.Background()
	want := map[string]time.Duration{}
	for _, spec := range event.Catalog() {
		if spec.Retention <= 0 {
			t.Fatalf("%s declares no retention", spec)
		}
		want[messaging.StreamOf(spec)] = max(want[messaging.StreamOf(spec)], spec.Retention)
	}
	for name, age := range want {
		s, err := js.Stream(ctx, name)
		if err != nil {
			t.Fatalf("stream %s: %v", name, err)
		}
		if got := s.CachedInfo().Config.MaxAge; got != age {
			t.Errorf("stream %s: MaxAge %v, want %v (the longest retention of its events)", name, got, age)
		}
	}
	// The telemetry stream keeps a week, the order stream a month: they
	// come from their contracts.
	if want["IOT_TELEMETRY"] == want["ECOMMERCE_ORDER"] {
		t.Errorf("IOT_TELEMETRY and ECOMMERCE_ORDER keep events alike (%v): the test proves nothing", want["IOT_TELEMETRY"])
	}

	// A stream holding events of different retentions keeps the longest,
	// and an update follows a changed declaration.
	mixed := []string{"iot.telemetry.raw.v1", "ecommerce.order.created.v2"}
	for _, name := range []string{"IOT_TELEMETRY", "ECOMMERCE_ORDER"} {
		if err := js.DeleteStream(ctx, name); err != nil {
			t.Fatal(err)
		}
	}
	if err := messaging.EnsureStream(ctx, js, "MIXED", mixed, messaging.StreamOptions{Partitions: 1}); err != nil {
		t.Fatal(err)
	}
	order, err := event.LookupSubject("ecommerce.order.created.v2")
	if err != nil {
		t.Fatal(err)
	}
	s, err := js.Stream(ctx, "MIXED")
	if err != nil {
		t.Fatal(err)
	}
	if got := s.CachedInfo().Config.MaxAge; got != order.Retention {
		t.Errorf("MIXED: MaxAge %v, want %v (order.created's, the longer)", got, order.Retention)
	}
	if err := messaging.EnsureStream(ctx, js, "MIXED", mixed[:1], messaging.StreamOptions{Partitions: 1}); err != nil {
		t.Fatal(err)
	}
	telemetry, _ := event.LookupSubject("iot.telemetry.raw.v1")
	if s, err = js.Stream(ctx, "MIXED"); err != nil || s.CachedInfo().Config.MaxAge != telemetry.Retention {
		t.Errorf("MIXED after update: MaxAge %v (err %v), want %v", s.CachedInfo().Config.MaxAge, err, telemetry.Retention)
	}

	// A type subject no contract declares has no retention: refused,
	// naming it.
	err = messaging.EnsureStream(ctx, js, "UNKNOWN", []string{"acme.thing.happened.v1"}, messaging.StreamOptions{Partitions: 1})
	if !errors.Is(err, event.ErrUnknownType) || !strings.Contains(err.Error(), "acme.thing.happened.v1") {
		t.Errorf("undeclared type subject: err %v, want ErrUnknownType naming it", err)
	}
}
