package gateway

import (
	"github.com/shopbus/shopbus/gen/go/shopbus/deadletter/v1/deadletterv1connect"
	"github.com/shopbus/shopbus/gen/go/shopbus/group/v1/groupv1connect"
	"github.com/shopbus/shopbus/gen/go/shopbus/inventory/v1/inventoryv1connect"
	"github.com/shopbus/shopbus/gen/go/shopbus/lag/v1/lagv1connect"
)

// adminProcedures change stock, see and change dead letters, or see the
// consumer groups and their lag.
var adminProcedures = map[string]bool{
	inventoryv1connect.InventoryServiceSetStockProcedure:             true,
	inventoryv1connect.InventoryServiceRestockProcedure:              true,
	inventoryv1connect.InventoryServiceSetPriceProcedure:             true,
	deadletterv1connect.DeadLetterServiceListDeadLettersProcedure:    true,
	deadletterv1connect.DeadLetterServiceGetDeadLetterProcedure:      true,
	deadletterv1connect.DeadLetterServiceRedriveDeadLettersProcedure: true,
	deadletterv1connect.DeadLetterServiceDiscardDeadLettersProcedure: true,
	groupv1connect.GroupServiceListGroupsProcedure:                   true,
	lagv1connect.LagServiceListConsumerLagProcedure:                  true,
}

// IsAdmin reports whether a procedure is an admin one, which needs the
// admin role (auth.AdminRole).
func IsAdmin(procedure string) bool { return adminProcedures[procedure] }
