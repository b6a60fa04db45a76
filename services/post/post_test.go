package post_test

import (
	"context"
	"encoding/base64"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"connectrpc.com/connect"
	"github.com/google/uuid"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"google.golang.org/protobuf/types/known/timestamppb"

	inventoryeventsv1 "github.com/shopbus/shopbus/gen/go/ecommerce/inventory/v1"
	postv1 "github.com/shopbus/shopbus/gen/go/shopbus/post/v1"
	posteventsv1 "github.com/shopbus/shopbus/gen/go/social/post/v1"
	"github.com/shopbus/shopbus/internal/auth"
	"github.com/shopbus/shopbus/internal/event"
	"github.com/shopbus/shopbus/internal/testenv"
	"github.com/shopbus/shopbus/services/post"
)

// fixture is the post service running (its outbox relay and consumers) on
// a real embedded NATS and a schema of its own, called through its Connect
// handler as the users the test names.
type fixture struct {
	pool *pgxpool.Pool
	js   jetstream.JetStream
	svc  *post.Service
	h    *post.Handler
}

func newFixture(t *testing.T) *fixture {
	t.Helper()
	rt := testenv.Runtime(t, "post")
	svc := post.New(rt)
	testenv.Run(t, svc)
	return &fixture{pool: rt.Pool, js: rt.JS, svc: svc, h: post.NewHandler(svc)}
}

// as is a context of the authenticated caller p.
func as(p auth.Principal) context.Context {
	return auth.WithPrincipal(context.Background(), p)
}

// user is a new user's context and id.
func user() (context.Context, string) {
	id := uuid.NewString()
	return as(auth.Principal{Subject: id}), id
}

func (f *fixture) publish(t *testing.T, ctx context.Context, body string, vis postv1.Visibility) *postv1.Post {
	t.Helper()
	res, err := f.h.PublishPost(ctx, connect.NewRequest(&postv1.PublishPostRequest{
		IdempotencyKey: uuid.NewString(), Body: body, Hashtags: []string{"test"}, Visibility: vis,
	}))
	if err != nil {
		t.Fatalf("PublishPost %q: %v", body, err)
	}
	return res.Msg.GetPost()
}

func (f *fixture) follow(t *testing.T, ctx context.Context, id string) {
	t.Helper()
	if _, err := f.h.FollowUser(ctx, connect.NewRequest(&postv1.FollowUserRequest{UserId: id})); err != nil {
		t.Fatal(err)
	}
}

// feed is the bodies of the caller's whole feed, newest first, read a page
// of size at a time.
func (f *fixture) feed(t *testing.T, ctx context.Context, size uint32) []string {
	t.Helper()
	var bodies []string
	tok := ""
	for range 100 {
		res, err := f.h.GetFeed(ctx, connect.NewRequest(&postv1.GetFeedRequest{PageSize: size, PageToken: tok}))
		if err != nil {
			t.Fatal(err)
		}
		if size > 0 && len(res.Msg.GetPosts()) > int(size) {
			t.Fatalf("a page of %d posts, asked for %d", len(res.Msg.GetPosts()), size)
		}
		for _, p := range res.Msg.GetPosts() {
			bodies = append(bodies, p.GetBody())
		}
		if tok = res.Msg.GetNextPageToken(); tok == "" {
			return bodies
		}
	}
	t.Fatal("the feed does not end")
	return nil
}

// awaitFeed waits until the caller's feed is want.
func (f *fixture) awaitFeed(t *testing.T, ctx context.Context, want ...string) {
	t.Helper()
	testenv.CheckFor(t, 30*time.Second, 20*time.Millisecond, func() error {
		if got := f.feed(t, ctx, 0); !slices.Equal(got, want) {
			return fmt.Errorf("feed %q, want %q", got, want)
		}
		return nil
	})
}

func (f *fixture) count(t *testing.T, sql string) int64 {
	t.Helper()
	return testenv.Scalar(t, f.pool, sql)
}

