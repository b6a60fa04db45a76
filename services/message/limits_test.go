package message_test

import (
	"context"
	"errors"
	"math"
	"strconv"
	"strings"
	"testing"

	"connectrpc.com/connect"
	"github.com/google/uuid"
	"google.golang.org/genproto/googleapis/rpc/errdetails"

	messagev1 "github.com/shopbus/shopbus/gen/go/shopbus/message/v1"
	"github.com/shopbus/shopbus/internal/servicekit"
	"github.com/shopbus/shopbus/services/message"
)

// TestSendMessageRateLimit: with a burst of 2 (and a rate too slow to add
// a token during the test), a user's third SendMessage in a row is
// RESOURCE_EXHAUSTED with a positive Retry-After and a RetryInfo, and
// writes nothing; a retry of an accepted message counts against the limit
// as well (the token is taken before the message_id is looked up, as
// CreateOrder does); another user has a bucket of its own; a user with the
// admin role is held too.
func TestSendMessageRateLimit(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	if err := f.svc.SetLimits(message.Limits{MessagesPerSecond: 0.001, Burst: 2}); err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	conversation := uuid.NewString()
	first := &messagev1.SendMessageRequest{MessageId: uuid.NewString(), ConversationId: conversation, Body: "one", MentionedUserIds: []string{bob}}
	if _, err := f.user(t, alice).SendMessage(ctx, connect.NewRequest(first)); err != nil {
		t.Fatal(err)
	}
	if _, err := send(ctx, f.user(t, alice), conversation, "two"); err != nil {
		t.Fatal(err)
	}
	refused := &messagev1.SendMessageRequest{MessageId: uuid.NewString(), ConversationId: conversation, Body: "three"}
	_, err := f.user(t, strings.ToUpper(alice)).SendMessage(ctx, connect.NewRequest(refused)) // the same user, the same bucket
	wantRetryAfter(t, "alice's third message", err)
	_, err = f.user(t, alice).SendMessage(ctx, connect.NewRequest(first))
	wantRetryAfter(t, "a retry of alice's first message past the limit", err)

	if n := f.count(t, `SELECT count(*) FROM sent_messages WHERE message_id = '`+refused.GetMessageId()+`'`); n != 0 {
		t.Errorf("the refused message was written")
	}
	if s, o := f.count(t, `SELECT count(*) FROM sent_messages`), f.count(t, `SELECT count(*) FROM outbox`); s != 2 || o != 2 {
		t.Errorf("%d sent_messages and %d outbox rows, want alice's 2 accepted messages", s, o)
	}

	// bob has his own bucket.
	if _, err := send(ctx, f.user(t, bob), conversation, "bob's reply"); err != nil {
		t.Errorf("bob, after alice was limited: %v", err)
	}
	// The admin role is no exemption (nor is it in the order service).
	for i := range 2 {
		if _, err := send(ctx, f.agentClient(t), uuid.NewString(), "agent"); err != nil {
			t.Fatalf("agent's message %d: %v", i+1, err)
		}
	}
	_, err = send(ctx, f.agentClient(t), uuid.NewString(), "agent")
	wantRetryAfter(t, "an admin's third message", err)
	if s, o := f.count(t, `SELECT count(*) FROM sent_messages`), f.count(t, `SELECT count(*) FROM outbox`); s != 5 || o != 5 {
		t.Errorf("%d sent_messages and %d outbox rows, want the 5 accepted messages", s, o)
	}
}

// wantRetryAfter fails the test unless err is RESOURCE_EXHAUSTED saying the
// user sends too many messages, with a positive Retry-After header and a
// RetryInfo detail.
func wantRetryAfter(t *testing.T, what string, err error) {
	t.Helper()
	var ce *connect.Error
	if !errors.As(err, &ce) || ce.Code() != connect.CodeResourceExhausted || !strings.Contains(ce.Message(), message.ErrRateLimited.Error()) {
		t.Errorf("%s: %v, want resource_exhausted: %v", what, err, message.ErrRateLimited)
		return
	}
	if s, err := strconv.Atoi(ce.Meta().Get("Retry-After")); err != nil || s <= 0 {
		t.Errorf("%s: Retry-After %q, want a positive number of seconds", what, ce.Meta().Get("Retry-After"))
	}
	var info *errdetails.RetryInfo
	for _, d := range ce.Details() {
		if v, err := d.Value(); err == nil {
			if ri, ok := v.(*errdetails.RetryInfo); ok {
				info = ri
			}
		}
	}
	if info == nil || info.GetRetryDelay().AsDuration() <= 0 {
		t.Errorf("%s: RetryInfo %v, want a positive delay", what, info)
	}
}

// TestLimitsValidate: each limit that cannot work is refused, naming its
// field; zero fields take the defaults in SetLimits.
func TestLimitsValidate(t *testing.T) {
	t.Parallel()
	if err := message.DefaultLimits.Validate(); err != nil {
		t.Fatalf("the defaults: %v", err)
	}
	for _, tc := range []struct {
		edit  func(*message.Limits)
		field string
	}{
		{func(l *message.Limits) { l.MessagesPerSecond = 0 }, "MessagesPerSecond"},
		{func(l *message.Limits) { l.MessagesPerSecond = -1 }, "MessagesPerSecond"},
		{func(l *message.Limits) { l.MessagesPerSecond = math.NaN() }, "MessagesPerSecond"},
		{func(l *message.Limits) { l.MessagesPerSecond = math.Inf(1) }, "MessagesPerSecond"},
		{func(l *message.Limits) { l.Burst = 0 }, "Burst"},
		{func(l *message.Limits) { l.Burst = -1 }, "Burst"},
		{func(l *message.Limits) { l.MaxUsers = 0 }, "MaxUsers"},
		{func(l *message.Limits) { l.MaxUsers = -1 }, "MaxUsers"},
	} {
		l := message.DefaultLimits
		tc.edit(&l)
		if err := l.Validate(); err == nil || !strings.Contains(err.Error(), tc.field) {
			t.Errorf("%+v: %v, want an error naming %s", l, err, tc.field)
		}
	}
	if got := (message.Limits{Burst: 3}).WithDefaults(); got != (message.Limits{MessagesPerSecond: message.DefaultLimits.MessagesPerSecond, Burst: 3, MaxUsers: message.DefaultLimits.MaxUsers}) {
		t.Errorf("WithDefaults: %+v", got)
	}
	svc := message.New(servicekit.Runtime{}) // SetLimits needs no database
	if err := svc.SetLimits(message.Limits{}); err != nil {
		t.Errorf("SetLimits of zero limits (the defaults): %v", err)
	}
	if err := svc.SetLimits(message.Limits{Burst: -2}); err == nil || !strings.Contains(err.Error(), "Burst") {
		t.Errorf("SetLimits of a negative burst: %v, want an error naming Burst", err)
	}
}
