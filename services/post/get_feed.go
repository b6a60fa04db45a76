package post

import (
	"context"
	"fmt"

	"github.com/jackc/pgx/v5"

	postv1 "github.com/shopbus/shopbus/gen/go/shopbus/post/v1"
	"github.com/shopbus/shopbus/internal/servicekit"
)

// DefaultFeedPageSize is GetFeed's page size when the request names none
// (GetFeedRequest.page_size bounds it to 100).
const DefaultFeedPageSize = 20

// GetFeed returns a page of reader's feed, newest first (by publication,
// then post id), and the token of the next page ("" on the last): the posts
// the fan-out wrote to it that reader may see now, a FOLLOWERS post only
// while reader is its author or follows its author. One statement.
func (s *Service) GetFeed(ctx context.Context, reader string, req *postv1.GetFeedRequest) ([]*postv1.Post, string, error) {
	size := int(req.GetPageSize())
	if size == 0 {
		size = DefaultFeedPageSize
	}
	after := ""
	args := []any{reader, size + 1}
	if tok := req.GetPageToken(); tok != "" {
		at, id, err := servicekit.DecodeTimeCursor(tok)
		if err != nil {
			return nil, "", fmt.Errorf("%w: %w", ErrBadPageToken, err)
		}
		after = ` AND (f.published_at, f.post_id) < ($3, $4)`
		args = append(args, at, id)
	}
	rows, err := s.Pool.Query(ctx, `SELECT `+postColumns+` FROM feed_entries f JOIN posts p USING (post_id)
		WHERE f.reader_id = $1`+after+`
			AND (p.visibility = 'PUBLIC' OR p.author_id = $1
				OR EXISTS (SELECT FROM follows WHERE follower_id = $1 AND followee_id = p.author_id))
		ORDER BY f.published_at DESC, f.post_id DESC LIMIT $2`, args...)
	if err != nil {
		return nil, "", fmt.Errorf("get feed: %w", err)
	}
	return servicekit.Page(rows, size, func(r pgx.Row) (*postv1.Post, error) { return scanPost(r) }, func(last *postv1.Post) string {
		return servicekit.EncodeTimeCursor(last.GetPublishedAt().AsTime(), last.GetPostId())
	}, "get feed")
}
