package event

import (
	"context"
	"os"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	orderv1 "github.com/shopbus/shopbus/gen/go/ecommerce/order/v1"
	orderv2 "github.com/shopbus/shopbus/gen/go/ecommerce/order/v2"
)

// TestEveryOldVersionIsUpcast: when an event has a version N+1, consumers can
// read version N through an upcaster.
func TestEveryOldVersionIsUpcast(t *testing.T) {
	for _, spec := range Catalog() {
		if _, err := Lookup(spec.Name, spec.Version+1); err == nil && !hasUpcaster(spec.Name, spec.Version) {
			t.Errorf("%s has a version %d but no upcaster from %d in upcast.go", spec, spec.Version+1, spec.Version)
		}
	}
}

func TestLatestUpcastsOrderCreatedV1(t *testing.T) {
	createdAt := timestamppb.New(time.Date(2026, 11, 27, 10, 15, 0, 0, time.UTC))
	want := &orderv2.OrderCreated{
		OrderId:  "0193a5e2-7c1d-7b3e-9f4a-2d6c8e0f1a2b",
		Customer: &orderv2.Customer{CustomerId: "6f1c2b3a-4d5e-4f60-8a7b-9c0d1e2f3a4b"},
		Lines: []*orderv2.OrderLine{
			{Sku: "MUG-001", Quantity: 2, UnitPrice: &orderv2.Money{Currency: "EUR", AmountMinor: 1250}},
			{Sku: "TEE-BLK-M", Quantity: 1, UnitPrice: &orderv2.Money{Currency: "EUR", AmountMinor: 2499}},
		},
		Total:     &orderv2.Money{Currency: "EUR", AmountMinor: 4999},
		CreatedAt: createdAt,
	}

	// Bytes written by the first version of order.created.v1.
	b, err := os.ReadFile("testdata/order.created.v1.first.bin")
	if err != nil {
		t.Fatal(err)
	}
	env, err := Decode(b)
	if err != nil {
		t.Fatal(err)
	}
	got, spec, err := Latest(env)
	if err != nil {
		t.Fatal(err)
	}
	if spec.String() != "order.created.v2" || !proto.Equal(got, want) {
		t.Errorf("Latest(first v1) = %s %v\nwant order.created.v2 %v", spec, got, want)
	}

	// A v1 event with the field added later keeps it.
	v1 := &orderv1.OrderCreated{
		OrderId: want.GetOrderId(), CustomerId: want.GetCustomer().GetCustomerId(), Currency: "EUR", TotalMinor: 1250,
		Items:     []*orderv1.LineItem{{Sku: "MUG-001", Quantity: 1, UnitPriceMinor: 1250}},
		CreatedAt: createdAt, CouponCode: proto.String("WINTER26"),
	}
	env, err = New(context.Background(), v1, WithSource("test"))
	if err != nil {
		t.Fatal(err)
	}
	got, _, err = Latest(env)
	if err != nil {
		t.Fatal(err)
	}
	if c := got.(*orderv2.OrderCreated).GetCouponCode(); c != "WINTER26" {
		t.Errorf("coupon code after upcast = %q", c)
	}

	// The newest version passes through unchanged.
	env, err = New(context.Background(), want, WithSource("test"))
	if err != nil {
		t.Fatal(err)
	}
	got, spec, err = Latest(env)
	if err != nil || spec.Version != 2 || !proto.Equal(got, want) {
		t.Errorf("Latest(v2) = %s %v, %v", spec, got, err)
	}
}
