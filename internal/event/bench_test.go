package event_test

import (
	"context"
	"testing"

	"google.golang.org/protobuf/proto"

	orderv2 "github.com/shopbus/shopbus/gen/go/ecommerce/order/v2"
	"github.com/shopbus/shopbus/internal/event"
)

// BenchmarkOrderCreatedRoundTrip measures what a producer and a consumer do
// for one order.created.v1 event with two lines: New (validate the payload,
// build and validate the envelope), Encode, Decode (validate the envelope)
// and Open (decode and validate the payload).
func BenchmarkOrderCreatedRoundTrip(b *testing.B) {
	roundTrip(b, orderCreated())
}

// BenchmarkOrderCreatedV2RoundTrip is the same for order.created.v2, which
// the order service publishes. Its message-level CEL rule (every line in the
// currency of the total) is evaluated by protovalidate.
func BenchmarkOrderCreatedV2RoundTrip(b *testing.B) {
	roundTrip(b, orderCreatedV2())
}

func roundTrip(b *testing.B, msg proto.Message) {
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		env, err := event.New(ctx, msg, event.WithSource("shopbus/order"))
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

// BenchmarkValidate measures one validation (protovalidate, through
// event.Validate) of each half of the round trip, which runs each twice:
// once at the producer and once at the consumer.
func BenchmarkValidate(b *testing.B) {
	msg := orderCreated()
	env, err := event.New(context.Background(), msg, event.WithSource("shopbus/order"))
	if err != nil {
		b.Fatal(err)
	}
	for _, c := range []struct {
		name string
		msg  proto.Message
	}{{"envelope", env}, {"order.created.v1", msg}, {"order.created.v2", orderCreatedV2()}} {
		b.Run(c.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if err := event.Validate(c.msg); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

func orderCreatedV2() *orderv2.OrderCreated {
	v1 := orderCreated()
	lines := make([]*orderv2.OrderLine, len(v1.GetItems()))
	for i, it := range v1.GetItems() {
		lines[i] = &orderv2.OrderLine{Sku: it.GetSku(), Quantity: it.GetQuantity(),
			UnitPrice: &orderv2.Money{Currency: v1.GetCurrency(), AmountMinor: it.GetUnitPriceMinor()}}
	}
	return &orderv2.OrderCreated{
		OrderId:   v1.GetOrderId(),
		Customer:  &orderv2.Customer{CustomerId: v1.GetCustomerId()},
		Lines:     lines,
		Total:     &orderv2.Money{Currency: v1.GetCurrency(), AmountMinor: v1.GetTotalMinor()},
		CreatedAt: v1.GetCreatedAt(),
	}
}
