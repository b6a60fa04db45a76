package order

import (
	"cmp"
	"errors"
	"fmt"
	"math"
	"time"

	orderv1 "github.com/shopbus/shopbus/gen/go/shopbus/order/v1"
	"github.com/shopbus/shopbus/internal/servicekit"
)

// Limits bound what one customer may order: how often (a token bucket per
// customer, per order-service instance) and how many units.
type Limits struct {
	// OrdersPerSecond is each customer's sustained CreateOrder rate
	// (default 10); Burst the orders it may place at once (default 20).
	OrdersPerSecond float64
	Burst           int
	// MaxUnitsPerLine and MaxUnitsPerOrder bound a line's quantity and an
	// order's total units (defaults 1,000 and 10,000).
	MaxUnitsPerLine, MaxUnitsPerOrder uint32
}

// DefaultLimits are the limits of a zero Limits' fields.
var DefaultLimits = Limits{OrdersPerSecond: 10, Burst: 20, MaxUnitsPerLine: 1_000, MaxUnitsPerOrder: 10_000}

// WithDefaults returns l with DefaultLimits' values where l has zero.
func (l Limits) WithDefaults() Limits {
	l.OrdersPerSecond = cmp.Or(l.OrdersPerSecond, DefaultLimits.OrdersPerSecond)
	l.Burst = cmp.Or(l.Burst, DefaultLimits.Burst)
	l.MaxUnitsPerLine = cmp.Or(l.MaxUnitsPerLine, DefaultLimits.MaxUnitsPerLine)
	l.MaxUnitsPerOrder = cmp.Or(l.MaxUnitsPerOrder, DefaultLimits.MaxUnitsPerOrder)
	return l
}

// Validate reports a limit that cannot work.
func (l Limits) Validate() error {
	switch {
	case l.OrdersPerSecond < 0 || math.IsNaN(l.OrdersPerSecond) || math.IsInf(l.OrdersPerSecond, 0):
		return fmt.Errorf("order limits: %v orders per second: want a positive rate", l.OrdersPerSecond)
	case l.Burst < 0:
		return fmt.Errorf("order limits: a burst of %d orders: want at least 1", l.Burst)
	case l.MaxUnitsPerOrder != 0 && l.MaxUnitsPerLine > l.MaxUnitsPerOrder:
		return fmt.Errorf("order limits: %d units per line exceed the %d per order", l.MaxUnitsPerLine, l.MaxUnitsPerOrder)
	}
	return nil
}

// Errors of the limits.
var (
	// ErrTooManyUnits means a line or an order exceeds the units allowed.
	ErrTooManyUnits = errors.New("too many units")
	// ErrRateLimited means the customer placed orders faster than its
	// limit; a servicekit.RateLimitedError says when to retry.
	ErrRateLimited = errors.New("too many orders: slow down")
)

// checkUnits refuses a request over the unit limits, naming the line.
func (l Limits) checkUnits(req *orderv1.CreateOrderRequest) error {
	var units uint64
	for i, line := range req.GetLines() {
		if line.GetQuantity() > l.MaxUnitsPerLine {
			return fmt.Errorf("%w: lines[%d] (%s) orders %d units, more than the %d a line may", ErrTooManyUnits, i, line.GetSku(), line.GetQuantity(), l.MaxUnitsPerLine)
		}
		units += uint64(line.GetQuantity())
	}
	if units > uint64(l.MaxUnitsPerOrder) {
		return fmt.Errorf("%w: the order has %d units, more than the %d an order may", ErrTooManyUnits, units, l.MaxUnitsPerOrder)
	}
	return nil
}

// rateLimiter keeps a token bucket per customer, at most maxTracked of
// them: past that, some are forgotten rather than a customer refused.
type rateLimiter struct{ *servicekit.KeyedLimiter }

// maxTracked is how many customers' buckets are kept before the full ones
// (customers idle long enough to be back at their burst) are forgotten.
const maxTracked = 10_000

func newRateLimiter(l Limits) rateLimiter {
	return rateLimiter{servicekit.NewKeyedLimiter(servicekit.KeyedLimits{
		PerSecond: l.OrdersPerSecond, Burst: l.Burst, MaxKeys: maxTracked, ForgetAny: true})}
}

// allow takes a token of customer's bucket, or says how long until one is
// there.
func (r rateLimiter) allow(customer string, now time.Time) error {
	wait, err := r.Allow(now, customer, 1)
	if err != nil {
		return fmt.Errorf("rate limit of customer %s: %w", customer, err)
	}
	if wait > 0 {
		return &servicekit.RateLimitedError{Err: ErrRateLimited, RetryAfter: wait}
	}
	return nil
}
