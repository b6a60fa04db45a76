package post_test

import (
	"context"
	"errors"
	"math"
	"strconv"
	"strings"
	"testing"

	"connectrpc.com/connect"
	"github.com/google/uuid"

	postv1 "github.com/shopbus/shopbus/gen/go/shopbus/post/v1"
	"github.com/shopbus/shopbus/internal/auth"
	"github.com/shopbus/shopbus/internal/servicekit"
	"github.com/shopbus/shopbus/services/post"
)

// TestRateLimits: with bursts of 2 (and rates too slow to add a token
// during the test), a user's third PublishPost in a row is
// RESOURCE_EXHAUSTED with a positive Retry-After, and writes no post and
// no outbox row; so is a retry of an accepted post past the limit (the
// token is taken before the idempotency key is looked up, as CreateOrder
// does); FollowUser and UnfollowUser share a bucket of their own, and a
// refused follow writes no row; another user is not affected; a user with
// the admin role is held too.
func TestRateLimits(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	if err := f.svc.SetLimits(post.Limits{PostsPerSecond: 0.001, PostBurst: 2, FollowsPerSecond: 0.001, FollowBurst: 2}); err != nil {
		t.Fatal(err)
	}
	me, _ := user()
	first := &postv1.PublishPostRequest{IdempotencyKey: "post-1", Body: "one", Visibility: postv1.Visibility_VISIBILITY_PUBLIC}
	publish := func(ctx context.Context, req *postv1.PublishPostRequest) error {
		_, err := f.h.PublishPost(ctx, connect.NewRequest(req))
		return err
	}
	if err := publish(me, first); err != nil {
		t.Fatal(err)
	}
	if err := publish(me, &postv1.PublishPostRequest{IdempotencyKey: "post-2", Body: "two", Visibility: postv1.Visibility_VISIBILITY_PUBLIC}); err != nil {
		t.Fatal(err)
	}
	err := publish(me, &postv1.PublishPostRequest{IdempotencyKey: "post-3", Body: "three", Visibility: postv1.Visibility_VISIBILITY_PUBLIC})
	wantRetryAfter(t, "the third post", err, post.ErrTooManyPosts)
	wantRetryAfter(t, "a retry of the first post past the limit", publish(me, first), post.ErrTooManyPosts)
	if p, o := f.count(t, `SELECT count(*) FROM posts`), f.count(t, `SELECT count(*) FROM outbox`); p != 2 || o != 2 {
		t.Errorf("%d posts and %d outbox rows, want the 2 accepted", p, o)
	}

	// Follows have their own bucket: the posts' is empty, this one full.
	follow := func(ctx context.Context, id string) error {
		_, err := f.h.FollowUser(ctx, connect.NewRequest(&postv1.FollowUserRequest{UserId: id}))
		return err
	}
	a, b, c := uuid.NewString(), uuid.NewString(), uuid.NewString()
	if err := follow(me, a); err != nil {
		t.Fatal(err)
	}
	if _, err := f.h.UnfollowUser(me, connect.NewRequest(&postv1.UnfollowUserRequest{UserId: a})); err != nil {
		t.Fatal(err)
	}
	wantRetryAfter(t, "a third follow or unfollow", follow(me, b), post.ErrTooManyFollows)
	_, err = f.h.UnfollowUser(me, connect.NewRequest(&postv1.UnfollowUserRequest{UserId: a}))
	wantRetryAfter(t, "a fourth follow or unfollow", err, post.ErrTooManyFollows)
	if n := f.count(t, `SELECT count(*) FROM follows`); n != 0 {
		t.Errorf("%d follows, want none (one followed and unfollowed, one refused)", n)
	}

	// Another user is not affected.
	other, _ := user()
	if err := publish(other, first); err != nil {
		t.Errorf("another user's post: %v", err)
	}
	if err := follow(other, c); err != nil {
		t.Errorf("another user's follow: %v", err)
	}
	// The admin role is no exemption (nor is it in the order service).
	admin := as(auth.Principal{Subject: uuid.NewString(), Admin: true})
	for i := range 2 {
		if err := follow(admin, uuid.NewString()); err != nil {
			t.Fatalf("an admin's follow %d: %v", i+1, err)
		}
	}
	wantRetryAfter(t, "an admin's third follow", follow(admin, c), post.ErrTooManyFollows)
	if p, o, fl := f.count(t, `SELECT count(*) FROM posts`), f.count(t, `SELECT count(*) FROM outbox`), f.count(t, `SELECT count(*) FROM follows`); p != 3 || o != 3 || fl != 3 {
		t.Errorf("%d posts, %d outbox rows, %d follows, want 3 of each", p, o, fl)
	}
}

