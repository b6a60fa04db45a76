package post

import (
	"context"
	"fmt"

	"github.com/jackc/pgx/v5"

	posteventsv1 "github.com/shopbus/shopbus/gen/go/social/post/v1"
	"github.com/shopbus/shopbus/internal/messaging"
)

// FanOutConsumer is the consumer that fans post.published out to feeds,
// keyed by author: an author's posts reach the feeds in the order they were
// published.
func FanOutConsumer() messaging.ConsumerConfig {
	return messaging.KeyBasedConsumer("post-fan-out", "social.post.published")
}

// fanOutChunk is how many followers' feed rows one statement writes: a
// post.published event's first ones in the consumer's transaction, the
// rest a chunk per transaction of the fan-out task (continue_fan_outs.go).
const fanOutChunk = 1000

// FanOutPosts writes a batch of post.published events (one partition's, in
// stream order) to the feeds, in one transaction, each event once
// (OnceBatchAll): a redelivered or re-published event writes nothing more.
// For each event, one statement writes its feed rows: one for its author
// and one for each of the first fanOutChunk users who follow the author
// now, in follower_id order, and when there may be more, a fan_outs row
// for the fan-out task to write the rest; another stores the post from the
// event, which changes nothing when PublishPost stored it. Both go to
// PostgreSQL in one round trip for the batch. An event of another type is
// dead-lettered alone.
func (s *Service) FanOutPosts(ctx context.Context, batch []*messaging.Delivery) error {
	defer s.wakeFanOuts()
	return messaging.OnceBatchAll(ctx, s.Events(), FanOutConsumer().Durable, batch, func(ctx context.Context, tx pgx.Tx, fresh []*messaging.Delivery) (err error) {
		b := &pgx.Batch{}
		for _, d := range fresh {
			_, end := messaging.EventContext(ctx, d) // each event's span, in its trace
			defer func() { end(err) }()
			e, ok := d.Event.(*posteventsv1.PostPublished)
			if !ok {
				return s.UnexpectedEvent(d)
			}
			b.Queue(`INSERT INTO posts (post_id, author_id, body, hashtags, product_sku, visibility, published_at)
				VALUES ($1, $2, $3, COALESCE($4::text[], '{}'), $5, $6, $7) ON CONFLICT (post_id) DO NOTHING`,
				e.GetPostId(), e.GetAuthorId(), e.GetBody(), e.GetHashtags(), e.GetProductSku(), visibilityName(e.GetVisibility()),
				e.GetPublishedAt().AsTime())
			b.Queue(`WITH chunk AS (
					SELECT follower_id FROM follows WHERE followee_id = $2::uuid ORDER BY follower_id LIMIT $4
				), feeds AS (
					INSERT INTO feed_entries (reader_id, post_id, published_at)
					SELECT follower_id, $1::uuid, $3::timestamptz FROM chunk
					UNION ALL SELECT $2::uuid, $1::uuid, $3::timestamptz
					ON CONFLICT DO NOTHING
				)
				INSERT INTO fan_outs (post_id, author_id, published_at, after_follower)
				SELECT $1::uuid, $2::uuid, $3::timestamptz, (SELECT follower_id FROM chunk ORDER BY follower_id DESC LIMIT 1)
				WHERE (SELECT count(*) FROM chunk) = $4
				ON CONFLICT (post_id) DO NOTHING`, e.GetPostId(), e.GetAuthorId(), e.GetPublishedAt().AsTime(), fanOutChunk)
		}
		if err := tx.SendBatch(ctx, b).Close(); err != nil {
			return fmt.Errorf("fan out %d posts: %w", len(fresh), err)
		}
		return nil
	})
}
