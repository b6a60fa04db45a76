package deadletter_test

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"testing"

	"connectrpc.com/connect"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"google.golang.org/protobuf/encoding/prototext"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	deadletterv1 "github.com/shopbus/shopbus/gen/go/shopbus/deadletter/v1"
	eventv1 "github.com/shopbus/shopbus/gen/go/shopbus/event/v1"
	postv1 "github.com/shopbus/shopbus/gen/go/social/post/v1"
	"github.com/shopbus/shopbus/internal/auth"
	"github.com/shopbus/shopbus/internal/deadletter"
	"github.com/shopbus/shopbus/internal/event"
	"github.com/shopbus/shopbus/internal/messaging"
	"github.com/shopbus/shopbus/internal/testenv"
)

// The personal values of the test's post: its author (also its partition
// key, so the last token of its subject) and its body.
const (
	author = "11111111-2222-4333-8444-555555555555"
	body   = "call me on +33 6 12 34 56 78"
)

// deadLetterPost publishes a post.published whose handler fails
// permanently with an error quoting the author and the body, as a careless
// handler would, and waits for its dead letter, filed by the consumer
// (deadletter.Filer) when file is set, else by a collector from the Term's
// advisory; the consumer logs to log.
func deadLetterPost(t *testing.T, js jetstream.JetStream, log *slog.Logger, file bool) *deadletterv1.DeadLetter {
	t.Helper()
	ctx := context.Background()
	post := &postv1.PostPublished{
		PostId: "0193a5e2-7c1d-7b3e-9f4a-2d6c8e0f1a2e", AuthorId: author, Body: body,
		Visibility: postv1.Visibility_VISIBILITY_FOLLOWERS, PublishedAt: timestamppb.Now(),
	}
	env, err := event.New(ctx, post, event.WithSource("shopbus/post"))
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
	cfg := messaging.ConsumerConfig{Stream: "SOCIAL_POST", Durable: "feed-builder", Subjects: []string{"social.post.published"},
		Strategy: messaging.RoundRobin}
	if file {
		cfg.DeadLetter = deadletter.Filer(js)
	}
	cctx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() {
		done <- messaging.Consume(cctx, js, cfg, func(_ context.Context, d *messaging.Delivery) error {
			p := d.Event.(*postv1.PostPublished)
			return messaging.Permanent(fmt.Errorf("cannot index the post of %s: %q is not indexable", p.GetAuthorId(), p.GetBody()))
		}, log)
	}()
	t.Cleanup(func() { cancel(); <-done })
	waitFor(t, "the dead letter", func() bool { return msgs(t, js, deadletter.Stream) == 1 })
	dls, _, err := deadletter.NewStore(js).List(ctx, deadletter.Filter{}, 0, 10)
	if err != nil || len(dls) != 1 {
		t.Fatalf("List = %v, %v", dls, err)
	}
	dl, err := deadletter.NewStore(js).Get(ctx, dls[0].GetId())
	if err != nil {
		t.Fatal(err)
	}
	return dl
}

// TestPersonalDataStaysOutOfLogs: a poison event with personal fields is
// terminated by a consumer and collected into the dead-letter queue from
// the Term's advisory, with every log line of both captured:
// neither the author (a personal partition key, in the subject) nor the
// body appears in the logs or in the stored dead letter's error, though the
// handler's error quoted both.
func TestPersonalDataStaysOutOfLogs(t *testing.T) {
	js := setup(t)
	var logs testenv.LogBuffer
	log := slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	ctx, cancel := context.WithCancel(context.Background())
	collected := make(chan struct{})
	go func() {
		defer close(collected)
		_ = deadletter.NewCollector(js, log).Run(ctx)
	}()
	t.Cleanup(func() { cancel(); <-collected })

	dl := deadLetterPost(t, js, log, false)
	waitFor(t, "the consumer's and the collector's log lines", func() bool {
		return strings.Contains(logs.String(), "giving up") && strings.Contains(logs.String(), "dead letter stored")
	})
	text := logs.String()
	for _, personal := range []string{author, body, "+33 6 12"} {
		if strings.Contains(text, personal) {
			t.Errorf("the logs hold the personal value %q:\n%s", personal, text)
		}
		if strings.Contains(dl.GetError(), personal) {
			t.Errorf("the dead letter's error holds %q: %s", personal, dl.GetError())
		}
	}
	if !strings.Contains(text, event.Redacted) || !strings.Contains(text, "cannot index the post of") {
		t.Errorf("the logs lack the scrubbed error (want %q and the error's text):\n%s", event.Redacted, text)
	}
	// The stored copy is the event as published: redaction is for who
	// reads it, never for the redrive.
	if !bytes.Contains(dl.GetData(), []byte(body)) {
		t.Errorf("the stored original lost its body: a redrive would republish a damaged event")
	}
}

// get calls the handler's GetDeadLetter as caller (none when nil).
func get(h *deadletter.Handler, caller *auth.Principal, id uint64, reveal bool) (*deadletterv1.DeadLetter, error) {
	ctx := context.Background()
	if caller != nil {
		ctx = auth.WithPrincipal(ctx, *caller)
	}
	res, err := h.GetDeadLetter(ctx, connect.NewRequest(&deadletterv1.GetDeadLetterRequest{Id: id, RevealPersonal: reveal}))
	if err != nil {
		return nil, err
	}
	return res.Msg.GetDeadLetter(), nil
}

func payloadOf(t *testing.T, dl *deadletterv1.DeadLetter) *postv1.PostPublished {
	t.Helper()
	env := &eventv1.Envelope{}
	p := &postv1.PostPublished{}
	if err := proto.Unmarshal(dl.GetData(), env); err != nil {
		t.Fatal(err)
	}
	if err := proto.Unmarshal(env.GetPayload(), p); err != nil {
		t.Fatal(err)
	}
	return p
}

