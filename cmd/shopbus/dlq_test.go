package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"
	"time"

	"connectrpc.com/connect"
	"github.com/nats-io/nats.go"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/shopbus/shopbus/gateway"
	"github.com/shopbus/shopbus/gen/go/shopbus/deadletter/v1/deadletterv1connect"
	postv1 "github.com/shopbus/shopbus/gen/go/social/post/v1"
	"github.com/shopbus/shopbus/internal/auth"
	"github.com/shopbus/shopbus/internal/deadletter"
	"github.com/shopbus/shopbus/internal/event"
	"github.com/shopbus/shopbus/internal/messaging"
	"github.com/shopbus/shopbus/internal/testenv"
)

// TestDLQShowRedacts: `shopbus dlq show` against a DeadLetterService that
// holds a dead letter with personal values prints it redacted, saying
// what was removed; `--reveal` with the admin token prints the values; a
// wrong token gets nothing; --reveal belongs to show only.
func TestDLQShowRedacts(t *testing.T) {
	t.Parallel()
	const (
		author = "11111111-2222-4333-8444-555555555555"
		body   = "my flat is at 12 Rue de la Paix"
		token  = "dlq-show-test-token"
	)
	_, js := testenv.NATS(t)
	ctx := context.Background()
	if err := deadletter.Ensure(ctx, js, deadletter.Options{}); err != nil {
		t.Fatal(err)
	}
	env, err := event.New(ctx, &postv1.PostPublished{
		PostId: "0193a5e2-7c1d-7b3e-9f4a-2d6c8e0f1a2e", AuthorId: author, Body: body,
		Visibility: postv1.Visibility_VISIBILITY_PUBLIC, PublishedAt: timestamppb.Now(),
	}, event.WithSource("shopbus/post"))
	if err != nil {
		t.Fatal(err)
	}
	data, err := event.Encode(env)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := js.PublishMsg(ctx, &nats.Msg{Subject: "social.post.published.v1." + author, Data: data, Header: event.Headers(env)}); err != nil {
		t.Fatal(err)
	}
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	cctx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() {
		done <- messaging.Consume(cctx, js, messaging.ConsumerConfig{Stream: "SOCIAL_POST", Durable: "moderation",
			Subjects: []string{"social.post.published"}, Strategy: messaging.RoundRobin, DeadLetter: deadletter.Filer(js)},
			func(context.Context, *messaging.Delivery) error {
				return messaging.Permanent(errors.New("moderation model refused"))
			}, quiet)
	}()
	t.Cleanup(func() { cancel(); <-done })
	store := deadletter.NewStore(js)
	var id uint64
	testenv.CheckFor(t, 20*time.Second, 20*time.Millisecond, func() error {
		dls, _, err := store.List(ctx, deadletter.Filter{}, 0, 1)
		if err != nil {
			return err
		}
		if len(dls) != 1 {
			return fmt.Errorf("%d dead letters, want 1", len(dls))
		}
		id = dls[0].GetId()
		return nil
	})

	// The gateway's authentication: the admin token, the admin procedures.
	mux := http.NewServeMux()
	mux.Handle(deadletterv1connect.NewDeadLetterServiceHandler(deadletter.NewHandler(store, quiet),
		connect.WithInterceptors(auth.Interceptor(auth.Config{AdminToken: token}, gateway.IsAdmin))))
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	show := func(tok string, extra ...string) (string, string, int) {
		args := append([]string{"dlq", "show", "--url", srv.URL}, extra...)
		return shopbus(t, []string{"SHOPBUS_ADMIN_TOKEN=" + tok}, append(args, strconv.FormatUint(id, 10))...)
	}

	out, errOut, code := show(token)
	if code != 0 {
		t.Fatalf("dlq show: exit %d\n%s", code, errOut)
	}
	if strings.Contains(out, author) || strings.Contains(out, body) {
		t.Errorf("dlq show printed personal values:\n%s", out)
	}
	for _, want := range []string{"redacted (personal or sensitive): author_id, body,", "--reveal", "0193a5e2-7c1d-7b3e-9f4a-2d6c8e0f1a2e" /* the post id: internal, shown */, "payload (post.published.v1)"} {
		if !strings.Contains(out, want) {
			t.Errorf("dlq show lacks %q:\n%s", want, out)
		}
	}

	out, errOut, code = show(token, "--reveal")
	if code != 0 || !strings.Contains(out, body) || !strings.Contains(out, author) || strings.Contains(out, "redacted (") {
		t.Errorf("dlq show --reveal: exit %d, want the values:\n%s\n%s", code, out, errOut)
	}

	out, errOut, code = show("not-the-token", "--reveal")
	if code == 0 || strings.Contains(out+errOut, body) || !strings.Contains(errOut, "unauthenticated") {
		t.Errorf("dlq show --reveal with a wrong token: exit %d, want unauthenticated and nothing shown:\n%s\n%s", code, out, errOut)
	}

	_, errOut, code = shopbus(t, nil, "dlq", "list", "--url", srv.URL, "--reveal")
	if code != 2 || !strings.Contains(errOut, "--reveal: only dlq show reveals personal data") {
		t.Errorf("dlq list --reveal: exit %d (want 2):\n%s", code, errOut)
	}
}
