// Package post is the post service (social/post), Social Pulse: users
// publish posts (a product review names an eCommerce SKU), follow one
// another and read their feeds.
//
// PublishPost stores a post and writes its post.published event to the
// outbox in one transaction; the service's own key-based consumer fans the
// event out (fan_out_post.go): one feed row for the author and one for each
// follower, exactly once per event, the first fanOutChunk followers by one
// statement per event and those of an author with more a chunk per
// transaction beside the consumer (continue_fan_outs.go).
// GetFeed reads the caller's feed, newest first, by cursor; FollowUser and
// UnfollowUser keep who follows whom. The SKUs a post may review come from
// the inventory service's inventory.priced events (keep_catalog.go), never
// from a call to it.
//
// Visibility: a post reaches its author's feed and the feeds of the users
// following its author when its event is applied (those of an author with
// more than fanOutChunk followers a moment later, a chunk at a time, so
// one follower may see an author's next post before the last one, below
// it in the feed, which is ordered by publication), whatever its visibility;
// nobody else's, and a new follower does not get earlier posts. A PUBLIC
// post stays in the feeds it reached; a FOLLOWERS post shows only to its
// author and to readers who follow the author when they read (GetFeed), so
// unfollowing hides it at once and following again shows it again.
//
// How fast: each user publishes, follows and unfollows at most as Limits
// allow (token buckets per user, limits.go); past them, the call is
// refused with ErrTooManyPosts or ErrTooManyFollows and a wait
// (ResourceExhausted with Retry-After at the edge), and nothing is written.
//
// What it keeps (docs/governance.md, Retention): every post (author, body,
// hashtags, SKU, visibility), the feed rows it reached, who follows whom
// and the catalog's SKUs, for as long as the database is kept; a fan_outs
// row only until its fan-out is done. No retention is set and there is no
// way yet to delete a post: both are the Social Pulse team's decisions
// still to take.
//
// Each use case has its file: publish_post.go, fan_out_post.go,
// continue_fan_outs.go, get_feed.go, follow_user.go, unfollow_user.go, keep_catalog.go;
// limits.go bounds how fast a user acts; handler.go maps them onto the Connect API and domain errors onto Connect
// codes.
package post

import (
	"context"
	"errors"

	"github.com/shopbus/shopbus/internal/messaging"
	"github.com/shopbus/shopbus/internal/servicekit"
)

// Errors of the post service's use cases.
var (
	// ErrUnknownSKU means a post names a product SKU that the catalog does
	// not know: no inventory.priced event has named it (yet).
	ErrUnknownSKU = errors.New("unknown product SKU")
	// ErrIdempotencyKeyReused means a PublishPost retry carried a known
	// idempotency key with a different request.
	ErrIdempotencyKeyReused = errors.New("idempotency key already used for a different post")
	// ErrFollowSelf means a user asked to follow itself.
	ErrFollowSelf = errors.New("user_id: a user cannot follow itself")
	// ErrBadPageToken means a page token was not one this service issued.
	ErrBadPageToken = errors.New("invalid page token")
)

// Service is the post service. Its Runtime holds its pools, its
// JetStream and the event path's settings (servicekit).
type Service struct {
	servicekit.Runtime

	limits     limiters      // each user's PublishPost and follow buckets
	fanOutWake chan struct{} // wakeFanOuts, to fanOutTask
}

// New returns the post service on rt (named "post", its schema migrated
// with services.Migrations("post") and messaging.Migrations), with
// DefaultLimits.
func New(rt servicekit.Runtime) *Service {
	return &Service{Runtime: rt, limits: newLimiters(DefaultLimits), fanOutWake: make(chan struct{}, 1)}
}

// SetLimits replaces the service's limits (zero fields take
// DefaultLimits'), forgetting the users' buckets. Call it before serving.
func (s *Service) SetLimits(l Limits) error {
	l = l.WithDefaults()
	if err := l.Validate(); err != nil {
		return err
	}
	s.limits = newLimiters(l)
	return nil
}

// Run relays the outbox, fans posts out to feeds (continuing the fan-outs
// of authors with many followers beside the consumer) and keeps the
// catalog's SKUs until ctx is done.
func (s *Service) Run(ctx context.Context) error {
	return s.Runtime.Run(ctx, []messaging.Subscription{{Config: FanOutConsumer(), Handler: s.FanOutPosts},
		{Config: CatalogConsumer(), Handler: s.KeepCatalog}}, s.fanOutTask)
}
