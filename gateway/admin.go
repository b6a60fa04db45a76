package gateway

import (
	"strings"

	"github.com/shopbus/shopbus/gen/go/shopbus/deadletter/v1/deadletterv1connect"
	"github.com/shopbus/shopbus/gen/go/shopbus/fraud/v1/fraudv1connect"
	"github.com/shopbus/shopbus/gen/go/shopbus/group/v1/groupv1connect"
	"github.com/shopbus/shopbus/gen/go/shopbus/inventory/v1/inventoryv1connect"
	"github.com/shopbus/shopbus/gen/go/shopbus/lag/v1/lagv1connect"
	"github.com/shopbus/shopbus/gen/go/shopbus/order/v1/orderv1connect"
	"github.com/shopbus/shopbus/gen/go/shopbus/telemetry/v1/telemetryv1connect"
)

// adminServices are admin as a whole: every procedure they have, and any
// they gain, needs the admin role.
var adminServices = []string{
	deadletterv1connect.DeadLetterServiceName,
	groupv1connect.GroupServiceName,
	lagv1connect.LagServiceName,
	fraudv1connect.FraudServiceName,
	// shopbus new service: generated services go above this line.
}

// adminProcedures are the admin procedures of services that customers
// also call: they change stock and prices, or decide an order's review.
var adminProcedures = map[string]bool{
	inventoryv1connect.InventoryServiceSetStockProcedure: true,
	inventoryv1connect.InventoryServiceRestockProcedure:  true,
	inventoryv1connect.InventoryServiceSetPriceProcedure: true,
	orderv1connect.OrderServiceReviewOrderProcedure:      true,
	// Devices ingest their own readings (the telemetry handler checks the
	// device); their rollups are an operator's.
	telemetryv1connect.TelemetryServiceGetDeviceStatsProcedure: true,
}

// IsAdmin reports whether a procedure ("/pkg.Service/Method") is an admin
// one, which needs the admin role (auth.AdminRole): the stock and price
// changes, an order's review, and every procedure of the dead-letter, group,
// lag and fraud services.
func IsAdmin(procedure string) bool {
	if adminProcedures[procedure] {
		return true
	}
	for _, s := range adminServices {
		if strings.HasPrefix(procedure, "/"+s+"/") {
			return true
		}
	}
	return false
}

// deviceProcedures are the procedures a device's token ("kind": "device")
// may call: ingesting its own readings (the telemetry handler checks the
// device). They are customer procedures too: an admin (a device gateway)
// ingests for any device, and a user's token is refused by the handler.
var deviceProcedures = map[string]bool{
	telemetryv1connect.TelemetryServiceIngestReadingsProcedure: true,
	telemetryv1connect.TelemetryServiceIngestBatchProcedure:    true,
}

// IsDevice reports whether a procedure ("/pkg.Service/Method") is one a
// device's token may call (auth.DeviceProcedures): every other procedure
// refuses it with PermissionDenied, so that a device never acts as a user.
func IsDevice(procedure string) bool { return deviceProcedures[procedure] }
