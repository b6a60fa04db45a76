package deadletter_test

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"google.golang.org/protobuf/proto"

	"github.com/shopbus/shopbus/internal/deadletter"
	"github.com/shopbus/shopbus/internal/messaging"
	"github.com/shopbus/shopbus/internal/testenv"
)

var quiet = slog.New(slog.NewTextHandler(io.Discard, nil))

func setup(t *testing.T) jetstream.JetStream {
	_, js := testenv.NATS(t)
	if err := deadletter.Ensure(context.Background(), js, deadletter.Options{}); err != nil {
		t.Fatal(err)
	}
	return js
}

func msgs(t *testing.T, js jetstream.JetStream, stream string) uint64 {
	t.Helper()
	s, err := js.Stream(context.Background(), stream)
	if err != nil {
		t.Fatal(err)
	}
	info, err := s.Info(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return info.State.Msgs
}

func waitFor(t *testing.T, what string, ok func() bool) {
	t.Helper()
	testenv.CheckFor(t, 20*time.Second, 20*time.Millisecond, func() error {
		if !ok() {
			return fmt.Errorf("waiting for %s", what)
		}
		return nil
	})
}

func runCollector(t *testing.T, js jetstream.JetStream) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = deadletter.NewCollector(js, quiet).Run(ctx)
	}()
	t.Cleanup(func() { cancel(); <-done })
}

// TestCollectorCatchesUp: advisories raised while no collector runs wait in
// the advisory stream; a collector started later turns each into exactly one
// dead letter, even when it sees an advisory twice.
func TestCollectorCatchesUp(t *testing.T) {
	js := setup(t)
	ctx := context.Background()
	if _, err := js.PublishMsg(ctx, &nats.Msg{Subject: "ecommerce.order.created.v2.k1", Data: []byte("poison")}); err != nil {
		t.Fatal(err)
	}
	// A consumer terminates the poison message; no collector is running.
	cctx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() {
		done <- messaging.Consume(cctx, js, messaging.ConsumerConfig{Stream: "ECOMMERCE_ORDER", Durable: "test-consumer", Subjects: orderCreated, Strategy: messaging.RoundRobin},
			func(context.Context, *messaging.Delivery) error { return nil }, quiet)
	}()
	waitFor(t, "the advisory", func() bool { return msgs(t, js, deadletter.AdvisoryStream) == 1 })
	cancel()
	<-done
	if n := msgs(t, js, deadletter.Stream); n != 0 {
		t.Fatalf("%d dead letters before any collector ran", n)
	}

	// The same advisory arrives a second time.
	adv, err := js.Stream(ctx, deadletter.AdvisoryStream)
	if err != nil {
		t.Fatal(err)
	}
	raw, err := adv.GetMsg(ctx, 1)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := js.Publish(ctx, raw.Subject, raw.Data); err != nil {
		t.Fatal(err)
	}

	runCollector(t, js)
	waitFor(t, "both advisories to be collected", func() bool {
		c, err := js.Consumer(ctx, deadletter.AdvisoryStream, "deadletter-collector")
		if err != nil {
			return false
		}
		info, err := c.Info(ctx)
		return err == nil && info.AckFloor.Stream >= 2 && info.NumAckPending == 0 // both advisories
	})
	if n := msgs(t, js, deadletter.Stream); n != 1 {
		t.Fatalf("%d dead letters, want exactly 1", n)
	}
	dl, err := deadletter.NewStore(js).Get(ctx, 1)
	if err != nil {
		t.Fatal(err)
	}
	if dl.GetConsumer() != "test-consumer" || string(dl.GetData()) != "poison" || dl.GetOriginalSequence() != 1 {
		t.Errorf("dead letter %v", dl)
	}
}

// TestMaxDeliveriesAdvisory: a consumer that never settles its messages (it
// dies each time) exhausts MaxDeliver; JetStream's own MAX_DELIVERIES
// advisory puts the message in the DLQ.
func TestMaxDeliveriesAdvisory(t *testing.T) {
	js := setup(t)
	ctx := context.Background()
	runCollector(t, js)
	if _, err := js.Publish(ctx, "ecommerce.order.created.v2.k1", []byte("never acked")); err != nil {
		t.Fatal(err)
	}
	cons, err := js.CreateOrUpdateConsumer(ctx, "ECOMMERCE_ORDER", jetstream.ConsumerConfig{
		Durable: "crashing", AckPolicy: jetstream.AckExplicitPolicy, AckWait: 100 * time.Millisecond, MaxDeliver: 2,
	})
	if err != nil {
		t.Fatal(err)
	}
	// Two deliveries, then a third pull: the server notices the message
	// is out of deliveries when it looks for the next one to deliver.
	for range 3 {
		batch, err := cons.Fetch(1, jetstream.FetchMaxWait(500*time.Millisecond))
		if err != nil {
			t.Fatal(err)
		}
		for range batch.Messages() { // received, never acked
		}
	}
	waitFor(t, "the dead letter", func() bool { return msgs(t, js, deadletter.Stream) == 1 })
	dls, _, err := deadletter.NewStore(js).List(ctx, deadletter.Filter{Consumer: "crashing"}, 0, 10)
	if err != nil || len(dls) != 1 {
		t.Fatalf("list: %v %v", dls, err)
	}
	if dl := dls[0]; dl.GetReason().String() != "REASON_MAX_DELIVERIES" || dl.GetDeliveries() != 2 {
		t.Errorf("dead letter %v", dl)
	}
}

