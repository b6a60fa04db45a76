package post

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"google.golang.org/protobuf/types/known/timestamppb"

	postv1 "github.com/shopbus/shopbus/gen/go/shopbus/post/v1"
)

// GetPostActivity returns what the read model holds for the partition
// key, or ErrNotFound: one statement.
func (s *Service) GetPostActivity(ctx context.Context, key string) (*postv1.PostActivity, error) {
	a := &postv1.PostActivity{Key: key}
	var updated time.Time
	err := s.Pool.QueryRow(ctx, `SELECT events, last_event_id, last_type, updated_at FROM post_activity WHERE key = $1`, key).
		Scan(&a.Events, &a.LastEventId, &a.LastType, &updated)
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, fmt.Errorf("%w: %s", ErrNotFound, key)
	}
	if err != nil {
		return nil, fmt.Errorf("get post activity %s: %w", key, err)
	}
	a.UpdatedAt = timestamppb.New(updated)
	return a, nil
}