// TestFeedFanOut: a post reaches its author's feed and its followers',
// never a non-follower's; a FOLLOWERS post shows only while the reader
// follows the author, a PUBLIC one stays; a new follower gets no earlier
// posts.
func TestFeedFanOut(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	author, authorID := user()
	follower, _ := user()
	stranger, _ := user()
	f.follow(t, follower, authorID)

	f.publish(t, author, "public", postv1.Visibility_VISIBILITY_PUBLIC)
	f.publish(t, author, "followers only", postv1.Visibility_VISIBILITY_FOLLOWERS)
	f.awaitFeed(t, follower, "followers only", "public")
	// The stranger's feed was written (or not) in the same transaction as
	// the follower's.
	f.awaitFeed(t, author, "followers only", "public")
	if got := f.feed(t, stranger, 0); len(got) != 0 {
		t.Errorf("a non-follower's feed: %q, want nothing", got)
	}
	if n := f.count(t, `SELECT count(*) FROM feed_entries`); n != 4 {
		t.Errorf("%d feed rows, want 4: two posts, each for its author and the one follower", n)
	}

	// Unfollowing hides the followers-only post at once; the public one stays.
	if res, err := f.h.UnfollowUser(follower, connect.NewRequest(&postv1.UnfollowUserRequest{UserId: authorID})); err != nil || !res.Msg.GetWasFollowing() {
		t.Fatalf("UnfollowUser: %v %v", res, err)
	}
	f.awaitFeed(t, follower, "public")
	f.publish(t, author, "after unfollow", postv1.Visibility_VISIBILITY_PUBLIC)
	f.awaitFeed(t, author, "after unfollow", "followers only", "public")
	f.awaitFeed(t, follower, "public")

	// Following again shows the followers-only post again, and not the
	// post published meanwhile; the stranger, following now, gets no
	// earlier post.
	f.follow(t, follower, authorID)
	f.follow(t, stranger, authorID)
	f.awaitFeed(t, follower, "followers only", "public")
	f.publish(t, author, "latest", postv1.Visibility_VISIBILITY_FOLLOWERS)
	f.awaitFeed(t, follower, "latest", "followers only", "public")
	f.awaitFeed(t, stranger, "latest")
}

// TestFanOutToManyFollowers: a post by an author with more followers than
// one statement writes (the consumer writes the first chunk, the fan-out
// task the rest, a chunk per transaction) reaches every follower's feed
// once, the last follower's included, and leaves no fan-out behind; a
// second post reaches them all too.
func TestFanOutToManyFollowers(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	author, authorID := user()
	const followers = 2500 // two chunks and a half
	if _, err := f.pool.Exec(context.Background(), `INSERT INTO follows (follower_id, followee_id)
		SELECT gen_random_uuid(), $1 FROM generate_series(1, $2)`, authorID, followers); err != nil {
		t.Fatal(err)
	}
	var last string
	if err := f.pool.QueryRow(context.Background(), `SELECT follower_id::text FROM follows WHERE followee_id = $1 ORDER BY follower_id DESC LIMIT 1`,
		authorID).Scan(&last); err != nil {
		t.Fatal(err)
	}
	for i, body := range []string{"to the many", "again"} {
		f.publish(t, author, body, postv1.Visibility_VISIBILITY_PUBLIC)
		testenv.CheckFor(t, 30*time.Second, 20*time.Millisecond, func() error {
			got := f.count(t, `SELECT count(*) FROM feed_entries`)
			if want := int64((i + 1) * (followers + 1)); got != want {
				return fmt.Errorf("%d feed rows, want %d", got, want)
			}
			if n := f.count(t, `SELECT count(*) FROM fan_outs`); n != 0 {
				return fmt.Errorf("%d fan-outs left", n)
			}
			return nil
		})
	}
	f.awaitFeed(t, as(auth.Principal{Subject: last}), "again", "to the many")
	if n := f.count(t, `SELECT count(*) FROM (SELECT reader_id FROM feed_entries GROUP BY reader_id HAVING count(*) <> 2) x`); n != 0 {
		t.Errorf("%d readers without exactly the two posts", n)
	}
}