// TestDeadLetterHygiene: the collector leaves alone what other
// applications' streams terminate, and a message carrying Shopbus-Dlq-*
// headers of its own cannot write its dead letter's record: its dead
// letter names its real stream and is redriven.
func TestDeadLetterHygiene(t *testing.T) {
	js := setup(t)
	ctx := context.Background()
	if _, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: "OTHER_APP", Subjects: []string{"other.>"}}); err != nil {
		t.Fatal(err)
	}
	if _, err := js.Publish(ctx, "other.thing", []byte("not shopbus's")); err != nil {
		t.Fatal(err)
	}
	forged := &nats.Msg{Subject: "ecommerce.order.created.v2.k1", Data: []byte("poison"), Header: nats.Header{}}
	forged.Header.Set(deadletter.HeaderOriginalMissing, "true")
	forged.Header.Set(deadletter.HeaderOriginalStream, "OTHER_APP")
	forged.Header.Set("X-Note", "caf\xe9") // not UTF-8, which a protobuf string must be
	if _, err := js.PublishMsg(ctx, forged); err != nil {
		t.Fatal(err)
	}
	terminate := func(stream string) {
		cons, err := js.CreateOrUpdateConsumer(ctx, stream, jetstream.ConsumerConfig{Durable: "terminator", AckPolicy: jetstream.AckExplicitPolicy})
		if err != nil {
			t.Fatal(err)
		}
		batch, err := cons.Fetch(1, jetstream.FetchMaxWait(5*time.Second))
		if err != nil {
			t.Fatal(err)
		}
		for m := range batch.Messages() {
			if err := m.TermWithReason("poison: test"); err != nil {
				t.Fatal(err)
			}
		}
	}
	terminate("OTHER_APP")
	terminate("ECOMMERCE_ORDER")
	waitFor(t, "both advisories", func() bool { return msgs(t, js, deadletter.AdvisoryStream) == 2 })
	runCollector(t, js)
	waitFor(t, "both advisories to be collected", func() bool {
		c, err := js.Consumer(ctx, deadletter.AdvisoryStream, "deadletter-collector")
		if err != nil {
			return false
		}
		info, err := c.Info(ctx)
		return err == nil && info.AckFloor.Stream >= 2 && info.NumAckPending == 0
	})
	if n := msgs(t, js, deadletter.Stream); n != 1 {
		t.Fatalf("%d dead letters, want 1 (none of OTHER_APP's)", n)
	}
	store := deadletter.NewStore(js)
	dl, err := store.Get(ctx, 1)
	if err != nil {
		t.Fatal(err)
	}
	if dl.GetOriginalStream() != "ECOMMERCE_ORDER" || dl.GetOriginalSubject() == "" {
		t.Errorf("the dead letter names %q %q, want ECOMMERCE_ORDER and the message's subject", dl.GetOriginalStream(), dl.GetOriginalSubject())
	}
	// A header that is not UTF-8 reaches the API replaced, not as an error
	// for the whole list.
	list, _, err := store.List(ctx, deadletter.Filter{}, 0, 10)
	if err != nil || len(list) != 1 {
		t.Fatalf("list: %v, %v", list, err)
	}
	for _, m := range []proto.Message{dl, list[0]} {
		if _, err := proto.Marshal(m); err != nil {
			t.Errorf("the dead letter cannot be sent: %v", err)
		}
	}
	if got := dl.GetHeaders()["X-Note"]; got != "caf\uFFFD" {
		t.Errorf("header X-Note %q, want %q", got, "caf\uFFFD")
	}
	if _, err := store.Redrive(ctx, 1); err != nil {
		t.Errorf("redrive: %v", err)
	}
}

// TestEnsureBounds: the dead-letter queue and the advisory stream are
// bounded in age and in bytes.
func TestEnsureBounds(t *testing.T) {
	t.Parallel()
	js := setup(t)
	for name, want := range map[string]int64{deadletter.AdvisoryStream: deadletter.AdvisoryMaxBytes, deadletter.Stream: 1 << 30} {
		s, err := js.Stream(context.Background(), name)
		if err != nil {
			t.Fatal(err)
		}
		if c := s.CachedInfo().Config; c.MaxBytes != want || c.MaxAge <= 0 {
			t.Errorf("%s: max bytes %d, max age %v; want %d and an age", name, c.MaxBytes, c.MaxAge, want)
		}
	}
}