// wantRetryAfter fails the test unless err is RESOURCE_EXHAUSTED with
// domain error want and a positive Retry-After header.
func wantRetryAfter(t *testing.T, what string, err error, want error) {
	t.Helper()
	var ce *connect.Error
	if !errors.As(err, &ce) || ce.Code() != connect.CodeResourceExhausted || !errors.Is(err, want) {
		t.Errorf("%s: %v, want resource_exhausted: %v", what, err, want)
		return
	}
	if s, err := strconv.Atoi(ce.Meta().Get("Retry-After")); err != nil || s <= 0 {
		t.Errorf("%s: Retry-After %q, want a positive number of seconds", what, ce.Meta().Get("Retry-After"))
	}
}

// TestLimitsValidate: each limit that cannot work is refused, naming its
// field; zero fields take the defaults in SetLimits.
func TestLimitsValidate(t *testing.T) {
	t.Parallel()
	if err := post.DefaultLimits.Validate(); err != nil {
		t.Fatalf("the defaults: %v", err)
	}
	for _, tc := range []struct {
		edit  func(*post.Limits)
		field string
	}{
		{func(l *post.Limits) { l.PostsPerSecond = 0 }, "PostsPerSecond"},
		{func(l *post.Limits) { l.PostsPerSecond = -0.5 }, "PostsPerSecond"},
		{func(l *post.Limits) { l.PostsPerSecond = math.NaN() }, "PostsPerSecond"},
		{func(l *post.Limits) { l.PostBurst = 0 }, "PostBurst"},
		{func(l *post.Limits) { l.PostBurst = -1 }, "PostBurst"},
		{func(l *post.Limits) { l.FollowsPerSecond = 0 }, "FollowsPerSecond"},
		{func(l *post.Limits) { l.FollowsPerSecond = math.Inf(1) }, "FollowsPerSecond"},
		{func(l *post.Limits) { l.FollowBurst = 0 }, "FollowBurst"},
		{func(l *post.Limits) { l.FollowBurst = -3 }, "FollowBurst"},
		{func(l *post.Limits) { l.MaxUsers = 0 }, "MaxUsers"},
		{func(l *post.Limits) { l.MaxUsers = -1 }, "MaxUsers"},
	} {
		l := post.DefaultLimits
		tc.edit(&l)
		if err := l.Validate(); err == nil || !strings.Contains(err.Error(), tc.field) {
			t.Errorf("%+v: %v, want an error naming %s", l, err, tc.field)
		}
	}
	if got := (post.Limits{PostBurst: 3}).WithDefaults(); got.PostBurst != 3 || got.PostsPerSecond != post.DefaultLimits.PostsPerSecond ||
		got.FollowsPerSecond != post.DefaultLimits.FollowsPerSecond || got.FollowBurst != post.DefaultLimits.FollowBurst || got.MaxUsers != post.DefaultLimits.MaxUsers {
		t.Errorf("WithDefaults: %+v", got)
	}
	svc := post.New(servicekit.Runtime{}) // SetLimits needs no database
	if err := svc.SetLimits(post.Limits{}); err != nil {
		t.Errorf("SetLimits of zero limits (the defaults): %v", err)
	}
	if err := svc.SetLimits(post.Limits{FollowsPerSecond: -1}); err == nil || !strings.Contains(err.Error(), "FollowsPerSecond") {
		t.Errorf("SetLimits of a negative follow rate: %v, want an error naming FollowsPerSecond", err)
	}
}