// TestFeedPages: a feed is read newest first, a bounded page at a time,
// each post once; a page token that is not one is InvalidArgument.
func TestFeedPages(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	author, authorID := user()
	reader, _ := user()
	f.follow(t, reader, authorID)
	var want []string
	for i := range 7 {
		body := fmt.Sprintf("post %d", i)
		f.publish(t, author, body, postv1.Visibility_VISIBILITY_PUBLIC)
		want = append([]string{body}, want...)
	}
	f.awaitFeed(t, reader, want...)
	for _, size := range []uint32{1, 2, 3, 7, 100} {
		if got := f.feed(t, reader, size); !slices.Equal(got, want) {
			t.Errorf("pages of %d: %q, want %q", size, got, want)
		}
	}
	// The last is a time and a UUID in the "urn:uuid:" form, which
	// PostgreSQL's uuid type refuses.
	urn := base64.RawURLEncoding.EncodeToString([]byte("2020-01-01T00:00:00Z|urn:uuid:" + uuid.NewString()))
	for _, tok := range []string{"garbage!", "bm90IGEgdG9rZW4", urn} {
		_, err := f.h.GetFeed(reader, connect.NewRequest(&postv1.GetFeedRequest{PageToken: tok}))
		if connect.CodeOf(err) != connect.CodeInvalidArgument || !strings.Contains(err.Error(), "invalid page token") {
			t.Errorf("page token %q: %v, want invalid_argument", tok, err)
		}
	}
}

// TestDuplicateEventOneEffect: the same post.published delivered again
// (the same envelope under another Nats-Msg-Id, past JetStream's
// deduplication) and re-published as a new event (another envelope, the
// same post) leave one feed row per reader.
func TestDuplicateEventOneEffect(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	authorID := uuid.NewString()
	followers := []string{uuid.NewString(), uuid.NewString(), uuid.NewString()}
	for _, id := range followers {
		f.follow(t, as(auth.Principal{Subject: id}), authorID)
	}
	e := &posteventsv1.PostPublished{
		PostId: uuid.NewString(), AuthorId: authorID, Body: "once", Visibility: posteventsv1.Visibility_VISIBILITY_FOLLOWERS,
		PublishedAt: timestamppb.Now(),
	}
	env, err := event.New(context.Background(), e, event.WithSource("shopbus/post"))
	if err != nil {
		t.Fatal(err)
	}
	b, err := event.Encode(env)
	if err != nil {
		t.Fatal(err)
	}
	spec, err := event.SpecOf(e)
	if err != nil {
		t.Fatal(err)
	}
	var seqs []uint64
	for _, msgID := range []string{env.GetId(), env.GetId() + "-again"} {
		ack, err := f.js.PublishMsg(context.Background(), &nats.Msg{Subject: spec.SubjectFor(authorID), Data: b, Header: event.Headers(env)},
			jetstream.WithMsgID(msgID))
		if err != nil || ack.Duplicate {
			t.Fatalf("publish %s: %v %v", msgID, ack, err)
		}
		seqs = append(seqs, ack.Sequence)
	}
	seqs = append(seqs, testenv.Publish(t, f.js, e))
	cfg := post.FanOutConsumer()
	testenv.WaitSettled(t, f.js, cfg.Stream, cfg.Durable, seqs...)
	if n := f.count(t, `SELECT count(*) FROM feed_entries`); n != int64(len(followers)+1) {
		t.Errorf("%d feed rows, want %d: one per follower and the author's", n, len(followers)+1)
	}
	if n := f.count(t, `SELECT count(*) FROM posts`); n != 1 {
		t.Errorf("%d posts, want 1", n)
	}
	if n := f.count(t, `SELECT count(*) FROM processed_events WHERE consumer = 'post-fan-out'`); n != 2 {
		t.Errorf("%d events handled, want 2: the envelope once, its re-publication once", n)
	}
	for _, id := range followers {
		if got := f.feed(t, as(auth.Principal{Subject: id}), 0); !slices.Equal(got, []string{"once"}) {
			t.Errorf("follower %s: feed %q", id, got)
		}
	}
}

