package deadletter_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/synadia-io/orbit.go/jetstreamext"
	"google.golang.org/protobuf/types/known/timestamppb"

	ordereventsv2 "github.com/shopbus/shopbus/gen/go/ecommerce/order/v2"
	deadletterv1 "github.com/shopbus/shopbus/gen/go/shopbus/deadletter/v1"
	"github.com/shopbus/shopbus/internal/deadletter"
	"github.com/shopbus/shopbus/internal/event"
	"github.com/shopbus/shopbus/internal/messaging"
	"github.com/shopbus/shopbus/internal/testenv"
)

// TestFilerStoresBeforeTerm: a consumer with a Filer stores the dead letter
// itself before it terminates the message, so the dead letter exists even if
// the MSG_TERMINATED advisory is never collected (no collector runs here).
// While the DLQ cannot take it, the message is retried, not terminated; and
// the advisory collected afterwards adds nothing.
// orderCreated is the subject filter of the tests' consumers.
var orderCreated = []string{"ecommerce.order.created"}

func TestFilerStoresBeforeTerm(t *testing.T) {
	js := setup(t)
	ctx := context.Background()
	if err := js.DeleteStream(ctx, deadletter.Stream); err != nil { // the DLQ is unavailable
		t.Fatal(err)
	}
	if _, err := js.PublishMsg(ctx, &nats.Msg{Subject: "ecommerce.order.created.v2.k1", Data: []byte("poison")}); err != nil {
		t.Fatal(err)
	}
	cfg := messaging.ConsumerConfig{Stream: "ECOMMERCE_ORDER", Durable: "test-consumer", Subjects: orderCreated, Strategy: messaging.RoundRobin, DeadLetter: deadletter.Filer(js),
		Retry: messaging.RetryPolicy{MaxDeliver: 1000, Base: 20 * time.Millisecond, Cap: 50 * time.Millisecond}}
	cctx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() {
		done <- messaging.Consume(cctx, js, cfg, func(context.Context, *messaging.Delivery) error { return nil }, quiet)
	}()
	t.Cleanup(func() { cancel(); <-done })

	var consumer jetstream.Consumer
	waitFor(t, "the consumer", func() bool {
		c, err := js.Consumer(ctx, "ECOMMERCE_ORDER", "test-consumer")
		consumer = c
		return err == nil
	})
	waitFor(t, "redeliveries while the DLQ is down", func() bool {
		info, err := consumer.Info(ctx)
		return err == nil && info.NumRedelivered > 0
	})
	if n := msgs(t, js, deadletter.AdvisoryStream); n != 0 {
		t.Fatalf("the message was terminated (%d advisories) while its dead letter could not be stored", n)
	}

	if err := deadletter.Ensure(ctx, js, deadletter.Options{}); err != nil { // the DLQ is back
		t.Fatal(err)
	}
	waitFor(t, "the dead letter", func() bool { return msgs(t, js, deadletter.Stream) == 1 })
	waitFor(t, "the Term's advisory", func() bool { return msgs(t, js, deadletter.AdvisoryStream) == 1 })
	dls, _, err := deadletter.NewStore(js).List(ctx, deadletter.Filter{}, 0, 10)
	if err != nil || len(dls) != 1 {
		t.Fatalf("List = %v, %v", dls, err)
	}
	dl := dls[0]
	if dl.GetOriginalStream() != "ECOMMERCE_ORDER" || dl.GetOriginalSequence() != 1 || dl.GetConsumer() != "test-consumer" ||
		messaging.PublishedSubject(dl.GetOriginalSubject()) != "ecommerce.order.created.v2.k1" || dl.GetReason() != deadletterv1.Reason_REASON_TERMINATED ||
		!strings.Contains(dl.GetError(), "malformed event") || dl.GetDeliveries() < 2 || dl.GetFirstFailureAt() == nil {
		t.Errorf("dead letter = %v", dl)
	}
	if first, last := dl.GetFirstFailureAt().AsTime(), dl.GetFailedAt().AsTime(); !first.Before(last) {
		t.Errorf("first failure %v is not before the last %v: the retries' first failure was lost", first, last)
	}

	// An operator discards the dead letter; a collector that sees the Term's
	// advisory only now (down, or lagging past the DLQ's duplicate window)
	// does not bring it back.
	if err := deadletter.NewStore(js).Discard(ctx, dl.GetId()); err != nil {
		t.Fatal(err)
	}
	dlq, err := js.Stream(ctx, deadletter.Stream)
	if err != nil {
		t.Fatal(err)
	}
	shortWindow := dlq.CachedInfo().Config
	shortWindow.Duplicates = 100 * time.Millisecond // stands for the 10 minutes having passed
	if _, err := js.UpdateStream(ctx, shortWindow); err != nil {
		t.Fatal(err)
	}
	time.Sleep(300 * time.Millisecond)
	runCollector(t, js)
	waitFor(t, "the collector", func() bool {
		c, err := js.Consumer(ctx, deadletter.AdvisoryStream, "deadletter-collector")
		if err != nil {
			return false
		}
		info, err := c.Info(ctx)
		return err == nil && info.AckFloor.Stream == 1
	})
	if n := msgs(t, js, deadletter.Stream); n != 0 {
		t.Errorf("%d dead letters after the collector ran, want the discarded one to stay discarded", n)
	}
}

