package gateway

import (
	"context"
	"crypto/subtle"
	"errors"
	"strings"

	"connectrpc.com/connect"

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
// admin token when the gateway has one.
func IsAdmin(procedure string) bool { return adminProcedures[procedure] }

// adminAuth refuses admin procedures without "Authorization: Bearer
// <token>" with Unauthenticated. Other procedures pass.
func adminAuth(token string) connect.UnaryInterceptorFunc {
	return func(next connect.UnaryFunc) connect.UnaryFunc {
		return func(ctx context.Context, req connect.AnyRequest) (connect.AnyResponse, error) {
			if IsAdmin(req.Spec().Procedure) {
				got, ok := strings.CutPrefix(req.Header().Get("Authorization"), "Bearer ")
				if !ok || subtle.ConstantTimeCompare([]byte(got), []byte(token)) != 1 {
					return nil, connect.NewError(connect.CodeUnauthenticated,
						errors.New(req.Spec().Procedure+" is an admin procedure: send Authorization: Bearer <admin token>"))
				}
			}
			return next(ctx, req)
		}
	}
}
