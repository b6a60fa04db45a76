package event

import (
	"fmt"

	"google.golang.org/protobuf/proto"

	orderv1 "github.com/shopbus/shopbus/gen/go/ecommerce/order/v1"
	orderv2 "github.com/shopbus/shopbus/gen/go/ecommerce/order/v2"
	eventv1 "github.com/shopbus/shopbus/gen/go/shopbus/event/v1"
)

// hasUpcaster reports whether an upcaster from the given version of an event
// to the next exists.
func hasUpcaster(name string, version uint32) bool {
	_, ok := upcasters[key{name, version}]
	return ok
}

// upcasters turn an event of one version into the next version of the same
// event. This is the one place where old versions are translated: consumers
// call Latest and handle only the newest version.
var upcasters = map[key]func(proto.Message) (proto.Message, error){
	{"order.created", 1}: upcastOrderCreatedV1,
}

// Latest decodes env's payload like Open and then upcasts it, version by
// version, to the newest version of its event. The Spec returned is the
// newest version's.
func Latest(env *eventv1.Envelope) (proto.Message, Spec, error) {
	msg, spec, err := open(env.GetType(), env.GetVersion(), env.GetPayload())
	if err != nil {
		return nil, Spec{}, err
	}
	for {
		up, ok := upcasters[key{spec.Name, spec.Version}]
		if !ok {
			return msg, spec, nil
		}
		next, err := Lookup(spec.Name, spec.Version+1)
		if err != nil {
			return nil, Spec{}, fmt.Errorf("event: upcast %s: %w", spec, err)
		}
		if msg, err = up(msg); err != nil {
			return nil, Spec{}, fmt.Errorf("%w: upcast %s to %s: %w", ErrInvalid, spec, next, err)
		}
		if err := validate(named(next.String()+" (upcast from "+spec.String()+")"), msg); err != nil {
			return nil, Spec{}, err
		}
		spec = next
	}
}

// upcastOrderCreatedV1: v1 priced everything in one currency; v2 gives every
// amount its own Money.
func upcastOrderCreatedV1(m proto.Message) (proto.Message, error) {
	v1, ok := m.(*orderv1.OrderCreated)
	if !ok {
		return nil, fmt.Errorf("got %T", m)
	}
	money := func(minor int64) *orderv2.Money {
		return &orderv2.Money{Currency: v1.GetCurrency(), AmountMinor: minor}
	}
	v2 := &orderv2.OrderCreated{
		OrderId:    v1.GetOrderId(),
		Customer:   &orderv2.Customer{CustomerId: v1.GetCustomerId()},
		Total:      money(v1.GetTotalMinor()),
		CreatedAt:  v1.GetCreatedAt(),
		CouponCode: v1.GetCouponCode(),
	}
	for _, item := range v1.GetItems() {
		v2.Lines = append(v2.Lines, &orderv2.OrderLine{
			Sku:       item.GetSku(),
			Quantity:  item.GetQuantity(),
			UnitPrice: money(item.GetUnitPriceMinor()),
		})
	}
	return v2, nil
}
