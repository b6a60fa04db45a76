package servicekit_test

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	eventv1 "github.com/shopbus/shopbus/gen/go/shopbus/event/v1"
	"github.com/shopbus/shopbus/internal/event"
	"github.com/shopbus/shopbus/internal/messaging"
	"github.com/shopbus/shopbus/internal/servicekit"
)

// TestEvery: the task calls its job at every tick, logs a failure once per
// failed call with what the job does, and returns when ctx is done.
func TestEvery(t *testing.T) {
	t.Parallel()
	var mu sync.Mutex
	var logged bytes.Buffer
	log := slog.New(slog.NewTextHandler(&syncWriter{mu: &mu, w: &logged}, nil))
	rt := servicekit.NewRuntime("widget", nil, nil, "widget", log)
	ctx, cancel := context.WithCancel(context.Background())
	calls := make(chan struct{}, 10)
	task := rt.Every(time.Millisecond, "polish the widgets", func(context.Context) error {
		calls <- struct{}{}
		return errors.New("no polish")
	})
	done := make(chan struct{})
	go func() { defer close(done); task(ctx) }()
	for range 3 {
		select {
		case <-calls:
		case <-time.After(10 * time.Second):
			t.Fatal("the job was not called every tick")
		}
	}
	cancel()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("the task did not return when ctx was done")
	}
	mu.Lock()
	defer mu.Unlock()
	if out := logged.String(); !strings.Contains(out, `msg="cannot polish the widgets" service=widget err="no polish"`) {
		t.Errorf("log %q does not say the job failed", out)
	}
}

// TestSource: a service's envelopes name it as the event catalog's
// producers do.
func TestSource(t *testing.T) {
	t.Parallel()
	rt := servicekit.NewRuntime("fraud", nil, nil, "fraud", slog.Default())
	if got := rt.Source(); got != "shopbus/fraud" {
		t.Errorf("Source %q, want shopbus/fraud", got)
	}
}

// TestUnexpectedEvent: an event of a type the consumer does not handle is
// a permanent failure of that event alone, named with the service.
func TestUnexpectedEvent(t *testing.T) {
	t.Parallel()
	rt := servicekit.NewRuntime("widget", nil, nil, "widget", slog.Default())
	d := &messaging.Delivery{Envelope: &eventv1.Envelope{Id: "e-1"}, Spec: event.Spec{Name: "gadget.made", Version: 2}}
	err := rt.UnexpectedEvent(d)
	var ee *messaging.EventError
	if !errors.As(err, &ee) || ee.Delivery != d || !messaging.IsPermanent(err) || err.Error() != "event e-1: widget: unexpected event gadget.made.v2" {
		t.Errorf("%v, want a permanent EventError of e-1", err)
	}
}

// syncWriter writes to w under mu.
type syncWriter struct {
	mu *sync.Mutex
	w  *bytes.Buffer
}

func (s *syncWriter) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.w.Write(p)
}
