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

// TestCensus: the census behind the DLQ gauge reads a DLQ too large for one
// round over several, keeping its place, and then reads each letter once:
// appended letters alone, and again only the windows that lost letters (a
// redrive or a discard inside, retention at the front). Its counts match
// the DLQ after each change.
func TestCensus(t *testing.T) {
	t.Parallel()
	js := setup(t)
	ctx := context.Background()
	stream, err := js.Stream(ctx, deadletter.Stream)
	if err != nil {
		t.Fatal(err)
	}
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
	want := func() map[deadletter.CensusKey]int {
		out := map[deadletter.CensusKey]int{}
		for _, key := range letters {
			out[key]++
		}
		return out
	}
	c := deadletter.NewCensus(js, 16, 40)
	// rounds runs rounds until one is done, and checks its counts and the
	// letters it read.
	rounds := func(what string, wantRounds int, maxReads uint64) {
		t.Helper()
		before := c.Reads()
		for i := 1; ; i++ {
			got, done, err := c.Round(ctx)
			if err != nil {
				t.Fatalf("%s: round %d: %v", what, i, err)
			}
			if !done {
				if i >= wantRounds {
					t.Fatalf("%s: not done after %d rounds", what, i)
				}
				continue
			}
			if i != wantRounds {
				t.Errorf("%s: done after %d rounds, want %d", what, i, wantRounds)
			}
			if w := want(); !maps.Equal(got, w) {
				t.Errorf("%s: counts %v, want %v", what, got, w)
			}
			if read := c.Reads() - before; read > maxReads {
				t.Errorf("%s: read %d letters, want at most %d", what, read, maxReads)
			}
			return
		}
	}
	rounds("an empty DLQ", 1, 0)
	file(100)
	rounds("100 letters, 40 a round", 3, 100)
	file(10)
	rounds("10 more", 1, 10)
	rounds("nothing new", 1, 0)
	for _, seq := range []uint64{20, 50, 51} { // windows 1 and 3
		if err := stream.DeleteMsg(ctx, seq); err != nil {
			t.Fatal(err)
		}
		delete(letters, seq)
	}
	rounds("three redriven from two windows", 1, 2*16)
	if err := stream.Purge(ctx, jetstream.WithPurgeSequence(37)); err != nil {
		t.Fatal(err)
	}
	for seq := range letters {
		if seq < 37 {
			delete(letters, seq)
		}
	}
	rounds("the front gone into window 2", 1, 16)
	if err := stream.Purge(ctx); err != nil {
		t.Fatal(err)
	}
	clear(letters)
	rounds("all gone", 1, 0)
	file(5)
	rounds("5 after a purge", 1, 5)
}
