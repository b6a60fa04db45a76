package message_test

import (
	"context"
	"strings"
	"testing"

	"connectrpc.com/connect"
	"github.com/google/uuid"
	"google.golang.org/protobuf/proto"

	messagev1 "github.com/shopbus/shopbus/gen/go/shopbus/message/v1"
	"github.com/shopbus/shopbus/internal/auth"
)

// TestSendMessageIdempotent: the sender is the caller; a retry (the same
// message_id, the same request, however its UUIDs are cased) returns the
// message as first sent and writes nothing; the same message_id with
// another body, or from another user, is ALREADY_EXISTS and writes nothing.
func TestSendMessageIdempotent(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	ctx := context.Background()
	req := &messagev1.SendMessageRequest{MessageId: uuid.NewString(), ConversationId: uuid.NewString(), Body: "Is the black tee in stock in M?",
		MentionedUserIds: []string{bob}}
	first, err := f.user(t, alice).SendMessage(ctx, connect.NewRequest(req))
	if err != nil {
		t.Fatal(err)
	}
	m := first.Msg.GetMessage()
	if first.Msg.GetReplayed() || m.GetSenderId() != alice || m.GetMessageId() != req.GetMessageId() || m.GetBody() != req.GetBody() ||
		m.GetSeq() != 0 || m.GetSentAt() == nil {
		t.Fatalf("SendMessage answered %v", first.Msg)
	}

	retry := proto.CloneOf(req)
	retry.ConversationId = strings.ToUpper(req.GetConversationId()) // the same conversation
	again, err := f.user(t, strings.ToUpper(alice)).SendMessage(ctx, connect.NewRequest(retry))
	if err != nil {
		t.Fatal(err)
	}
	if !again.Msg.GetReplayed() || !proto.Equal(again.Msg.GetMessage(), m) {
		t.Errorf("the retry answered %v, want %v replayed", again.Msg, m)
	}

	other := proto.CloneOf(req)
	other.Body = "something else"
	_, err = f.user(t, alice).SendMessage(ctx, connect.NewRequest(other))
	wantCode(t, "the same message_id with another body", err, connect.CodeAlreadyExists)
	_, err = f.user(t, carol).SendMessage(ctx, connect.NewRequest(req))
	wantCode(t, "another user with the same message_id", err, connect.CodeAlreadyExists)
	if err != nil && strings.Contains(err.Error(), req.GetBody()) {
		t.Errorf("the refusal tells another user's message: %v", err)
	}

	if n := f.count(t, `SELECT count(*) FROM outbox`) + f.count(t, `SELECT count(*) FROM sent_messages`); n != 2 {
		t.Errorf("%d outbox and sent_messages rows, want one of each", n)
	}
}

// TestSendMessageBadInput: each bad request is refused with
// INVALID_ARGUMENT naming the field (or UNAUTHENTICATED, PERMISSION_DENIED
// for a caller who may not send), and nothing is written.
func TestSendMessageBadInput(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	ctx := context.Background()
	valid := func(edit func(*messagev1.SendMessageRequest)) *messagev1.SendMessageRequest {
		r := &messagev1.SendMessageRequest{MessageId: uuid.NewString(), ConversationId: uuid.NewString(), Body: "hello"}
		edit(r)
		return r
	}
	many := make([]string, 51)
	for i := range many {
		many[i] = uuid.NewString()
	}
	for _, tc := range []struct {
		name  string
		req   *messagev1.SendMessageRequest
		field string
	}{
		{"empty body", valid(func(r *messagev1.SendMessageRequest) { r.Body = "" }), "body"},
		{"only white space", valid(func(r *messagev1.SendMessageRequest) { r.Body = " \n\t " }), "body"},
		{"a body too long", valid(func(r *messagev1.SendMessageRequest) { r.Body = strings.Repeat("é", 4001) }), "body"},
		{"no message_id", valid(func(r *messagev1.SendMessageRequest) { r.MessageId = "" }), "message_id"},
		{"a message_id not a UUID", valid(func(r *messagev1.SendMessageRequest) { r.MessageId = "msg-1" }), "message_id"},
		{"no conversation_id", valid(func(r *messagev1.SendMessageRequest) { r.ConversationId = "" }), "conversation_id"},
		{"a conversation_id not a UUID", valid(func(r *messagev1.SendMessageRequest) { r.ConversationId = "general" }), "conversation_id"},
		{"a mention not a UUID", valid(func(r *messagev1.SendMessageRequest) { r.MentionedUserIds = []string{bob, "bob"} }), "mentioned_user_ids"},
		{"a mention twice", valid(func(r *messagev1.SendMessageRequest) { r.MentionedUserIds = []string{bob, bob} }), "mentioned_user_ids"},
		{"51 mentions", valid(func(r *messagev1.SendMessageRequest) { r.MentionedUserIds = many }), "mentioned_user_ids"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := f.user(t, alice).SendMessage(ctx, connect.NewRequest(tc.req))
			wantCode(t, tc.name, err, connect.CodeInvalidArgument)
			if err != nil && !strings.Contains(err.Error(), tc.field) {
				t.Errorf("%s: %q does not name %s", tc.name, err, tc.field)
			}
		})
	}
	ok := valid(func(*messagev1.SendMessageRequest) {})
	_, err := f.client(t, nil).SendMessage(ctx, connect.NewRequest(ok))
	wantCode(t, "no bearer token", err, connect.CodeUnauthenticated)
	_, err = f.admin(t).SendMessage(ctx, connect.NewRequest(ok))
	wantCode(t, "a token whose subject is no user", err, connect.CodePermissionDenied)
	_, err = f.client(t, &auth.Principal{Subject: "bob"}).SendMessage(ctx, connect.NewRequest(ok))
	wantCode(t, "a token whose subject is no user", err, connect.CodePermissionDenied)

	if n := f.count(t, `SELECT count(*) FROM outbox`) + f.count(t, `SELECT count(*) FROM sent_messages`); n != 0 {
		t.Errorf("%d rows written by refused requests, want none", n)
	}
}
