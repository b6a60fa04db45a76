package post

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/shopbus/shopbus/internal/messaging"
)

// fanOutPoll is how often the fan-out task looks for fan-outs to continue
// when nothing wakes it: those another instance's consumer left.
const fanOutPoll = time.Second

// continueFanOuts writes the rest of the fan-outs FanOutPosts left in
// fan_outs (posts whose authors have more than fanOutChunk followers), a
// chunk of followers per transaction, oldest fan-out first, until none is
// left or ctx is done. Instances share the work: each chunk locks its
// fan-out (FOR UPDATE SKIP LOCKED). A chunk written twice (a crash before
// its commit) writes nothing more: the feed rows are keyed by reader and
// post.
func (s *Service) continueFanOuts(ctx context.Context) error {
	for ctx.Err() == nil {
		wrote, err := s.continueFanOut(ctx)
		if err != nil || !wrote {
			return err
		}
	}
	return ctx.Err()
}

// continueFanOut writes the next chunk of the oldest fan-out no other
// transaction holds, and moves the fan-out on past it, or deletes it when
// the chunk was the last; false when there was none to continue.
func (s *Service) continueFanOut(ctx context.Context) (wrote bool, err error) {
	err = messaging.InTx(ctx, s.Events(), func(tx pgx.Tx) error {
		var post, author, after string
		var at time.Time
		err := tx.QueryRow(ctx, `SELECT post_id::text, author_id::text, published_at, after_follower::text FROM fan_outs
			ORDER BY queued_at, post_id LIMIT 1 FOR UPDATE SKIP LOCKED`).Scan(&post, &author, &at, &after)
		if errors.Is(err, pgx.ErrNoRows) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("next fan-out: %w", err)
		}
		if _, err := tx.Exec(ctx, `WITH chunk AS (
				SELECT follower_id FROM follows WHERE followee_id = $2 AND follower_id > $4 ORDER BY follower_id LIMIT $5
			), feeds AS (
				INSERT INTO feed_entries (reader_id, post_id, published_at)
				SELECT follower_id, $1, $3 FROM chunk ON CONFLICT DO NOTHING
			), moved AS (
				UPDATE fan_outs SET after_follower = (SELECT follower_id FROM chunk ORDER BY follower_id DESC LIMIT 1)
				WHERE post_id = $1 AND (SELECT count(*) FROM chunk) = $5
			)
			DELETE FROM fan_outs WHERE post_id = $1 AND (SELECT count(*) FROM chunk) < $5`, post, author, at, after, fanOutChunk); err != nil {
			return fmt.Errorf("fan out post %s after follower %s: %w", post, after, err)
		}
		wrote = true
		return nil
	})
	return wrote, err
}

// wakeFanOuts tells the fan-out task there may be fan-outs to continue.
func (s *Service) wakeFanOuts() {
	select {
	case s.fanOutWake <- struct{}{}:
	default: // a wake is pending already
	}
}

// fanOutTask continues fan-outs (continueFanOuts) whenever FanOutPosts
// wakes it, and every fanOutPoll, until ctx is done.
func (s *Service) fanOutTask(ctx context.Context) {
	poll := time.NewTicker(fanOutPoll)
	defer poll.Stop()
	for {
		if err := s.continueFanOuts(ctx); err != nil && ctx.Err() == nil {
			s.Log.Warn("cannot continue fan-outs", "err", err)
		}
		select {
		case <-ctx.Done():
			return
		case <-s.fanOutWake:
		case <-poll.C:
		}
	}
}
