package post

import (
	"context"
	"fmt"
	"time"
)

// UnfollowUser makes follower stop following followee (both canonical
// UUIDs): followee's posts no longer reach follower's feed, and GetFeed no
// longer shows followee's FOLLOWERS posts already there (PUBLIC ones stay).
// It reports whether follower followed followee until now. One statement.
// Past follower's follow rate (Limits, shared with FollowUser) it fails
// with ErrTooManyFollows in a servicekit.RateLimitedError, and changes
// nothing.
func (s *Service) UnfollowUser(ctx context.Context, follower, followee string) (was bool, err error) {
	if err := s.limits.follows.allow(follower, time.Now()); err != nil {
		return false, err
	}
	tag, err := s.Pool.Exec(ctx, `DELETE FROM follows WHERE follower_id = $1 AND followee_id = $2`, follower, followee)
	if err != nil {
		return false, fmt.Errorf("unfollow %s: %w", followee, err)
	}
	return tag.RowsAffected() > 0, nil
}
