package deadletter_test

import (
	"context"
	"fmt"
	"maps"
	"testing"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/shopbus/shopbus/internal/deadletter"
)

// TestCensus: the census behind the DLQ gauge counts the dead letters by
// original stream and reason, and follows redrives, discards and
// retention.
func TestCensus(t *testing.T) {
	t.Parallel()
	js := setup(t)
	ctx := context.Background()
	stream, err := js.Stream(ctx, deadletter.Stream)
	if err != nil {
		t.Fatal(err)
	}
	store := deadletter.NewStore(js)
	letters := map[uint64]deadletter.CensusKey{} // by sequence
	file := func(n int) {
		t.Helper()
		for range n {
			i := len(letters)
			key := deadletter.CensusKey{Stream: "ECOMMERCE_ORDER", Reason: deadletter.ReasonTerminated}
			if i%2 == 1 {
				key.Stream = "ECOMMERCE_INVENTORY"
			}
			if i%3 == 0 {
				key.Reason = deadletter.ReasonMaxDeliveries
			}
			msg := &nats.Msg{Subject: fmt.Sprintf("shopbus.dlq.%s.c.%d", key.Stream, i), Data: []byte("x"), Header: nats.Header{}}
			msg.Header.Set(deadletter.HeaderOriginalStream, key.Stream)
			msg.Header.Set(deadletter.HeaderReason, key.Reason)
			ack, err := js.PublishMsg(ctx, msg)
			if err != nil {
				t.Fatal(err)
			}
			letters[ack.Sequence] = key
		}
	}
	check := func(what string) {
		t.Helper()
		want := map[deadletter.CensusKey]int{}
		for _, key := range letters {
			want[key]++
		}
		got, err := store.Census(ctx)
		if err != nil {
			t.Fatalf("%s: %v", what, err)
		}
		if !maps.Equal(got, want) {
			t.Errorf("%s: counts %v, want %v", what, got, want)
		}
	}
	check("an empty DLQ")
	file(2500) // more than one fetch
	check("2500 letters")
	for _, seq := range []uint64{20, 1500, 1501} {
		if err := stream.DeleteMsg(ctx, seq); err != nil {
			t.Fatal(err)
		}
		delete(letters, seq)
	}
	check("three redriven")
	if err := stream.Purge(ctx, jetstream.WithPurgeSequence(1200)); err != nil {
		t.Fatal(err)
	}
	for seq := range letters {
		if seq < 1200 {
			delete(letters, seq)
		}
	}
	check("the oldest gone")
}
