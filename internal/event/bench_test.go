package event_test

import (
	"context"
	"testing"

	"github.com/shopbus/shopbus/internal/event"
)

// BenchmarkOrderCreatedRoundTrip measures what a producer and a consumer do
// for one event: New (validate payload, build and validate the envelope),
// Encode, Decode (validate the envelope) and Open (decode and validate the
// payload).
func BenchmarkOrderCreatedRoundTrip(b *testing.B) {
	ctx := context.Background()
	msg := orderCreated()
	b.ReportAllocs()
	for b.Loop() {
		env, err := event.New(ctx, msg, event.WithSource("shopbus/order"), event.WithPartitionKey(msg.GetOrderId()))
		if err != nil {
			b.Fatal(err)
		}
		bytes, err := event.Encode(env)
		if err != nil {
			b.Fatal(err)
		}
		decoded, err := event.Decode(bytes)
		if err != nil {
			b.Fatal(err)
		}
		if _, _, err := event.Open(decoded); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkValidate measures one protovalidate pass over each half of the
// round trip, which runs each twice (producer and consumer).
func BenchmarkValidate(b *testing.B) {
	msg := orderCreated()
	env, err := event.New(context.Background(), msg, event.WithSource("shopbus/order"), event.WithPartitionKey(msg.GetOrderId()))
	if err != nil {
		b.Fatal(err)
	}
	b.Run("envelope", func(b *testing.B) {
		for b.Loop() {
			if err := event.Validate(env); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("order.created.v1", func(b *testing.B) {
		for b.Loop() {
			if err := event.Validate(msg); err != nil {
				b.Fatal(err)
			}
		}
	})
}
