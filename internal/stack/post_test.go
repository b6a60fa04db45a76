package stack_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"connectrpc.com/connect"
	"github.com/google/uuid"

	postv1 "github.com/shopbus/shopbus/gen/go/shopbus/post/v1"
	"github.com/shopbus/shopbus/gen/go/shopbus/post/v1/postv1connect"
	"github.com/shopbus/shopbus/internal/auth"
	"github.com/shopbus/shopbus/internal/testenv"
)

// posts is a PostService client calling as the user id.
func (s *testStack) posts(t *testing.T, id string) postv1connect.PostServiceClient {
	return postv1connect.NewPostServiceClient(http.DefaultClient, s.URL(), as(t, auth.Principal{Subject: id}))
}

// awaitCatalog waits until the post service knows sku (from its
// inventory.priced).
func (s *testStack) awaitCatalog(t *testing.T, sku string) {
	t.Helper()
	testenv.CheckFor(t, 30*time.Second, 10*time.Millisecond, func() error {
		if s.count(t, "post", "SELECT count(*) FROM products WHERE sku = $1", sku) == 0 {
			return fmt.Errorf("the post service does not know %s yet", sku)
		}
		return nil
	})
}

// TestPostsThroughGateway: through the gateway, with bearer tokens and the
// validation interceptor: a follower's feed gets a review of a SKU the
// inventory service priced; bad input gets a clear Connect error and
// writes nothing; only users call, as themselves.
func TestPostsThroughGateway(t *testing.T) {
	t.Parallel()
	s := startStack(t)
	authorID, readerID := uuid.NewString(), uuid.NewString()
	author, reader := s.posts(t, authorID), s.posts(t, readerID)
	ctx := context.Background()
	if _, err := reader.FollowUser(ctx, connect.NewRequest(&postv1.FollowUserRequest{UserId: authorID})); err != nil {
		t.Fatal(err)
	}
	s.setPrice(t, "MUG-001", 1250, "EUR")
	s.awaitCatalog(t, "MUG-001")
	res, err := author.PublishPost(ctx, connect.NewRequest(&postv1.PublishPostRequest{IdempotencyKey: "review-0001",
		Body: "Sturdy mug", Hashtags: []string{"mugs"}, ProductSku: "MUG-001", Visibility: postv1.Visibility_VISIBILITY_FOLLOWERS}))
	if err != nil {
		t.Fatal(err)
	}
	if p := res.Msg.GetPost(); p.GetAuthorId() != authorID || p.GetProductSku() != "MUG-001" {
		t.Errorf("PublishPost: %v, want a review of MUG-001 by %s", p, authorID)
	}
	testenv.CheckFor(t, 30*time.Second, 20*time.Millisecond, func() error {
		feed, err := reader.GetFeed(ctx, connect.NewRequest(&postv1.GetFeedRequest{}))
		if err != nil {
			return err
		}
		if ps := feed.Msg.GetPosts(); len(ps) != 1 || ps[0].GetPostId() != res.Msg.GetPost().GetPostId() {
			return fmt.Errorf("the follower's feed: %v", ps)
		}
		return nil
	})

	long := strings.Repeat("x", 5001)
	for _, tc := range []struct {
		name string
		call func() error
		code connect.Code
		want string // in the error's message
	}{
		{"nothing", publish(author, &postv1.PublishPostRequest{}), connect.CodeInvalidArgument, "idempotency_key"},
		{"no body", publish(author, &postv1.PublishPostRequest{IdempotencyKey: "bad-00001", Visibility: postv1.Visibility_VISIBILITY_PUBLIC}),
			connect.CodeInvalidArgument, "body"},
		{"body too long", publish(author, &postv1.PublishPostRequest{IdempotencyKey: "bad-00002", Body: long, Visibility: postv1.Visibility_VISIBILITY_PUBLIC}),
			connect.CodeInvalidArgument, "body"},
		{"hashtag with #", publish(author, &postv1.PublishPostRequest{IdempotencyKey: "bad-00003", Body: "b", Hashtags: []string{"#Mugs"},
			Visibility: postv1.Visibility_VISIBILITY_PUBLIC}), connect.CodeInvalidArgument, "hashtags"},
		{"no visibility", publish(author, &postv1.PublishPostRequest{IdempotencyKey: "bad-00004", Body: "b"}),
			connect.CodeInvalidArgument, "visibility"},
		{"undefined visibility", publish(author, &postv1.PublishPostRequest{IdempotencyKey: "bad-00005", Body: "b", Visibility: 7}),
			connect.CodeInvalidArgument, "visibility"},
		{"malformed SKU", publish(author, &postv1.PublishPostRequest{IdempotencyKey: "bad-00006", Body: "b", ProductSku: "mug 1",
			Visibility: postv1.Visibility_VISIBILITY_PUBLIC}), connect.CodeInvalidArgument, "product_sku"},
		{"unknown SKU", publish(author, &postv1.PublishPostRequest{IdempotencyKey: "bad-00007", Body: "b", ProductSku: "NOPE-001",
			Visibility: postv1.Visibility_VISIBILITY_PUBLIC}), connect.CodeFailedPrecondition, "NOPE-001"},
		{"key reused", publish(author, &postv1.PublishPostRequest{IdempotencyKey: "review-0001", Body: "another",
			Visibility: postv1.Visibility_VISIBILITY_PUBLIC}), connect.CodeAlreadyExists, "review-0001"},
		{"page too large", func() error {
			_, err := reader.GetFeed(ctx, connect.NewRequest(&postv1.GetFeedRequest{PageSize: 101}))
			return err
		}, connect.CodeInvalidArgument, "page_size"},
		{"page token", func() error {
			_, err := reader.GetFeed(ctx, connect.NewRequest(&postv1.GetFeedRequest{PageToken: "%%%"}))
			return err
		}, connect.CodeInvalidArgument, "page token"},
		{"follow no UUID", func() error {
			_, err := reader.FollowUser(ctx, connect.NewRequest(&postv1.FollowUserRequest{UserId: "bob"}))
			return err
		}, connect.CodeInvalidArgument, "user_id"},
		{"follow oneself", func() error {
			_, err := reader.FollowUser(ctx, connect.NewRequest(&postv1.FollowUserRequest{UserId: readerID}))
			return err
		}, connect.CodeInvalidArgument, "user_id"},
		{"an operator", publish(s.posts(t, "ops"), &postv1.PublishPostRequest{IdempotencyKey: "ops-00001", Body: "b",
			Visibility: postv1.Visibility_VISIBILITY_PUBLIC}), connect.CodePermissionDenied, "user id"},
		{"no token", func() error {
			_, err := postv1connect.NewPostServiceClient(http.DefaultClient, s.URL()).GetFeed(ctx, connect.NewRequest(&postv1.GetFeedRequest{}))
			return err
		}, connect.CodeUnauthenticated, ""},
	} {
		err := tc.call()
		if connect.CodeOf(err) != tc.code || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: %v, want %v naming %q", tc.name, err, tc.code, tc.want)
		}
	}
	if n := s.count(t, "post", "SELECT (SELECT count(*) FROM posts) + (SELECT count(*) FROM follows)"); n != 2 {
		t.Errorf("%d posts and follows, want the one review and the one follow: bad input wrote nothing", n)
	}
}

