package gateway_test

import (
	"testing"

	"google.golang.org/protobuf/reflect/protoreflect"

	"github.com/shopbus/shopbus/gateway"
	deadletterv1 "github.com/shopbus/shopbus/gen/go/shopbus/deadletter/v1"
	groupv1 "github.com/shopbus/shopbus/gen/go/shopbus/group/v1"
	inventoryv1 "github.com/shopbus/shopbus/gen/go/shopbus/inventory/v1"
	lagv1 "github.com/shopbus/shopbus/gen/go/shopbus/lag/v1"
	orderv1 "github.com/shopbus/shopbus/gen/go/shopbus/order/v1"
)

// customerProcedures are the procedures any authenticated caller may call
// (the order service then limits a customer to its own orders).
var customerProcedures = map[string]bool{
	"/shopbus.order.v1.OrderService/CreateOrder":       true,
	"/shopbus.order.v1.OrderService/GetOrder":          true,
	"/shopbus.order.v1.OrderService/ListOrders":        true,
	"/shopbus.order.v1.OrderService/WatchOrder":        true,
	"/shopbus.inventory.v1.InventoryService/GetStock":  true,
	"/shopbus.inventory.v1.InventoryService/ListStock": true,
}

// TestEveryProcedureIsClassified: each procedure of every service the
// gateway serves is either a customer's (listed above) or an admin one,
// never both; a procedure added to a proto fails here until someone
// decides which it is.
func TestEveryProcedureIsClassified(t *testing.T) {
	t.Parallel()
	for _, f := range []protoreflect.FileDescriptor{
		orderv1.File_shopbus_order_v1_order_service_proto, inventoryv1.File_shopbus_inventory_v1_inventory_service_proto,
		deadletterv1.File_shopbus_deadletter_v1_dead_letter_service_proto, groupv1.File_shopbus_group_v1_group_service_proto,
		lagv1.File_shopbus_lag_v1_lag_service_proto,
	} {
		for i := range f.Services().Len() {
			svc := f.Services().Get(i)
			for j := range svc.Methods().Len() {
				p := "/" + string(svc.FullName()) + "/" + string(svc.Methods().Get(j).Name())
				switch admin, customer := gateway.IsAdmin(p), customerProcedures[p]; {
				case admin && customer:
					t.Errorf("%s is both an admin and a customer procedure", p)
				case !admin && !customer:
					t.Errorf("%s is unclassified: make it admin (gateway.IsAdmin) or list it among the customer procedures", p)
				}
			}
		}
	}
}