// TestProductReview: a post may name a SKU once an inventory.priced event
// has named it; before, it is FailedPrecondition naming the SKU, and
// nothing is written.
func TestProductReview(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	author, _ := user()
	req := &postv1.PublishPostRequest{IdempotencyKey: "review-0001", Body: "great mug", ProductSku: "MUG-001",
		Hashtags: []string{"mugs"}, Visibility: postv1.Visibility_VISIBILITY_PUBLIC}
	_, err := f.h.PublishPost(author, connect.NewRequest(req))
	if connect.CodeOf(err) != connect.CodeFailedPrecondition || !strings.Contains(err.Error(), "MUG-001") {
		t.Fatalf("a review of an unknown SKU: %v, want failed_precondition naming MUG-001", err)
	}
	if n := f.count(t, `SELECT (SELECT count(*) FROM posts) + (SELECT count(*) FROM outbox)`); n != 0 {
		t.Fatalf("%d rows written for a refused post", n)
	}

	testenv.Publish(t, f.js, &inventoryeventsv1.InventoryPriced{Sku: "MUG-001", Revision: 1, PricedAt: timestamppb.Now(),
		UnitPrice: &inventoryeventsv1.Money{Currency: "EUR", AmountMinor: 1250}})
	// Wait for the catalog to know the SKU, then publish: polling
	// PublishPost would run into the author's rate limit (limits.go).
	testenv.CheckFor(t, 30*time.Second, 20*time.Millisecond, func() error {
		if n := f.count(t, `SELECT count(*) FROM products WHERE sku = 'MUG-001'`); n != 1 {
			return fmt.Errorf("the catalog knows %d MUG-001", n)
		}
		return nil
	})
	res, err := f.h.PublishPost(author, connect.NewRequest(req))
	if err != nil {
		t.Fatalf("a review of a known SKU: %v", err)
	}
	p := res.Msg.GetPost()
	if p.GetProductSku() != "MUG-001" {
		t.Errorf("the review %v does not name MUG-001", p)
	}
	// The event carries the SKU.
	env := f.outbox(t)
	if got := env.GetProductSku(); got != "MUG-001" || env.GetPostId() != p.GetPostId() {
		t.Errorf("post.published %v, want post %s of MUG-001", env, p.GetPostId())
	}
	// Another SKU is still unknown.
	req.IdempotencyKey, req.ProductSku = "review-0002", "TEE-BLK-M"
	if _, err := f.h.PublishPost(author, connect.NewRequest(req)); connect.CodeOf(err) != connect.CodeFailedPrecondition {
		t.Errorf("a review of another SKU: %v, want failed_precondition", err)
	}
	if n := f.count(t, `SELECT count(*) FROM posts`); n != 1 {
		t.Errorf("%d posts, want 1", n)
	}
}

// TestPublishPostRefusesNUL: a body with a NUL character, which the
// request's rules let through and the event's contract and PostgreSQL's
// text refuse, is InvalidArgument naming it, and nothing is written.
func TestPublishPostRefusesNUL(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	author, _ := user()
	_, err := f.h.PublishPost(author, connect.NewRequest(&postv1.PublishPostRequest{IdempotencyKey: "nul-0001",
		Body: "hello\x00world", Visibility: postv1.Visibility_VISIBILITY_PUBLIC}))
	if connect.CodeOf(err) != connect.CodeInvalidArgument || !strings.Contains(err.Error(), "NUL") {
		t.Errorf("a NUL in a post's body: %v, want invalid_argument naming the NUL", err)
	}
	if n := f.count(t, `SELECT (SELECT count(*) FROM posts) + (SELECT count(*) FROM outbox)`); n != 0 {
		t.Errorf("%d rows written for a refused post", n)
	}
}

// outbox decodes the one post.published in the outbox.
func (f *fixture) outbox(t *testing.T) *posteventsv1.PostPublished {
	t.Helper()
	var b []byte
	if err := f.pool.QueryRow(context.Background(), `SELECT envelope FROM outbox`).Scan(&b); err != nil {
		t.Fatal(err)
	}
	env, err := event.Decode(b)
	if err != nil {
		t.Fatal(err)
	}
	msg, _, err := event.Open(env)
	if err != nil {
		t.Fatal(err)
	}
	return msg.(*posteventsv1.PostPublished)
}