// TestDeadLetterServiceRedacts: GetDeadLetter and ListDeadLetters return a
// dead letter without its personal values; reveal_personal returns them to
// an admin, logging who asked and never the values, and is
// permission_denied to anyone else.
func TestDeadLetterServiceRedacts(t *testing.T) {
	js := setup(t)
	stored := deadLetterPost(t, js, quiet, true)
	var logs testenv.LogBuffer
	h := deadletter.NewHandler(deadletter.NewStore(js), slog.New(slog.NewTextHandler(&logs, nil)))
	admin := &auth.Principal{Subject: "admin-token", Admin: true}

	dl, err := get(h, admin, stored.GetId(), false)
	if err != nil {
		t.Fatal(err)
	}
	text := prototext.Format(dl) + string(dl.GetData())
	for _, personal := range []string{author, body} {
		if strings.Contains(text, personal) {
			t.Errorf("GetDeadLetter without reveal_personal holds %q:\n%s", personal, text)
		}
	}
	p := payloadOf(t, dl)
	if p.GetPostId() == "" || p.GetVisibility() != postv1.Visibility_VISIBILITY_FOLLOWERS || p.GetAuthorId() != "" || p.GetBody() != "" {
		t.Errorf("redacted payload %v: want the internal fields kept, the personal ones removed", p)
	}
	// The error was scrubbed by the consumer before it was stored, so
	// nothing more is removed from it here.
	for _, want := range []string{"author_id", "body", "partition_key", "original_subject", "headers"} {
		if !slices.Contains(dl.GetRedactedFields(), want) {
			t.Errorf("redacted_fields %v lack %s", dl.GetRedactedFields(), want)
		}
	}

	list, err := h.ListDeadLetters(auth.WithPrincipal(context.Background(), *admin), connect.NewRequest(&deadletterv1.ListDeadLettersRequest{}))
	if err != nil {
		t.Fatal(err)
	}
	if text := prototext.Format(list.Msg); strings.Contains(text, author) || strings.Contains(text, body) || len(list.Msg.GetDeadLetters()) != 1 {
		t.Errorf("ListDeadLetters holds personal values or not the one dead letter:\n%s", text)
	}

	for _, caller := range []*auth.Principal{nil, {Subject: "6f1c2b3a-4d5e-4f60-8a7b-9c0d1e2f3a4b"}} {
		_, err := get(h, caller, stored.GetId(), true)
		if connect.CodeOf(err) != connect.CodePermissionDenied || !strings.Contains(err.Error(), "reveal_personal") {
			t.Errorf("reveal by %v: %v, want permission_denied naming reveal_personal", caller, err)
		}
	}

	dl, err = get(h, admin, stored.GetId(), true)
	if err != nil {
		t.Fatal(err)
	}
	if p := payloadOf(t, dl); p.GetAuthorId() != author || p.GetBody() != body || len(dl.GetRedactedFields()) != 0 {
		t.Errorf("revealed payload %v (redacted %v): want every value", p, dl.GetRedactedFields())
	}
	audit := logs.String()
	if !strings.Contains(audit, "personal data revealed") || !strings.Contains(audit, "by=admin-token") {
		t.Errorf("the reveal is not logged with who asked:\n%s", audit)
	}
	if strings.Contains(audit, author) || strings.Contains(audit, body) {
		t.Errorf("the audit log holds the revealed values:\n%s", audit)
	}
}

// TestUnclassifiableDataIsWithheld: a dead letter whose data is not an
// event of the catalog cannot be classified: its data is withheld unless
// revealed, and the personal key of its subject is still redacted.
func TestUnclassifiableDataIsWithheld(t *testing.T) {
	js := setup(t)
	ctx := context.Background()
	if _, err := js.PublishMsg(ctx, &nats.Msg{Subject: "social.post.published.v1." + author, Data: []byte("poison " + body)}); err != nil {
		t.Fatal(err)
	}
	cfg := messaging.ConsumerConfig{Stream: "SOCIAL_POST", Durable: "feed-builder", Subjects: []string{"social.post.published"},
		Strategy: messaging.RoundRobin, DeadLetter: deadletter.Filer(js)}
	cctx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() {
		done <- messaging.Consume(cctx, js, cfg, func(context.Context, *messaging.Delivery) error { return nil }, quiet)
	}()
	t.Cleanup(func() { cancel(); <-done })
	waitFor(t, "the dead letter", func() bool { return msgs(t, js, deadletter.Stream) == 1 })

	h := deadletter.NewHandler(deadletter.NewStore(js), quiet)
	admin := &auth.Principal{Subject: "admin-token", Admin: true}
	dls, _, err := deadletter.NewStore(js).List(ctx, deadletter.Filter{}, 0, 1)
	if err != nil || len(dls) != 1 {
		t.Fatalf("List = %v, %v", dls, err)
	}
	dl, err := get(h, admin, dls[0].GetId(), false)
	if err != nil {
		t.Fatal(err)
	}
	if !dl.GetDataWithheld() || len(dl.GetData()) != 0 || strings.Contains(prototext.Format(dl), author) {
		t.Errorf("unclassifiable dead letter: withheld %v, data %q, text:\n%s", dl.GetDataWithheld(), dl.GetData(), prototext.Format(dl))
	}
	dl, err = get(h, admin, dls[0].GetId(), true)
	if err != nil || !bytes.Contains(dl.GetData(), []byte(body)) || dl.GetDataWithheld() {
		t.Errorf("revealed unclassifiable dead letter: %v, %v", dl, err)
	}
}
