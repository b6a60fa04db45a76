package post

import (
	"cmp"
	"errors"
	"fmt"
	"math"
	"time"

	"github.com/shopbus/shopbus/internal/servicekit"
)

// Limits bound how fast one user may publish and follow: two token buckets
// per user (the caller, from its token), per post-service instance, one
// for PublishPost and one that FollowUser and UnfollowUser share. N
// instances allow N times the rates.
//
// Posts cost the most: each one becomes a feed row per follower when it
// fans out, so a user with 10,000 followers writes 10,000 rows a post.
// People post a few times an hour, and a client flushing drafts written
// offline posts a handful at once: PostsPerSecond 1 (3,600 an hour) with a
// PostBurst of 10 is never in their way and keeps a script to one fan-out
// a second. A follow is one row, but follow/unfollow churn is how spam
// accounts get noticed and it fills other users' follower lists: someone
// clicking "follow" down a list of suggestions follows a few a second, a
// client importing contacts a few dozen at once, so FollowsPerSecond 5
// with a FollowBurst of 50.
type Limits struct {
	// PostsPerSecond is each user's sustained PublishPost rate (default
	// 1); PostBurst the posts it may publish at once (default 10).
	PostsPerSecond float64
	PostBurst      int
	// FollowsPerSecond is each user's sustained rate of FollowUser and
	// UnfollowUser calls together (default 5); FollowBurst what it may
	// make at once (default 50).
	FollowsPerSecond float64
	FollowBurst      int
	// MaxUsers bounds the users whose buckets each limit keeps (default
	// 10,000). Past it, the buckets of users idle long enough to be full
	// again are forgotten, then others at random: a user is never refused
	// for it, at worst one forgotten gets its burst again.
	MaxUsers int
}

// DefaultLimits are the limits of a zero Limits' fields.
var DefaultLimits = Limits{PostsPerSecond: 1, PostBurst: 10, FollowsPerSecond: 5, FollowBurst: 50, MaxUsers: 10_000}

// WithDefaults returns l with DefaultLimits' values where l has zero.
func (l Limits) WithDefaults() Limits {
	l.PostsPerSecond = cmp.Or(l.PostsPerSecond, DefaultLimits.PostsPerSecond)
	l.PostBurst = cmp.Or(l.PostBurst, DefaultLimits.PostBurst)
	l.FollowsPerSecond = cmp.Or(l.FollowsPerSecond, DefaultLimits.FollowsPerSecond)
	l.FollowBurst = cmp.Or(l.FollowBurst, DefaultLimits.FollowBurst)
	l.MaxUsers = cmp.Or(l.MaxUsers, DefaultLimits.MaxUsers)
	return l
}

// Validate reports a limit that cannot work, naming its field. A zero
// field is refused too: WithDefaults gives it its default first.
func (l Limits) Validate() error {
	rate := func(r float64) bool { return r > 0 && !math.IsInf(r, 0) }
	switch {
	case !rate(l.PostsPerSecond):
		return fmt.Errorf("post limits: PostsPerSecond %v: want a positive rate", l.PostsPerSecond)
	case l.PostBurst < 1:
		return fmt.Errorf("post limits: PostBurst %d: want at least 1 post", l.PostBurst)
	case !rate(l.FollowsPerSecond):
		return fmt.Errorf("post limits: FollowsPerSecond %v: want a positive rate", l.FollowsPerSecond)
	case l.FollowBurst < 1:
		return fmt.Errorf("post limits: FollowBurst %d: want at least 1 follow", l.FollowBurst)
	case l.MaxUsers < 1:
		return fmt.Errorf("post limits: MaxUsers %d: want at least 1 user tracked", l.MaxUsers)
	}
	return nil
}

// Errors of the limits; a servicekit.RateLimitedError wrapping one says
// when to retry.
var (
	// ErrTooManyPosts means the user published posts faster than its
	// limit.
	ErrTooManyPosts = errors.New("too many posts from the user: slow down")
	// ErrTooManyFollows means the user followed and unfollowed faster
	// than its limit.
	ErrTooManyFollows = errors.New("too many follows and unfollows from the user: slow down")
)

// userLimiter keeps a token bucket per user for one use, at most
// Limits.MaxUsers of them: past that, some are forgotten rather than a
// user refused.
type userLimiter struct {
	buckets *servicekit.KeyedLimiter
	refused error // the domain error of a refusal
}

func newUserLimiter(perSecond float64, burst, maxUsers int, refused error) userLimiter {
	return userLimiter{refused: refused, buckets: servicekit.NewKeyedLimiter(servicekit.KeyedLimits{
		PerSecond: perSecond, Burst: burst, MaxKeys: maxUsers, ForgetAny: true})}
}

// limiters are the post service's buckets.
type limiters struct{ posts, follows userLimiter }

func newLimiters(l Limits) limiters {
	return limiters{
		posts:   newUserLimiter(l.PostsPerSecond, l.PostBurst, l.MaxUsers, ErrTooManyPosts),
		follows: newUserLimiter(l.FollowsPerSecond, l.FollowBurst, l.MaxUsers, ErrTooManyFollows),
	}
}

// allow takes a token of user's bucket at now, or says how long until one
// is there.
func (u userLimiter) allow(user string, now time.Time) error {
	wait, err := u.buckets.Allow(now, user, 1)
	if err != nil {
		return fmt.Errorf("rate limit of user %s: %w", user, err)
	}
	if wait > 0 {
		return &servicekit.RateLimitedError{Err: fmt.Errorf("%w: user %s", u.refused, user), RetryAfter: wait}
	}
	return nil
}
