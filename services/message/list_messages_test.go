package message_test

import (
	"context"
	"encoding/base64"
	"fmt"
	"strings"
	"testing"
	"time"

	"connectrpc.com/connect"
	"github.com/google/uuid"

	messagev1 "github.com/shopbus/shopbus/gen/go/shopbus/message/v1"
	"github.com/shopbus/shopbus/internal/testenv"
)

// TestListMessages: messages sent to two conversations, interleaved, are
// listed per conversation in the order they were sent (seq 1, 2, 3 …),
// across pages; the participants (senders, mentioned users) and admins may
// list a conversation, anyone else is PERMISSION_DENIED, whether or not it
// exists.
func TestListMessages(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	ctx := context.Background()
	support, sizes := uuid.NewString(), uuid.NewString()
	const n = 25
	for i := 1; i <= n; i++ {
		req := &messagev1.SendMessageRequest{MessageId: uuid.NewString(), ConversationId: support, Body: fmt.Sprintf("support %d", i)}
		if i == 5 {
			req.MentionedUserIds = []string{bob}
		}
		if _, err := f.user(t, alice).SendMessage(ctx, connect.NewRequest(req)); err != nil {
			t.Fatal(err)
		}
		if i%3 == 0 {
			req := &messagev1.SendMessageRequest{MessageId: uuid.NewString(), ConversationId: sizes, Body: fmt.Sprintf("sizes %d", i/3)}
			if _, err := f.user(t, carol).SendMessage(ctx, connect.NewRequest(req)); err != nil {
				t.Fatal(err)
			}
		}
	}
	inOrder := func(ms []*messagev1.Message, prefix, sender string, want int) error {
		if len(ms) != want {
			return fmt.Errorf("%d messages listed, want %d", len(ms), want)
		}
		for i, m := range ms {
			if m.GetSeq() != int64(i+1) || m.GetBody() != fmt.Sprintf("%s %d", prefix, i+1) || m.GetSenderId() != sender {
				return fmt.Errorf("message %d is %v, want seq %d: %q from %s", i, m, i+1, fmt.Sprintf("%s %d", prefix, i+1), sender)
			}
		}
		return nil
	}
	testenv.CheckFor(t, 30*time.Second, 20*time.Millisecond, func() error {
		all, pages, err := listAll(ctx, f.user(t, alice), support, 10)
		if err != nil {
			return err
		}
		if pages != 3 {
			return fmt.Errorf("%d pages of 10, want 3", pages)
		}
		return inOrder(all, "support", alice, n)
	})
	if all, _, err := listAll(ctx, f.user(t, bob), support, 0); err != nil || inOrder(all, "support", alice, n) != nil {
		t.Errorf("bob, mentioned, lists %d messages: %v", len(all), err)
	} else if got := all[4].GetMentionedUserIds(); len(got) != 1 || got[0] != bob {
		t.Errorf("message 5 mentions %v, want bob", got)
	}
	if all, pages, err := listAll(ctx, f.admin(t), support, 0); err != nil || pages != 1 || len(all) != n {
		t.Errorf("an admin lists %d messages in %d pages (default size 50): %v", len(all), pages, err)
	}
	testenv.CheckFor(t, 30*time.Second, 20*time.Millisecond, func() error {
		all, _, err := listAll(ctx, f.user(t, carol), sizes, 3)
		if err != nil {
			return err
		}
		return inOrder(all, "sizes", carol, n/3)
	})

	list := func(c interface {
		ListMessages(context.Context, *connect.Request[messagev1.ListMessagesRequest]) (*connect.Response[messagev1.ListMessagesResponse], error)
	}, conversation string) error {
		_, err := c.ListMessages(ctx, connect.NewRequest(&messagev1.ListMessagesRequest{ConversationId: conversation}))
		return err
	}
	wantCode(t, "carol lists a conversation she is not in", list(f.user(t, carol), support), connect.CodePermissionDenied)
	wantCode(t, "bob lists a conversation he is not in", list(f.user(t, bob), sizes), connect.CodePermissionDenied)
	unknown := uuid.NewString()
	wantCode(t, "a user lists a conversation that does not exist", list(f.user(t, carol), unknown), connect.CodePermissionDenied)
	wantCode(t, "an admin lists a conversation that does not exist", list(f.admin(t), unknown), connect.CodeNotFound)
	wantCode(t, "no bearer token", list(f.client(t, nil), support), connect.CodeUnauthenticated)
}