// publish is a call of PublishPost with req.
func publish(c postv1connect.PostServiceClient, req *postv1.PublishPostRequest) func() error {
	return func() error {
		_, err := c.PublishPost(context.Background(), connect.NewRequest(req))
		return err
	}
}

// TestREADMEPostBufCurl runs the README's `buf curl` PublishPost as the
// demo customer against a stack whose catalog priced MUG-001 (as shopbus
// dev seeds it): a review by the token's user, in its own feed.
func TestREADMEPostBufCurl(t *testing.T) {
	if testing.Short() {
		t.Skip("runs buf")
	}
	t.Parallel()
	readme, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	line := readmeLine(t, readme, "/shopbus.post.v1.PostService/PublishPost")
	s := startStack(t)
	tokenFile := filepath.Join(t.TempDir(), "customer.jwt")
	if err := os.WriteFile(tokenFile, []byte(token(t, auth.Principal{Subject: customer})+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	s.setPrice(t, "MUG-001", 1250, "EUR")
	s.awaitCatalog(t, "MUG-001")
	cmd := exec.Command("sh", "-c", strings.NewReplacer("http://127.0.0.1:8080", s.URL(), ".data/auth/customer.jwt", tokenFile).Replace(line))
	cmd.Dir = "../.."
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("%s: %v\n%s", line, err, out)
	}
	var res struct {
		Post struct {
			PostID     string `json:"postId"`
			AuthorID   string `json:"authorId"`
			ProductSKU string `json:"productSku"`
		} `json:"post"`
	}
	if err := json.Unmarshal(out, &res); err != nil || res.Post.AuthorID != customer || res.Post.ProductSKU != "MUG-001" {
		t.Fatalf("buf curl printed %s (%v), want a review of MUG-001 by %s", out, err, customer)
	}
	testenv.CheckFor(t, 30*time.Second, 20*time.Millisecond, func() error {
		feed, err := s.posts(t, customer).GetFeed(context.Background(), connect.NewRequest(&postv1.GetFeedRequest{}))
		if err != nil {
			return err
		}
		if ps := feed.Msg.GetPosts(); len(ps) != 1 || ps[0].GetPostId() != res.Post.PostID {
			return fmt.Errorf("the author's feed: %v", ps)
		}
		return nil
	})
}
