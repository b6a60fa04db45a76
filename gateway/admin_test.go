package gateway_test

import (
	"strings"
	"testing"

	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/reflect/protoregistry"

	"github.com/shopbus/shopbus/gateway"
	// Every service the gateway can serve registers its file.
	_ "github.com/shopbus/shopbus/gen/go/shopbus/deadletter/v1"
	_ "github.com/shopbus/shopbus/gen/go/shopbus/fraud/v1"
	_ "github.com/shopbus/shopbus/gen/go/shopbus/group/v1"
	_ "github.com/shopbus/shopbus/gen/go/shopbus/inventory/v1"
	_ "github.com/shopbus/shopbus/gen/go/shopbus/lag/v1"
	_ "github.com/shopbus/shopbus/gen/go/shopbus/message/v1"
	_ "github.com/shopbus/shopbus/gen/go/shopbus/order/v1"
	_ "github.com/shopbus/shopbus/gen/go/shopbus/post/v1"
	_ "github.com/shopbus/shopbus/gen/go/shopbus/telemetry/v1"
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
	// Chat: the sender is the caller; a conversation's participants and
	// admins may list it (services/message).
	"/shopbus.message.v1.MessageService/SendMessage":  true,
	"/shopbus.message.v1.MessageService/ListMessages": true,
	// The post service acts as the caller only (its handler).
	"/shopbus.post.v1.PostService/PublishPost":  true,
	"/shopbus.post.v1.PostService/GetFeed":      true,
	"/shopbus.post.v1.PostService/FollowUser":   true,
	"/shopbus.post.v1.PostService/UnfollowUser": true,
	// A device's token ingests its own device's readings only.
	"/shopbus.telemetry.v1.TelemetryService/IngestReadings": true,
	"/shopbus.telemetry.v1.TelemetryService/IngestBatch":    true,
}

// TestDeviceProcedures: a device's token may call the telemetry ingestion
// only, never a user's procedure nor an admin one.
func TestDeviceProcedures(t *testing.T) {
	t.Parallel()
	for p := range customerProcedures {
		want := strings.HasPrefix(p, "/shopbus.telemetry.v1.TelemetryService/Ingest")
		if gateway.IsDevice(p) != want {
			t.Errorf("IsDevice(%s) = %v, want %v", p, !want, want)
		}
	}
	if gateway.IsDevice("/shopbus.telemetry.v1.TelemetryService/GetDeviceStats") {
		t.Error("GetDeviceStats (admin) is a device procedure")
	}
}

// TestEveryProcedureIsClassified: each procedure of every service the
// gateway serves is either a customer's (listed above) or an admin one,
// never both; a procedure added to a proto fails here until someone
// decides which it is. A device procedure (gateway.IsDevice) is a
// customer's.
func TestEveryProcedureIsClassified(t *testing.T) {
	t.Parallel()
	var files []protoreflect.FileDescriptor
	protoregistry.GlobalFiles.RangeFiles(func(f protoreflect.FileDescriptor) bool {
		if strings.HasPrefix(string(f.Package()), "shopbus.") && f.Services().Len() > 0 {
			files = append(files, f)
		}
		return true
	})
	if len(files) < 6 {
		t.Fatalf("found %d service files; the imports below register them", len(files))
	}
	for _, f := range files {
		for i := range f.Services().Len() {
			svc := f.Services().Get(i)
			for j := range svc.Methods().Len() {
				p := "/" + string(svc.FullName()) + "/" + string(svc.Methods().Get(j).Name())
				switch admin, customer := gateway.IsAdmin(p), customerProcedures[p]; {
				case gateway.IsDevice(p) && !customer:
					t.Errorf("%s is a device procedure but not a customer's: a device's token never holds the admin role", p)
				case admin && customer:
					t.Errorf("%s is both an admin and a customer procedure", p)
				case !admin && !customer:
					t.Errorf("%s is unclassified: make it admin (gateway.IsAdmin) or list it among the customer procedures", p)
				}
			}
		}
	}
}