// TestListMessagesBadInput: a page size out of bounds, a conversation id
// that is no UUID and a page token ListMessages did not give for this
// conversation (garbage, tampered, another conversation's) are
// INVALID_ARGUMENT, naming what is wrong.
func TestListMessagesBadInput(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	ctx := context.Background()
	support, other := uuid.NewString(), uuid.NewString()
	for _, conversation := range []string{support, support, other, other} {
		req := &messagev1.SendMessageRequest{MessageId: uuid.NewString(), ConversationId: conversation, Body: "hi"}
		if _, err := f.user(t, alice).SendMessage(ctx, connect.NewRequest(req)); err != nil {
			t.Fatal(err)
		}
	}
	var otherToken string
	testenv.CheckFor(t, 30*time.Second, 20*time.Millisecond, func() error {
		res, err := f.user(t, alice).ListMessages(ctx, connect.NewRequest(&messagev1.ListMessagesRequest{ConversationId: other, PageSize: 1}))
		if err != nil {
			return err
		}
		if otherToken = res.Msg.GetNextPageToken(); otherToken == "" {
			return fmt.Errorf("page 1 of 2 has no next page token: %v", res.Msg)
		}
		return nil
	})
	token := func(s string) string { return base64.RawURLEncoding.EncodeToString([]byte(s)) }
	for _, tc := range []struct {
		name string
		req  *messagev1.ListMessagesRequest
		want string // in the error
	}{
		{"page_size 201", &messagev1.ListMessagesRequest{ConversationId: support, PageSize: 201}, "page_size"},
		{"a conversation_id not a UUID", &messagev1.ListMessagesRequest{ConversationId: "general"}, "conversation_id"},
		{"no conversation_id", &messagev1.ListMessagesRequest{}, "conversation_id"},
		{"a page_token too long", &messagev1.ListMessagesRequest{ConversationId: support, PageToken: strings.Repeat("A", 257)}, "page_token"},
		{"garbage", &messagev1.ListMessagesRequest{ConversationId: support, PageToken: "not a token!"}, "page_token"},
		{"base64 of garbage", &messagev1.ListMessagesRequest{ConversationId: support, PageToken: token("hello")}, "page_token"},
		{"another conversation's token", &messagev1.ListMessagesRequest{ConversationId: support, PageToken: otherToken}, "page_token"},
		{"seq 0", &messagev1.ListMessagesRequest{ConversationId: support, PageToken: token("m1|" + support + "|0")}, "page_token"},
		{"seq -1", &messagev1.ListMessagesRequest{ConversationId: support, PageToken: token("m1|" + support + "|-1")}, "page_token"},
		{"seq not a number", &messagev1.ListMessagesRequest{ConversationId: support, PageToken: token("m1|" + support + "|1x")}, "page_token"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := f.user(t, alice).ListMessages(ctx, connect.NewRequest(tc.req))
			wantCode(t, tc.name, err, connect.CodeInvalidArgument)
			if err != nil && !strings.Contains(err.Error(), tc.want) {
				t.Errorf("%s: %q does not name %s", tc.name, err, tc.want)
			}
		})
	}
	// The token of a position past the end is a well-formed one: an empty
	// last page.
	res, err := f.user(t, alice).ListMessages(ctx, connect.NewRequest(&messagev1.ListMessagesRequest{ConversationId: support, PageToken: token("m1|" + support + "|99")}))
	if err != nil || len(res.Msg.GetMessages()) != 0 || res.Msg.GetNextPageToken() != "" {
		t.Errorf("past the end: %v, %v; want an empty last page", res, err)
	}
}
