// Package inventory is the inventory service: it keeps stock per SKU,
// reserves stock for each order.created event exactly once (all lines or
// none, never below zero), publishes the outcome (inventory.adjusted or
// inventory.rejected) through its outbox, and serves stock queries and the
// admin SetStock and Restock. It owns the catalog's prices too: the admin
// SetPrice stores a SKU's price and publishes it (inventory.priced) for the
// order service, which prices every order with it.
//
// In the order saga it compensates: an order.rejected (the fraud score or a
// reviewer refused the order) releases what it reserved for the order,
// once, and says so with inventory.released.
//
// Use cases: reserve_stock.go (the consumer), release_stock.go (its
// compensation), get_stock.go, set_stock.go,
// set_price.go; handler.go maps them onto the Connect API.
package inventory

import (
	"context"
	"errors"

	"github.com/shopbus/shopbus/internal/messaging"
	"github.com/shopbus/shopbus/internal/servicekit"
)

// Errors of the inventory service's use cases.
var (
	// ErrNotFound means no stock row has the given SKU.
	ErrNotFound = errors.New("SKU not found")
	// ErrBadPageToken means a page token was not one this service issued.
	ErrBadPageToken = errors.New("invalid page token")
)

// Service is the inventory service. Its Runtime holds its pools, its
// JetStream and the event path's settings (servicekit).
type Service struct {
	servicekit.Runtime
}

// New returns the inventory service on rt (named "inventory", its schema
// migrated with services.Migrations("inventory") and messaging.Migrations).
func New(rt servicekit.Runtime) *Service { return &Service{Runtime: rt} }

// Run relays the outbox and consumes order.created and order.rejected
// until ctx is done.
func (s *Service) Run(ctx context.Context) error {
	return s.Runtime.Run(ctx, []messaging.Subscription{{Config: ReserveStockConsumer(), Handler: s.ReserveStock}})
}
