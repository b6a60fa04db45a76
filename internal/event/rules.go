package event

import (
	"google.golang.org/protobuf/proto"

	orderv2 "github.com/shopbus/shopbus/gen/go/ecommerce/order/v2"
	"github.com/shopbus/shopbus/internal/valid"
)

// The Go forms of the events' message-level CEL rules, which protovalidate
// would otherwise evaluate on every event (about 4 µs for
// order.created.v2). Each is used only while its contract says exactly the
// expression given here; TestIsValidAgreesWithProtovalidate checks each
// against protovalidate, and TestNoStaleRules that each still has its rule.
func init() {
	valid.RegisterRule("order_created.currency_consistent",
		"this.lines.all(l, l.unit_price.currency == this.total.currency)",
		func(m proto.Message) bool {
			o, ok := m.(*orderv2.OrderCreated)
			if !ok {
				return false
			}
			for _, l := range o.GetLines() {
				if l.GetUnitPrice().GetCurrency() != o.GetTotal().GetCurrency() {
					return false
				}
			}
			return true
		})
}
