package servicekit

import (
	"errors"
	"fmt"
	"sync"
	"time"

	"golang.org/x/time/rate"
)

// RateLimitedError is a refusal of a caller that goes faster than its
// limit, with the wait before it may try again. Errors.Connect returns it
// as ResourceExhausted with a RetryInfo detail and a Retry-After header.
type RateLimitedError struct {
	// Err says who was limited; it wraps the service's domain error.
	Err error
	// RetryAfter is the wait before the caller may try again.
	RetryAfter time.Duration
}

func (e *RateLimitedError) Error() string {
	return fmt.Sprintf("%v; retry in %v", e.Err, e.RetryAfter.Round(time.Millisecond))
}

// Unwrap returns Err, so that errors.Is matches the domain error.
func (e *RateLimitedError) Unwrap() error { return e.Err }

// Errors of a KeyedLimiter.
var (
	// ErrOverBurst means a key asked for more tokens at once than its
	// burst: it never gets them, however long it waits.
	ErrOverBurst = errors.New("more tokens at once than the burst")
	// ErrTooManyKeys means the limiter keeps as many buckets as it may,
	// none of them full, and refuses a new key until one is.
	ErrTooManyKeys = errors.New("too many keys tracked")
)

// KeyedLimits configure a KeyedLimiter.
type KeyedLimits struct {
	// PerSecond is each key's sustained rate of tokens; Burst is how many
	// it may take at once (at least 1).
	PerSecond float64
	Burst     int
	// MaxKeys bounds the buckets kept (at least 1).
	MaxKeys int
	// ForgetAny, when MaxKeys buckets are kept and none is full, makes
	// room for a new key by forgetting buckets at random instead of
	// refusing it (ErrTooManyKeys).
	ForgetAny bool
}

// KeyedLimiter keeps a token bucket (golang.org/x/time/rate) per key: a
// customer, a device. It keeps at most MaxKeys buckets: when it has that
// many and a new key comes, it forgets the full ones (a key idle long
// enough to be back at its burst loses nothing by it), at most once a
// second; then, if it has MaxKeys still, it forgets some at random or
// refuses the new key (KeyedLimits.ForgetAny). Its methods take the time,
// so that a test sets the clock. It is safe for concurrent use.
type KeyedLimiter struct {
	limits  KeyedLimits
	mu      sync.Mutex
	buckets map[string]*rate.Limiter
	swept   time.Time // when full buckets were last forgotten
}

// NewKeyedLimiter returns a KeyedLimiter of limits, with no bucket yet.
func NewKeyedLimiter(limits KeyedLimits) *KeyedLimiter {
	return &KeyedLimiter{limits: limits, buckets: map[string]*rate.Limiter{}}
}

// Allow takes n tokens of key's bucket at now. When they are not there, it
// takes none and returns the wait until they are; the error is
// ErrOverBurst or ErrTooManyKeys.
func (k *KeyedLimiter) Allow(now time.Time, key string, n int) (wait time.Duration, err error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	_, wait, err = k.reserve(now, key, n)
	return wait, err
}

// AllowAll takes n[key] tokens of each key's bucket at now, all or none.
// When one key's tokens are not there, it takes none and returns that key
// with the wait until they are, or with ErrOverBurst or ErrTooManyKeys.
func (k *KeyedLimiter) AllowAll(now time.Time, n map[string]int) (refused string, wait time.Duration, err error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	var taken []*rate.Reservation
	for key, tokens := range n {
		r, wait, err := k.reserve(now, key, tokens)
		if wait > 0 || err != nil {
			for _, r := range taken {
				r.CancelAt(now)
			}
			return key, wait, err
		}
		taken = append(taken, r)
	}
	return "", 0, nil
}

// Len is how many buckets the limiter keeps.
func (k *KeyedLimiter) Len() int {
	k.mu.Lock()
	defer k.mu.Unlock()
	return len(k.buckets)
}

// reserve takes n tokens of key's bucket, or none, saying why. k.mu is held.
func (k *KeyedLimiter) reserve(now time.Time, key string, n int) (*rate.Reservation, time.Duration, error) {
	b, err := k.bucket(now, key)
	if err != nil {
		return nil, 0, err
	}
	r := b.ReserveN(now, n)
	if !r.OK() {
		return nil, 0, ErrOverBurst
	}
	if wait := r.DelayFrom(now); wait > 0 {
		r.CancelAt(now)
		return nil, wait, nil
	}
	return r, 0, nil
}

// bucket returns key's bucket, making it when there is room. k.mu is held.
func (k *KeyedLimiter) bucket(now time.Time, key string) (*rate.Limiter, error) {
	if b, ok := k.buckets[key]; ok {
		return b, nil
	}
	if len(k.buckets) >= k.limits.MaxKeys && now.Sub(k.swept) >= time.Second {
		k.swept = now
		for id, b := range k.buckets {
			if b.TokensAt(now) >= float64(k.limits.Burst) {
				delete(k.buckets, id)
			}
		}
	}
	for id := range k.buckets {
		if len(k.buckets) < k.limits.MaxKeys || !k.limits.ForgetAny {
			break
		}
		delete(k.buckets, id)
	}
	if len(k.buckets) >= k.limits.MaxKeys {
		return nil, ErrTooManyKeys
	}
	b := rate.NewLimiter(rate.Limit(k.limits.PerSecond), k.limits.Burst)
	k.buckets[key] = b
	return b, nil
}
