// Package order is the order service: it places orders (CreateOrder writes
// the order and its OrderCreated event to the outbox in one transaction),
// relays its outbox to JetStream, and moves each order from PENDING to
// CONFIRMED or REJECTED when the inventory service's outcome arrives. It
// prices every order itself, from its copy of the catalog's prices, which it
// keeps from the inventory service's inventory.priced events.
//
// Each use case has its file: create_order.go, get_order.go,
// apply_inventory_outcome.go, apply_price.go, recover_stuck_orders.go; handler.go maps them onto the
// Connect API and domain errors onto Connect codes.
package order

import (
	"context"
	"errors"
	"sync"

	"github.com/shopbus/shopbus/internal/messaging"
	"github.com/shopbus/shopbus/internal/servicekit"
)

// Errors of the order service's use cases.
var (
	// ErrNotFound means no order has the given id.
	ErrNotFound = errors.New("order not found")
	// ErrIdempotencyKeyReused means a CreateOrder retry carried a known
	// idempotency key with a different request.
	ErrIdempotencyKeyReused = errors.New("idempotency key already used for a different order")
	// ErrInvalidOrder means an order breaks a rule the request's field
	// rules cannot express (its total is too large).
	ErrInvalidOrder = errors.New("invalid order")
	// ErrPriceMismatch means a CreateOrder line named a unit price that is
	// not its SKU's current price.
	ErrPriceMismatch = errors.New("price mismatch")
	// ErrCurrencyMismatch means a CreateOrder line's SKU is priced in
	// another currency than the order's.
	ErrCurrencyMismatch = errors.New("currency mismatch")
	// ErrUnpriced means the order service knows no price for a SKU of a
	// CreateOrder: the catalog has none, or its inventory.priced event has
	// not arrived yet.
	ErrUnpriced = errors.New("no price for SKU")
	// ErrStopping means the service is stopping: a WatchOrder stream ends
	// with it, and the client watches again (on another instance).
	ErrStopping = errors.New("the order service is stopping; watch the order again")
)

// MaxTotalMinor is the largest order total, in minor units: the bound of
// order.created's Money.amount_minor.
const MaxTotalMinor = 1_000_000_000_000

// Service is the order service. Its Runtime holds its pools, its
// JetStream and the event path's settings (servicekit).
type Service struct {
	servicekit.Runtime
	// Watchdog configures the search for orders stuck in PENDING
	// (recover_stuck_orders.go; DefaultWatchdog where zero).
	Watchdog Watchdog

	metrics  *metrics
	decided  *decisions
	stopping chan struct{} // closed when Run returns
	stopOnce sync.Once
}

// New returns the order service on rt (named "order", its schema migrated
// with services.Migrations("order") and messaging.Migrations).
func New(rt servicekit.Runtime) *Service {
	return &Service{Runtime: rt, decided: newDecisions(), stopping: make(chan struct{})}
}

// Run relays the outbox, consumes inventory outcomes, listens for the
// decisions WatchOrder waits for and nudges orders stuck in PENDING
// (Watchdog), until ctx is done.
func (s *Service) Run(ctx context.Context) error {
	// WatchOrder streams end when the service stops: an HTTP server's
	// graceful shutdown would otherwise wait for each until its deadline.
	defer s.stopOnce.Do(func() { close(s.stopping) })
	s.metrics = newMetrics(s.Telemetry)
	w := s.Watchdog.withDefaults()
	return s.Runtime.Run(ctx, []messaging.Subscription{
		{Config: InventoryOutcomeConsumer(), Handler: s.ApplyInventoryOutcome},
		{Config: FraudScoreConsumer(), Handler: s.ApplyFraudScore},
	},
		func(ctx context.Context) { s.decided.listen(ctx, s.Events(), s.Log) },
		s.Every(w.Every, "look for stuck orders", func(ctx context.Context) error {
			_, err := s.RecoverStuckOrders(ctx, w)
			return err
		}))
}