// TestFilerFailsOnLastDelivery: when the dead letter cannot be stored on the
// last delivery the policy allows, nor on JetStream's spare one, the message
// is not terminated, and JetStream's MAX_DELIVERIES advisory files it once
// the DLQ is back.
func TestFilerFailsOnLastDelivery(t *testing.T) {
	js := setup(t)
	ctx := context.Background()
	if err := js.DeleteStream(ctx, deadletter.Stream); err != nil {
		t.Fatal(err)
	}
	if _, err := js.PublishMsg(ctx, &nats.Msg{Subject: "ecommerce.order.created.v2.k1", Data: []byte("poison")}); err != nil {
		t.Fatal(err)
	}
	cfg := messaging.ConsumerConfig{Stream: "ECOMMERCE_ORDER", Durable: "test-consumer", Subjects: orderCreated, Strategy: messaging.RoundRobin, DeadLetter: deadletter.Filer(js),
		AckWait: time.Second, Retry: messaging.RetryPolicy{MaxDeliver: 2, Base: 20 * time.Millisecond, Cap: 50 * time.Millisecond}}
	cctx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() {
		done <- messaging.Consume(cctx, js, cfg, func(context.Context, *messaging.Delivery) error { return nil }, quiet)
	}()
	t.Cleanup(func() { cancel(); <-done })
	waitFor(t, "the MAX_DELIVERIES advisory", func() bool { return msgs(t, js, deadletter.AdvisoryStream) == 1 })
	if err := deadletter.Ensure(ctx, js, deadletter.Options{}); err != nil {
		t.Fatal(err)
	}
	runCollector(t, js)
	waitFor(t, "the dead letter", func() bool { return msgs(t, js, deadletter.Stream) == 1 })
	dls, _, err := deadletter.NewStore(js).List(ctx, deadletter.Filter{}, 0, 10)
	if err != nil || len(dls) != 1 || dls[0].GetReason() != deadletterv1.Reason_REASON_MAX_DELIVERIES || dls[0].GetDeliveries() != 3 {
		t.Fatalf("List = %v, %v; want one max_deliveries dead letter after 3 deliveries (MaxDeliver and the spare one)", dls, err)
	}
}

