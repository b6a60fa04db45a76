package post

import (
	"bytes"
	"context"
	"fmt"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"google.golang.org/protobuf/types/known/timestamppb"

	postv1 "github.com/shopbus/shopbus/gen/go/shopbus/post/v1"
	posteventsv1 "github.com/shopbus/shopbus/gen/go/social/post/v1"
	"github.com/shopbus/shopbus/internal/messaging"
	"github.com/shopbus/shopbus/internal/servicekit"
)

// PublishPost publishes req's post as author (a canonical UUID: the
// caller, never the request): the post and its post.published event's
// outbox row in one transaction. A retry (the author's idempotency key
// again, with the same request) returns the post published then, with
// replayed true, and writes nothing; the key with another request is
// ErrIdempotencyKeyReused. A product SKU the catalog does not know is
// ErrUnknownSKU, and nothing is written. req must be valid (the Connect
// handler's validation interceptor sees to it).
//
// Each author is held to the service's Limits: past its post rate,
// PublishPost fails with ErrTooManyPosts in a servicekit.RateLimitedError
// (when to retry) and writes nothing. The token is taken before the
// idempotency key is looked up, the order the order service's CreateOrder
// takes its token and its key in: telling a retry needs the database, which
// the limit is there to spare, so a retry counts against the limit, and a
// retry refused for it returns the post once retried after the wait.
func (s *Service) PublishPost(ctx context.Context, author string, req *postv1.PublishPostRequest) (p *postv1.Post, replayed bool, err error) {
	if err := s.limits.posts.allow(author, time.Now()); err != nil {
		return nil, false, err
	}
	hash, err := servicekit.RequestHash(req)
	if err != nil {
		return nil, false, err
	}
	id, err := uuid.NewV7()
	if err != nil {
		return nil, false, fmt.Errorf("publish post: %w", err)
	}
	p = &postv1.Post{
		PostId: id.String(), AuthorId: author, Body: req.GetBody(), Hashtags: req.GetHashtags(),
		ProductSku: req.GetProductSku(), Visibility: req.GetVisibility(),
		PublishedAt: timestamppb.New(time.Now().UTC().Truncate(time.Microsecond)), // PostgreSQL's precision
	}
	// The event first: a body its contract refuses (a NUL character,
	// which PostgreSQL's text cannot store either) is the caller's error,
	// before anything is written.
	env, err := s.NewEvent(ctx, postPublished(p))
	if err != nil {
		return nil, false, fmt.Errorf("publish post: post.published: %w", err)
	}
	err = messaging.InTx(ctx, s.Pool, func(tx pgx.Tx) error {
		if sku := req.GetProductSku(); sku != "" {
			var known bool
			if err := tx.QueryRow(ctx, `SELECT EXISTS (SELECT FROM products WHERE sku = $1)`, sku).Scan(&known); err != nil {
				return fmt.Errorf("look up SKU %s: %w", sku, err)
			}
			if !known {
				return fmt.Errorf("%w: product_sku %s is not in the catalog (no inventory.priced event has named it)", ErrUnknownSKU, sku)
			}
		}
		tag, err := tx.Exec(ctx, `INSERT INTO posts (post_id, author_id, body, hashtags, product_sku, visibility, published_at, idempotency_key, request_hash)
			VALUES ($1, $2, $3, COALESCE($4::text[], '{}'), $5, $6, $7, $8, $9) ON CONFLICT (author_id, idempotency_key) DO NOTHING`,
			p.GetPostId(), author, p.GetBody(), p.GetHashtags(), p.GetProductSku(), visibilityName(p.GetVisibility()),
			p.GetPublishedAt().AsTime(), req.GetIdempotencyKey(), hash)
		if err != nil {
			return fmt.Errorf("insert post: %w", err)
		}
		if tag.RowsAffected() == 0 { // a retry, or a reused key
			replayed = true
			p, err = s.replay(ctx, tx, author, req.GetIdempotencyKey(), hash)
			return err
		}
		return messaging.Enqueue(ctx, tx, env)
	})
	if err != nil {
		return nil, false, fmt.Errorf("publish post: %w", err)
	}
	return p, replayed, nil
}

// replay returns the post author published with key, when its request's
// hash is hash; ErrIdempotencyKeyReused otherwise.
func (s *Service) replay(ctx context.Context, tx pgx.Tx, author, key string, hash []byte) (*postv1.Post, error) {
	var stored []byte
	p, err := scanPost(tx.QueryRow(ctx, `SELECT `+postColumns+`, p.request_hash FROM posts p WHERE p.author_id = $1 AND p.idempotency_key = $2`,
		author, key), &stored)
	if err != nil {
		return nil, fmt.Errorf("replay post: %w", err)
	}
	if !bytes.Equal(stored, hash) {
		return nil, fmt.Errorf("%w: %s", ErrIdempotencyKeyReused, key)
	}
	return p, nil
}

// postColumns are the columns scanPost reads, of the posts table (p).
const postColumns = `p.post_id::text, p.author_id::text, p.body, p.hashtags, p.product_sku, p.visibility, p.published_at`

// scanPost scans postColumns, then more into dest.
func scanPost(row pgx.Row, more ...any) (*postv1.Post, error) {
	p := &postv1.Post{}
	var visibility string
	var at time.Time
	if err := row.Scan(append([]any{&p.PostId, &p.AuthorId, &p.Body, &p.Hashtags, &p.ProductSku, &visibility, &at}, more...)...); err != nil {
		return nil, err
	}
	p.Visibility, p.PublishedAt = visibilityOf(visibility), timestamppb.New(at)
	return p, nil
}

// postPublished is p's post.published event.
func postPublished(p *postv1.Post) *posteventsv1.PostPublished {
	return &posteventsv1.PostPublished{
		PostId: p.GetPostId(), AuthorId: p.GetAuthorId(), Body: p.GetBody(), Hashtags: p.GetHashtags(),
		ProductSku: p.GetProductSku(), Visibility: eventVisibility(visibilityName(p.GetVisibility())), PublishedAt: p.GetPublishedAt(),
	}
}
