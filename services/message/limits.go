package message

import (
	"cmp"
	"errors"
	"fmt"
	"math"
	"time"

	"github.com/shopbus/shopbus/internal/servicekit"
)

// Limits bound how fast one user may send messages: a token bucket per
// user (the caller, from its token), per message-service instance, so that
// one user's token cannot flood the outbox, the consumer and the read
// model. N instances allow N times the rate.
//
// The defaults are far above what a person types and still stop a script:
// a fast typist sends a message every few seconds, a client flushing an
// offline queue or pasting a batch sends a few dozen at once. So
// MessagesPerSecond is 10 (36,000 an hour at most, each one outbox row and
// one event) and Burst is 50 (a whole offline queue goes through at once).
type Limits struct {
	// MessagesPerSecond is each user's sustained SendMessage rate
	// (default 10); Burst the messages it may send at once (default 50).
	MessagesPerSecond float64
	Burst             int
	// MaxUsers bounds the users whose buckets are kept (default 10,000).
	// Past it, the buckets of users idle long enough to be full again are
	// forgotten, then others at random: a user is never refused for it,
	// at worst one forgotten gets its burst again.
	MaxUsers int
}

// DefaultLimits are the limits of a zero Limits' fields.
var DefaultLimits = Limits{MessagesPerSecond: 10, Burst: 50, MaxUsers: 10_000}

// WithDefaults returns l with DefaultLimits' values where l has zero.
func (l Limits) WithDefaults() Limits {
	l.MessagesPerSecond = cmp.Or(l.MessagesPerSecond, DefaultLimits.MessagesPerSecond)
	l.Burst = cmp.Or(l.Burst, DefaultLimits.Burst)
	l.MaxUsers = cmp.Or(l.MaxUsers, DefaultLimits.MaxUsers)
	return l
}

// Validate reports a limit that cannot work, naming its field. A zero
// field is refused too: WithDefaults gives it its default first.
func (l Limits) Validate() error {
	switch {
	case !(l.MessagesPerSecond > 0) || math.IsInf(l.MessagesPerSecond, 0):
		return fmt.Errorf("message limits: MessagesPerSecond %v: want a positive rate", l.MessagesPerSecond)
	case l.Burst < 1:
		return fmt.Errorf("message limits: Burst %d: want at least 1 message", l.Burst)
	case l.MaxUsers < 1:
		return fmt.Errorf("message limits: MaxUsers %d: want at least 1 user tracked", l.MaxUsers)
	}
	return nil
}

// ErrRateLimited means the user sent messages faster than its limit; a
// servicekit.RateLimitedError wrapping it says when to retry.
var ErrRateLimited = errors.New("too many messages from the user: slow down")

// userLimiter keeps a token bucket per user, at most Limits.MaxUsers of
// them: past that, some are forgotten rather than a user refused.
type userLimiter struct{ *servicekit.KeyedLimiter }

func newUserLimiter(l Limits) userLimiter {
	return userLimiter{servicekit.NewKeyedLimiter(servicekit.KeyedLimits{
		PerSecond: l.MessagesPerSecond, Burst: l.Burst, MaxKeys: l.MaxUsers, ForgetAny: true})}
}

// allow takes a token of user's bucket at now, or says how long until one
// is there.
func (u userLimiter) allow(user string, now time.Time) error {
	wait, err := u.Allow(now, user, 1)
	if err != nil {
		return fmt.Errorf("rate limit of user %s: %w", user, err)
	}
	if wait > 0 {
		return &servicekit.RateLimitedError{Err: fmt.Errorf("%w: user %s", ErrRateLimited, user), RetryAfter: wait}
	}
	return nil
}