// TestSpareDeliveryStoresTheDeadLetter: instances that died during the
// deliveries the policy allows (MaxDeliver 2: two deaths here) leave the
// message to JetStream's spare delivery, where the next instance gives up
// and stores the dead letter itself, with its error: no collector runs, so
// JetStream's advisory would have been the only record.
func TestSpareDeliveryStoresTheDeadLetter(t *testing.T) {
	js := setup(t)
	ctx := context.Background()
	cfg := messaging.ConsumerConfig{Stream: "ECOMMERCE_ORDER", Durable: "dying", Subjects: orderCreated, Strategy: messaging.RoundRobin,
		DeadLetter: deadletter.Filer(js), AckWait: 200 * time.Millisecond,
		Retry: messaging.RetryPolicy{MaxDeliver: 2, Base: 20 * time.Millisecond, Cap: 50 * time.Millisecond}}
	failing := func(context.Context, *messaging.Delivery) error { return errors.New("injected: still failing") }
	run := func() (stop func()) {
		cctx, cancel := context.WithCancel(ctx)
		done := make(chan error, 1)
		go func() { done <- messaging.Consume(cctx, js, cfg, failing, quiet) }()
		return func() { cancel(); <-done }
	}
	// The durable, as Consume declares it.
	stop := run()
	testenv.CheckFor(t, 10*time.Second, 20*time.Millisecond, func() error {
		_, err := js.Consumer(ctx, cfg.Stream, cfg.Durable)
		return err
	})
	stop()
	env, err := event.New(ctx, &ordereventsv2.OrderCreated{
		OrderId: "0193a5e2-7c1d-7b3e-9f4a-2d6c8e0f1a2b", Customer: &ordereventsv2.Customer{CustomerId: "6f1c2b3a-4d5e-4f60-8a7b-9c0d1e2f3a4b"},
		Lines: []*ordereventsv2.OrderLine{{Sku: "MUG-001", Quantity: 1, UnitPrice: &ordereventsv2.Money{Currency: "EUR", AmountMinor: 1}}},
		Total: &ordereventsv2.Money{Currency: "EUR", AmountMinor: 1}, CreatedAt: timestamppb.Now(),
	}, event.WithSource("shopbus/order"))
	if err != nil {
		t.Fatal(err)
	}
	data, _ := event.Encode(env)
	if _, err := js.PublishMsg(ctx, &nats.Msg{Subject: "ecommerce.order.created.v2." + env.GetPartitionKey(), Data: data, Header: event.Headers(env)}); err != nil {
		t.Fatal(err)
	}
	// Two instances die with it in hand: received, never settled.
	cons, err := js.Consumer(ctx, cfg.Stream, cfg.Durable)
	if err != nil {
		t.Fatal(err)
	}
	for death := 1; death <= 2; death++ {
		batch, err := cons.Fetch(1, jetstream.FetchMaxWait(5*time.Second))
		if err != nil {
			t.Fatal(err)
		}
		got := 0
		for range batch.Messages() {
			got++
		}
		if got != 1 {
			t.Fatalf("delivery %d: %d messages, want 1", death, got)
		}
	}
	stop = run()
	defer stop()
	testenv.CheckFor(t, 10*time.Second, 20*time.Millisecond, func() error {
		if n := msgs(t, js, deadletter.Stream); n != 1 {
			return fmt.Errorf("%d dead letters", n)
		}
		return nil
	})
	dls, _, err := deadletter.NewStore(js).List(ctx, deadletter.Filter{}, 0, 10)
	if err != nil || len(dls) != 1 || dls[0].GetReason() != deadletterv1.Reason_REASON_MAX_DELIVERIES || dls[0].GetDeliveries() != 3 ||
		!strings.Contains(dls[0].GetError(), "still failing") {
		t.Fatalf("List = %v, %v; want one max_deliveries dead letter after 3 deliveries, with the handler's error", dls, err)
	}
}

