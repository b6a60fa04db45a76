package post

import (
	"context"
	"encoding/base64"
	"fmt"
	"strings"
	"time"

	"github.com/google/uuid"
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
		at, id, err := decodePageToken(tok)
		if err != nil {
			return nil, "", err
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
		return encodePageToken(last.GetPublishedAt().AsTime(), last.GetPostId())
	}, "get feed")
}

// encodePageToken is the token of the page after the post published at at
// with id.
func encodePageToken(at time.Time, id string) string {
	return base64.RawURLEncoding.EncodeToString([]byte(at.UTC().Format(time.RFC3339Nano) + "|" + id))
}

// decodePageToken reads encodePageToken's token; ErrBadPageToken for
// anything else.
func decodePageToken(tok string) (time.Time, string, error) {
	b, err := base64.RawURLEncoding.DecodeString(tok)
	if err != nil {
		return time.Time{}, "", fmt.Errorf("%w: not base64", ErrBadPageToken)
	}
	ts, id, ok := strings.Cut(string(b), "|")
	at, err := time.Parse(time.RFC3339Nano, ts)
	if !ok || err != nil || uuid.Validate(id) != nil {
		return time.Time{}, "", ErrBadPageToken
	}
	return at, id, nil
}
