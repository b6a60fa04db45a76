package messaging_test

import (
	"errors"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/shopbus/shopbus/internal/messaging"
	"github.com/shopbus/shopbus/internal/testenv"
)

// TestPublishesThatGetNoAnswerAreReleased: a publish that JetStream never
// answers (here a subscriber takes it and never replies, as a stream
// without quorum would) fails after PublishTimeout instead of staying
// pending for good, so the relay's pending publishes drain and later
// publishes go through (issue 12: the relay used to wedge).
func TestPublishesThatGetNoAnswerAreReleased(t *testing.T) {
	t.Parallel()
	srv, _ := testenv.NATS(t)
	nc, err := nats.Connect(srv.ClientURL())
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	if _, err := nc.Subscribe("blackhole.>", func(*nats.Msg) {}); err != nil {
		t.Fatal(err)
	}
	js, err := messaging.NewJetStream(nc)
	if err != nil {
		t.Fatal(err)
	}
	var futures []jetstream.PubAckFuture
	for range 5 {
		f, err := js.PublishAsync("blackhole.x", []byte("never answered"))
		if err != nil {
			t.Fatal(err)
		}
		futures = append(futures, f)
	}
	deadline := time.After(messaging.PublishTimeout + 5*time.Second)
	for _, f := range futures {
		select {
		case err := <-f.Err():
			if !errors.Is(err, jetstream.ErrAsyncPublishTimeout) {
				t.Errorf("publish failed with %v, want a timeout", err)
			}
		case <-f.Ok():
			t.Error("a publish nobody answered was acknowledged")
		case <-deadline:
			t.Fatal("a publish nobody answered is still pending")
		}
	}
	if n := js.PublishAsyncPending(); n != 0 {
		t.Errorf("%d publishes still pending", n)
	}
	if _, err := js.Publish(t.Context(), "ecommerce.order.created.v2.k1", []byte("after")); err != nil {
		t.Errorf("a publish after the timeouts: %v", err)
	}
}
