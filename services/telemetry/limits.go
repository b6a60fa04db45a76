package telemetry

import (
	"fmt"
	"math"
	"sync"
	"time"

	"golang.org/x/time/rate"

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
	if l.ReadingsPerSecond == 0 {
		l.ReadingsPerSecond = DefaultLimits.ReadingsPerSecond
	}
	if l.Burst == 0 {
		l.Burst = DefaultLimits.Burst
	}
	if l.MaxDevices == 0 {
		l.MaxDevices = DefaultLimits.MaxDevices
	}
	if l.InFlight == 0 {
		l.InFlight = DefaultLimits.InFlight
	}
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
	mu      sync.Mutex
	buckets map[string]*rate.Limiter
	swept   time.Time // when full buckets were last forgotten
}

func newDeviceLimiter(l Limits) *deviceLimiter {
	return &deviceLimiter{limits: l, buckets: map[string]*rate.Limiter{}}
}

// take takes readings[device] tokens from each device's bucket, all or
// none: when one device is over its limit, nothing is taken and the error
// says which and when to retry.
func (d *deviceLimiter) take(readings map[string]int, now time.Time) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	var taken []*rate.Reservation
	undo := func() {
		for _, r := range taken {
			r.CancelAt(now)
		}
	}
	for device, n := range readings {
		b, err := d.bucket(device, now)
		if err != nil {
			undo()
			return err
		}
		r := b.ReserveN(now, n)
		if !r.OK() {
			undo()
			return fmt.Errorf("%w: device %s sent %d readings in one call, more than its burst of %d: send fewer per call",
				ErrRateLimited, device, n, d.limits.Burst)
		}
		if wait := r.DelayFrom(now); wait > 0 {
			r.CancelAt(now)
			undo()
			return &servicekit.RateLimitedError{Err: fmt.Errorf("%w: device %s", ErrRateLimited, device), RetryAfter: wait}
		}
		taken = append(taken, r)
	}
	return nil
}

// bucket returns device's bucket, making it when there is room.
func (d *deviceLimiter) bucket(device string, now time.Time) (*rate.Limiter, error) {
	if b, ok := d.buckets[device]; ok {
		return b, nil
	}
	if len(d.buckets) >= d.limits.MaxDevices && now.Sub(d.swept) >= time.Second {
		// At most a sweep a second: a device whose bucket is full loses
		// nothing by being forgotten.
		d.swept = now
		for id, b := range d.buckets {
			if b.TokensAt(now) >= float64(d.limits.Burst) {
				delete(d.buckets, id)
			}
		}
	}
	if len(d.buckets) >= d.limits.MaxDevices {
		return nil, fmt.Errorf("%w (%d devices tracked)", ErrTooManyDevices, len(d.buckets))
	}
	b := rate.NewLimiter(rate.Limit(d.limits.ReadingsPerSecond), d.limits.Burst)
	d.buckets[device] = b
	return b, nil
}
