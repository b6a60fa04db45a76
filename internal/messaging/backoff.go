package messaging

import (
	"math/rand/v2"
	"time"
)

// Backoff schedule (docs/adr/006-retries-and-backoff.md): exponential from
// BackoffBase, doubling per attempt, capped at BackoffCap, with full jitter
// in its upper half so that retries of many messages spread out.
const (
	BackoffBase = 250 * time.Millisecond
	BackoffCap  = 30 * time.Second
)

// Backoff returns the delay before retry number attempt (1 for the first
// retry): a random duration in [d/2, d] where d = min(BackoffCap,
// BackoffBase * 2^(attempt-1)).
func Backoff(attempt int) time.Duration {
	d := BackoffCap
	if attempt < 1 {
		attempt = 1
	}
	if attempt <= 20 {
		d = min(BackoffCap, BackoffBase<<(attempt-1))
	}
	return d/2 + rand.N(d/2+1)
}
