package telemetry

import (
	"cmp"
	"errors"
	"fmt"
	"math"
	"time"

	"github.com/shopbus/shopbus/internal/servicekit"
)

// MaxReadings is the most readings one batch (one event) holds: the
// contract's limit.
const MaxReadings = 500

// Limits bound what devices may send and what one call may hold in memory.
type Limits struct {
	// ReadingsPerSecond is each device's sustained rate (default 1,000),
	// a token bucket per device and service instance; Burst is what it may
	// send at once (default 5,000, at least MaxReadings: a full batch).
	ReadingsPerSecond float64
	Burst             int
	// MaxDevices bounds the devices whose buckets are kept (default
	// 100,000). When it is reached, the buckets of devices idle long
	// enough to be full again are forgotten; if none is, a new device is
	// refused (ErrTooManyDevices) until one is.
	MaxDevices int
	// InFlight bounds the publishes one call has awaiting JetStream's
	// acknowledgement (default 256): a stream that sends faster waits,
	// and so does its client. The JetStream connection bounds them across
	// calls (messaging.MaxPendingPublishes).
	InFlight int
}

// DefaultLimits are the limits of a zero Limits' fields.
var DefaultLimits = Limits{ReadingsPerSecond: 1_000, Burst: 5_000, MaxDevices: 100_000, InFlight: 256}

// WithDefaults returns l with DefaultLimits' values where l has zero.
func (l Limits) WithDefaults() Limits {
	l.ReadingsPerSecond = cmp.Or(l.ReadingsPerSecond, DefaultLimits.ReadingsPerSecond)
	l.Burst = cmp.Or(l.Burst, DefaultLimits.Burst)
	l.MaxDevices = cmp.Or(l.MaxDevices, DefaultLimits.MaxDevices)
	l.InFlight = cmp.Or(l.InFlight, DefaultLimits.InFlight)
	return l
}

// Validate reports a limit that cannot work.
func (l Limits) Validate() error {
	switch {
	case l.ReadingsPerSecond <= 0 || math.IsNaN(l.ReadingsPerSecond) || math.IsInf(l.ReadingsPerSecond, 0):
		return fmt.Errorf("telemetry limits: %v readings per second: want a positive rate", l.ReadingsPerSecond)
	case l.Burst < MaxReadings:
		return fmt.Errorf("telemetry limits: a burst of %d readings: want at least %d, a full batch", l.Burst, MaxReadings)
	case l.MaxDevices < 1:
		return fmt.Errorf("telemetry limits: %d devices tracked: want at least 1", l.MaxDevices)
	case l.InFlight < 1:
		return fmt.Errorf("telemetry limits: %d publishes in flight per call: want at least 1", l.InFlight)
	}
	return nil
}

// deviceLimiter keeps a token bucket per device, at most MaxDevices of them.
type deviceLimiter struct {
	limits  Limits
	buckets *servicekit.KeyedLimiter
}

func newDeviceLimiter(l Limits) *deviceLimiter {
	return &deviceLimiter{limits: l, buckets: servicekit.NewKeyedLimiter(servicekit.KeyedLimits{
		PerSecond: l.ReadingsPerSecond, Burst: l.Burst, MaxKeys: l.MaxDevices})}
}

// take takes readings[device] tokens from each device's bucket, all or
// none: when one device is over its limit, nothing is taken and the error
// says which and when to retry.
func (d *deviceLimiter) take(readings map[string]int, now time.Time) error {
	device, wait, err := d.buckets.AllowAll(now, readings)
	switch {
	case errors.Is(err, servicekit.ErrOverBurst):
		return fmt.Errorf("%w: device %s sent %d readings in one call, more than its burst of %d: send fewer per call",
			ErrRateLimited, device, readings[device], d.limits.Burst)
	case errors.Is(err, servicekit.ErrTooManyKeys):
		return fmt.Errorf("%w (%d devices tracked)", ErrTooManyDevices, d.buckets.Len())
	case err != nil:
		return fmt.Errorf("rate limit of device %s: %w", device, err)
	case wait > 0:
		return &servicekit.RateLimitedError{Err: fmt.Errorf("%w: device %s", ErrRateLimited, device), RetryAfter: wait}
	}
	return nil
}
