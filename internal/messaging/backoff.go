package messaging

import (
	"math/rand/v2"
	"time"
)

// RetryPolicy says how a consumer retries a transient failure
// (docs/adr/006-retries-and-backoff.md): up to MaxDeliver deliveries in all,
// the n-th retry after Delay(n).
type RetryPolicy struct {
	// MaxDeliver bounds deliveries; the last failure goes to the
	// dead-letter queue.
	MaxDeliver int
	// Base is the delay before the first retry; each retry doubles it.
	Base time.Duration
	// Cap bounds the delay.
	Cap time.Duration
}

// DefaultRetry: 10 deliveries, 250ms doubling to a 30s cap, so a message is
// retried for about 1 to 2 minutes before it is dead-lettered.
var DefaultRetry = RetryPolicy{MaxDeliver: 10, Base: 250 * time.Millisecond, Cap: 30 * time.Second}

// Delay returns the delay before retry number attempt (1 for the first
// retry): exponential, d = min(Cap, Base * 2^(attempt-1)), with jitter: a
// random duration in [d/2, d], so that retries of many messages spread out.
func (p RetryPolicy) Delay(attempt int) time.Duration {
	p = p.withDefaults()
	d := p.Base
	for i := 1; i < attempt && d < p.Cap; i++ {
		d *= 2 // stops at the cap: cannot overflow
	}
	d = min(d, p.Cap)
	return d/2 + rand.N(d/2+1)
}

// withDefaults fills each zero field from DefaultRetry.
func (p RetryPolicy) withDefaults() RetryPolicy {
	if p.MaxDeliver <= 0 {
		p.MaxDeliver = DefaultRetry.MaxDeliver
	}
	if p.Base <= 0 {
		p.Base = DefaultRetry.Base
	}
	if p.Cap <= 0 {
		p.Cap = max(DefaultRetry.Cap, p.Base)
	}
	return p
}

// Backoff is DefaultRetry.Delay, for retries outside a consumer (the outbox
// relay, the dead-letter collector).
func Backoff(attempt int) time.Duration { return DefaultRetry.Delay(attempt) }
