package order

import (
	"errors"
	"fmt"
	"math"
	"sync"
	"time"

	"golang.org/x/time/rate"

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
	if l.OrdersPerSecond == 0 {
		l.OrdersPerSecond = DefaultLimits.OrdersPerSecond
	}
	if l.Burst == 0 {
		l.Burst = DefaultLimits.Burst
	}
	if l.MaxUnitsPerLine == 0 {
		l.MaxUnitsPerLine = DefaultLimits.MaxUnitsPerLine
	}
	if l.MaxUnitsPerOrder == 0 {
		l.MaxUnitsPerOrder = DefaultLimits.MaxUnitsPerOrder
	}
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

// rateLimiter keeps a token bucket per customer.
type rateLimiter struct {
	limit rate.Limit
	burst int
	mu    sync.Mutex
	by    map[string]*rate.Limiter
	swept time.Time // the last sweep of full buckets
}

// maxTracked is how many customers' buckets are kept before the full ones
// (customers idle long enough to be back at their burst) are forgotten.
const maxTracked = 10_000

func newRateLimiter(l Limits) *rateLimiter {
	return &rateLimiter{limit: rate.Limit(l.OrdersPerSecond), burst: l.Burst, by: map[string]*rate.Limiter{}}
}

// allow takes a token of customer's bucket, or says how long until one is
// there.
func (r *rateLimiter) allow(customer string, now time.Time) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	lim, ok := r.by[customer]
	if !ok {
		if len(r.by) >= maxTracked && now.Sub(r.swept) >= time.Second {
			// At most a sweep a second: customers back at their burst
			// lose nothing by being forgotten.
			r.swept = now
			for c, l := range r.by {
				if l.TokensAt(now) >= float64(r.burst) {
					delete(r.by, c)
				}
			}
		}
		for c := range r.by {
			if len(r.by) < maxTracked {
				break
			}
			delete(r.by, c) // over the cap still: forget some at random
		}
		lim = rate.NewLimiter(r.limit, r.burst)
		r.by[customer] = lim
	}
	res := lim.ReserveN(now, 1)
	if d := res.DelayFrom(now); d > 0 {
		res.CancelAt(now)
		return &servicekit.RateLimitedError{Err: ErrRateLimited, RetryAfter: d}
	}
	return nil
}
