package messaging

import (
	"context"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// answeredFuture is a PubAckFuture whose answer is already in.
type answeredFuture struct {
	ok  chan *jetstream.PubAck
	err chan error
}

func (f answeredFuture) Ok() <-chan *jetstream.PubAck { return f.ok }
func (f answeredFuture) Err() <-chan error            { return f.err }
func (f answeredFuture) Msg() *nats.Msg               { return nil }

// TestWaitTakesAnAnswerReadLate: a pass reads some publishes' answers only
// after waiting on others, past their deadline; an acknowledgement already
// in is an acknowledgement, never a timeout (a select between it and the
// expired timer picked either, half the time each).
func TestWaitTakesAnAnswerReadLate(t *testing.T) {
	t.Parallel()
	for range 200 {
		f := answeredFuture{ok: make(chan *jetstream.PubAck, 1), err: make(chan error, 1)}
		f.ok <- &jetstream.PubAck{Stream: "S", Sequence: 1}
		p := &pending{future: f, start: time.Now().Add(-2 * (PublishTimeout + time.Second))}
		if err := p.wait(context.Background()); err != nil {
			t.Fatalf("wait on an acknowledged publish read after its deadline: %v", err)
		}
		if err := p.wait(context.Background()); err != nil {
			t.Fatalf("wait again: %v", err)
		}
	}
}