// TestFilerTooLarge: a message whose dead letter, with its headers, would
// exceed NATS's maximum payload is dead-lettered without its data, and
// redrive fetches the original from its stream.
func TestFilerTooLarge(t *testing.T) {
	js := setup(t)
	ctx := context.Background()
	big := bytes.Repeat([]byte("x"), 1<<20-300) // fits alone, not with the Shopbus-Dlq-* headers
	if _, err := js.PublishMsg(ctx, &nats.Msg{Subject: "ecommerce.order.created.v2.k1", Data: big}); err != nil {
		t.Fatal(err)
	}
	cfg := messaging.ConsumerConfig{Stream: "ECOMMERCE_ORDER", Durable: "test-consumer", Subjects: orderCreated, Strategy: messaging.RoundRobin, DeadLetter: deadletter.Filer(js)}
	cctx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() {
		done <- messaging.Consume(cctx, js, cfg, func(context.Context, *messaging.Delivery) error { return nil }, quiet)
	}()
	waitFor(t, "the dead letter", func() bool { return msgs(t, js, deadletter.Stream) == 1 })
	waitFor(t, "the Term's advisory", func() bool { return msgs(t, js, deadletter.AdvisoryStream) == 1 })
	cancel()
	<-done
	store := deadletter.NewStore(js)
	dls, _, err := store.List(ctx, deadletter.Filter{}, 0, 10)
	if err != nil || len(dls) != 1 {
		t.Fatalf("List = %v, %v", dls, err)
	}
	seq, err := store.Redrive(ctx, dls[0].GetId())
	if err != nil {
		t.Fatalf("Redrive: %v", err)
	}
	stream, err := js.Stream(ctx, "ECOMMERCE_ORDER")
	if err != nil {
		t.Fatal(err)
	}
	raw, err := stream.GetMsg(ctx, seq)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(raw.Data, big) {
		t.Fatalf("redriven message #%d: %d bytes; want the original %d bytes", seq, len(raw.Data), len(big))
	}
}

// TestRedriveOfABatchedMessage: a message a relay stored in an atomic batch
// carries the batch's Nats-Batch-* headers. Its redrive publishes it
// without them: with them the server would take the redrive for the
// message of a batch it does not know, and refuse it or wait for a commit
// that never comes.
func TestRedriveOfABatchedMessage(t *testing.T) {
	js := setup(t)
	ctx := context.Background()
	batch := []*nats.Msg{
		{Subject: "ecommerce.order.created.v2.k1", Data: []byte("poison 1"), Header: nats.Header{"Nats-Msg-Id": {"batched-1"}}},
		{Subject: "ecommerce.order.created.v2.k2", Data: []byte("poison 2"), Header: nats.Header{"Nats-Msg-Id": {"batched-2"}}},
	}
	if _, err := jetstreamext.PublishMsgBatch(ctx, js, batch); err != nil {
		t.Fatal(err)
	}
	cfg := messaging.ConsumerConfig{Stream: "ECOMMERCE_ORDER", Durable: "test-consumer", Subjects: orderCreated, Strategy: messaging.RoundRobin, DeadLetter: deadletter.Filer(js)}
	cctx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() {
		done <- messaging.Consume(cctx, js, cfg, func(context.Context, *messaging.Delivery) error { return nil }, quiet)
	}()
	waitFor(t, "the dead letters", func() bool { return msgs(t, js, deadletter.Stream) == 2 })
	cancel()
	<-done
	stream, err := js.Stream(ctx, "ECOMMERCE_ORDER")
	if err != nil {
		t.Fatal(err)
	}
	if first, err := stream.GetMsg(ctx, 1); err != nil || first.Header.Get("Nats-Batch-Id") == "" {
		t.Fatalf("the original: %v, %v; want it stored with its batch's id", first, err)
	}
	store := deadletter.NewStore(js)
	dls, _, err := store.List(ctx, deadletter.Filter{}, 0, 10)
	if err != nil || len(dls) != 2 {
		t.Fatalf("List = %v, %v", dls, err)
	}
	for _, dl := range dls {
		rctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		seq, err := store.Redrive(rctx, dl.GetId())
		cancel()
		if err != nil {
			t.Fatalf("Redrive of #%d (original %d): %v", dl.GetId(), dl.GetOriginalSequence(), err)
		}
		raw, err := stream.GetMsg(ctx, seq)
		if err != nil {
			t.Fatal(err)
		}
		if raw.Header.Get("Nats-Batch-Id") != "" || raw.Header.Get("Nats-Batch-Sequence") != "" || raw.Header.Get("Nats-Batch-Commit") != "" {
			t.Errorf("redriven message #%d carries batch headers: %v", seq, raw.Header)
		}
		if want := fmt.Sprintf("poison %d", dl.GetOriginalSequence()); string(raw.Data) != want {
			t.Errorf("redriven message #%d: %q; want the original %q", seq, raw.Data, want)
		}
	}
}
