package order

import (
	"strings"

	"google.golang.org/protobuf/proto"

	orderv1 "github.com/shopbus/shopbus/gen/go/shopbus/order/v1"
)

// Declined is the reject reason a customer reads for an order that the
// fraud check or a reviewer rejected.
const Declined = "declined: the order could not be accepted (contact support)"

// customerView returns o as a caller without the admin role sees it (the
// customer whose order it is): without its fraud score, whose decision,
// score and reason codes are a suspicion about the customer (classed
// sensitive in the contract) and, shown to whoever is scored, an oracle for
// probing the model; and with Declined as the reason of an order that the
// fraud check or a reviewer rejected, in place of the score or the
// reviewer's note. A rejection for stock keeps its reason (which SKUs, how
// many), and the status shows REVIEW while a person decides. o itself is
// not changed.
func customerView(o *orderv1.Order) *orderv1.Order {
	// The saga's reasons begin with these (saga.go).
	hidden := strings.HasPrefix(o.GetRejectReason(), reasonFraud) || strings.HasPrefix(o.GetRejectReason(), reasonReview)
	if o.GetFraud() == nil && !hidden {
		return o
	}
	c := proto.CloneOf(o)
	c.Fraud = nil
	if hidden {
		c.RejectReason = Declined
	}
	return c
}
