package post

import (
	"context"
	"fmt"
	"time"
)

// FollowUser makes follower follow followee (both canonical UUIDs): the
// posts followee publishes from then on reach follower's feed. It reports
// whether follower followed followee already (then nothing changes);
// following oneself is ErrFollowSelf. One statement. Past follower's
// follow rate (Limits, shared with UnfollowUser) it fails with
// ErrTooManyFollows in a servicekit.RateLimitedError, and changes nothing;
// a follow of someone followed already counts too (telling it needs the
// database).
func (s *Service) FollowUser(ctx context.Context, follower, followee string) (already bool, err error) {
	if follower == followee {
		return false, ErrFollowSelf
	}
	if err := s.limits.follows.allow(follower, time.Now()); err != nil {
		return false, err
	}
	tag, err := s.Pool.Exec(ctx, `INSERT INTO follows (follower_id, followee_id) VALUES ($1, $2) ON CONFLICT DO NOTHING`, follower, followee)
	if err != nil {
		return false, fmt.Errorf("follow %s: %w", followee, err)
	}
	return tag.RowsAffected() == 0, nil
}