// TestPublishPostIdempotent: a retry returns the same post and writes
// nothing; the key with another request is AlreadyExists, and writes
// nothing; the author is the caller.
func TestPublishPostIdempotent(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	author, authorID := user()
	req := &postv1.PublishPostRequest{IdempotencyKey: "post-0001", Body: "hello", Visibility: postv1.Visibility_VISIBILITY_PUBLIC}
	first, err := f.h.PublishPost(author, connect.NewRequest(req))
	if err != nil {
		t.Fatal(err)
	}
	if p := first.Msg.GetPost(); p.GetAuthorId() != authorID || first.Msg.GetReplayed() {
		t.Errorf("PublishPost: %v, want a new post by %s", first.Msg, authorID)
	}
	again, err := f.h.PublishPost(author, connect.NewRequest(req))
	if err != nil || !again.Msg.GetReplayed() || again.Msg.GetPost().GetPostId() != first.Msg.GetPost().GetPostId() ||
		!again.Msg.GetPost().GetPublishedAt().AsTime().Equal(first.Msg.GetPost().GetPublishedAt().AsTime()) {
		t.Errorf("a retry: %v %v, want post %v replayed", again, err, first.Msg.GetPost())
	}
	req.Body = "something else"
	if _, err := f.h.PublishPost(author, connect.NewRequest(req)); connect.CodeOf(err) != connect.CodeAlreadyExists {
		t.Errorf("the key reused: %v, want already_exists", err)
	}
	// Another author's key space is its own.
	other, _ := user()
	if res, err := f.h.PublishPost(other, connect.NewRequest(req)); err != nil || res.Msg.GetReplayed() {
		t.Errorf("another author's post-0001: %v %v", res, err)
	}
	if n := f.count(t, `SELECT count(*) FROM outbox`); n != 2 {
		t.Errorf("%d events, want 2", n)
	}
}

// TestFollows: following is idempotent and never of oneself; unfollowing
// someone not followed changes nothing; only users act, as themselves.
func TestFollows(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	me, myID := user()
	other := uuid.NewString()
	for i, want := range []bool{false, true} {
		res, err := f.h.FollowUser(me, connect.NewRequest(&postv1.FollowUserRequest{UserId: strings.ToUpper(other)}))
		if err != nil || res.Msg.GetAlreadyFollowing() != want {
			t.Errorf("follow #%d: %v %v, want already_following %v", i+1, res, err, want)
		}
	}
	_, err := f.h.FollowUser(me, connect.NewRequest(&postv1.FollowUserRequest{UserId: myID}))
	if connect.CodeOf(err) != connect.CodeInvalidArgument || !strings.Contains(err.Error(), "user_id") {
		t.Errorf("following oneself: %v, want invalid_argument naming user_id", err)
	}
	for i, want := range []bool{true, false} {
		res, err := f.h.UnfollowUser(me, connect.NewRequest(&postv1.UnfollowUserRequest{UserId: other}))
		if err != nil || res.Msg.GetWasFollowing() != want {
			t.Errorf("unfollow #%d: %v %v, want was_following %v", i+1, res, err, want)
		}
	}
	if n := f.count(t, `SELECT count(*) FROM follows`); n != 0 {
		t.Errorf("%d follows left", n)
	}

	follow := connect.NewRequest(&postv1.FollowUserRequest{UserId: other})
	if _, err := f.h.FollowUser(as(auth.Principal{Subject: "ops", Admin: true}), follow); connect.CodeOf(err) != connect.CodePermissionDenied {
		t.Errorf("an operator's token: %v, want permission_denied", err)
	}
	if _, err := f.h.FollowUser(context.Background(), follow); connect.CodeOf(err) != connect.CodeUnauthenticated {
		t.Errorf("no caller: %v, want unauthenticated", err)
	}
	if _, err := f.h.GetFeed(context.Background(), connect.NewRequest(&postv1.GetFeedRequest{})); connect.CodeOf(err) != connect.CodeUnauthenticated {
		t.Errorf("no caller: %v, want unauthenticated", err)
	}
}
