package message_test

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"connectrpc.com/connect"
	"github.com/google/uuid"
	"google.golang.org/protobuf/proto"

	messagev1 "github.com/shopbus/shopbus/gen/go/shopbus/message/v1"
	"github.com/shopbus/shopbus/gen/go/shopbus/message/v1/messagev1connect"
	"github.com/shopbus/shopbus/internal/auth"
	"github.com/shopbus/shopbus/internal/testenv"
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

// send sends a new message (a new message_id) to the conversation as c.
func send(ctx context.Context, c messagev1connect.MessageServiceClient, conversation, body string, mentions ...string) (*messagev1.SendMessageResponse, error) {
	res, err := c.SendMessage(ctx, connect.NewRequest(&messagev1.SendMessageRequest{
		MessageId: uuid.NewString(), ConversationId: conversation, Body: body, MentionedUserIds: mentions}))
	if err != nil {
		return nil, err
	}
	return res.Msg, nil
}

// TestSendMessageParticipants: anyone may start a conversation; once it has
// messages, its participants (who sent to it, who was mentioned in it) and
// admins may send to it. Anyone else who knows its id is
// PERMISSION_DENIED, told what a conversation that does not exist would
// tell, nothing is written, and may not list it either.
func TestSendMessageParticipants(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	ctx := context.Background()
	support, own := uuid.NewString(), uuid.NewString()
	if _, err := send(ctx, f.user(t, alice), support, "Is the black tee in stock in M?", bob); err != nil {
		t.Fatalf("alice starts a conversation: %v", err)
	}
	if _, err := send(ctx, f.user(t, carol), own, "hello"); err != nil {
		t.Fatalf("carol starts a conversation of her own: %v", err)
	}
	// The read model has placed the first message: its participants are
	// known on both sides.
	testenv.CheckFor(t, 30*time.Second, 20*time.Millisecond, func() error {
		all, _, err := listAll(ctx, f.user(t, bob), support, 0)
		if err == nil && len(all) != 1 {
			err = fmt.Errorf("bob lists %d messages, want 1", len(all))
		}
		return err
	})
	for _, tc := range []struct {
		who string
		c   messagev1connect.MessageServiceClient
	}{
		{"alice, who sent to it, again", f.user(t, alice)},
		{"bob, mentioned in it", f.user(t, bob)},
		{"an admin (a user with the admin role)", f.agentClient(t)},
	} {
		if _, err := send(ctx, tc.c, support, "from "+tc.who); err != nil {
			t.Errorf("%s sends: %v", tc.who, err)
		}
	}

	before := f.count(t, `SELECT count(*) FROM sent_messages`) + f.count(t, `SELECT count(*) FROM outbox`)
	_, sendErr := send(ctx, f.user(t, carol), support, "let me in", carol)
	wantCode(t, "carol, who knows its id, sends to it", sendErr, connect.CodePermissionDenied)
	_, err := send(ctx, f.user(t, dave), support, "me too")
	wantCode(t, "dave, who knows its id, sends to it", err, connect.CodePermissionDenied)
	if after := f.count(t, `SELECT count(*) FROM sent_messages`) + f.count(t, `SELECT count(*) FROM outbox`); after != before {
		t.Errorf("refused messages wrote %d sent_messages and outbox rows, want none", after-before)
	}
	_, listErr := f.user(t, carol).ListMessages(ctx, connect.NewRequest(&messagev1.ListMessagesRequest{ConversationId: support}))
	wantCode(t, "carol lists it", listErr, connect.CodePermissionDenied)
	unknown := uuid.NewString()
	_, unknownErr := f.user(t, carol).ListMessages(ctx, connect.NewRequest(&messagev1.ListMessagesRequest{ConversationId: unknown}))
	if sendErr != nil && unknownErr != nil && sendErr.Error() != strings.ReplaceAll(unknownErr.Error(), unknown, support) {
		t.Errorf("the refusal to send tells %q; a conversation that does not exist tells %q", sendErr, unknownErr)
	}

	testenv.CheckFor(t, 30*time.Second, 20*time.Millisecond, func() error {
		all, _, err := listAll(ctx, f.user(t, alice), support, 0)
		if err != nil {
			return err
		}
		var got []string
		for _, m := range all {
			got = append(got, m.GetSenderId())
		}
		if want := []string{alice, alice, bob, agent}; !slices.Equal(got, want) {
			return fmt.Errorf("the conversation holds messages from %v, want %v", got, want)
		}
		return nil
	})
	// carol is still no participant, and her own conversation is hers.
	_, err = send(ctx, f.user(t, carol), support, "now?")
	wantCode(t, "carol sends to it once its messages are placed", err, connect.CodePermissionDenied)
	if _, err := send(ctx, f.user(t, carol), own, "still mine"); err != nil {
		t.Errorf("carol sends to her own conversation: %v", err)
	}
}

// TestSendMessageMentionedRepliesAtOnce: a user mentioned a moment ago may
// reply before the consumer has placed the message that mentions it (here
// nothing places it: the service does not run), and list the conversation;
// another user may do neither. A conversation whose messages were sent
// before the write side kept their mentions takes replies from the users
// its read model knows as participants.
func TestSendMessageMentionedRepliesAtOnce(t *testing.T) {
	t.Parallel()
	f := newIdleFixture(t)
	ctx := context.Background()
	conversation := uuid.NewString()
	if _, err := send(ctx, f.user(t, alice), conversation, "@bob, a question for you", bob); err != nil {
		t.Fatal(err)
	}
	if _, err := send(ctx, f.user(t, bob), conversation, "here"); err != nil {
		t.Errorf("bob, mentioned, replies at once: %v", err)
	}
	_, err := send(ctx, f.user(t, carol), conversation, "and me")
	wantCode(t, "carol, neither sender nor mentioned, sends", err, connect.CodePermissionDenied)
	if res, err := f.user(t, bob).ListMessages(ctx, connect.NewRequest(&messagev1.ListMessagesRequest{ConversationId: conversation})); err != nil {
		t.Errorf("bob, mentioned, lists the conversation: %v", err)
	} else if len(res.Msg.GetMessages()) != 0 {
		t.Errorf("bob lists %d messages, want none placed", len(res.Msg.GetMessages()))
	}
	_, err = f.user(t, carol).ListMessages(ctx, connect.NewRequest(&messagev1.ListMessagesRequest{ConversationId: conversation}))
	wantCode(t, "carol lists it", err, connect.CodePermissionDenied)
	if n := f.count(t, `SELECT count(*) FROM conversation_messages`) + f.count(t, `SELECT count(*) FROM conversation_participants`); n != 0 {
		t.Fatalf("the read model holds %d rows, want none (nothing places the messages)", n)
	}
	if n := f.count(t, `SELECT count(*) FROM sent_messages`) + f.count(t, `SELECT count(*) FROM outbox`); n != 4 {
		t.Errorf("%d sent_messages and outbox rows, want alice's and bob's messages' (4)", n)
	}

	// Sent before the migration that keeps mentions: dave's message, placed,
	// mentioned alice; the write side does not know it.
	old := uuid.NewString()
	if _, err := f.pool.Exec(ctx, `INSERT INTO sent_messages (message_id, sender_id, conversation_id, request_hash, sent_at)
		VALUES ($1, $2, $3, '\x00', now())`, uuid.NewString(), dave, old); err != nil {
		t.Fatal(err)
	}
	if _, err := f.pool.Exec(ctx, `INSERT INTO conversation_participants (conversation_id, user_id) VALUES ($1, $2), ($1, $3)`, old, dave, alice); err != nil {
		t.Fatal(err)
	}
	if _, err := send(ctx, f.user(t, alice), old, "I was mentioned before"); err != nil {
		t.Errorf("alice, a participant in the read model, sends: %v", err)
	}
	_, err = send(ctx, f.user(t, carol), old, "and me")
	wantCode(t, "carol sends to a conversation of before the migration", err, connect.CodePermissionDenied)
}

// TestSendMessageStartRace: of two first messages sent to a new
// conversation at once, one starts it. carol's first message waits for
// alice's, which another transaction holds uncommitted; once it commits,
// carol's is checked again, against it, and refused, and nothing of hers
// is written. When alice's rolls back instead, carol's starts the
// conversation.
func TestSendMessageStartRace(t *testing.T) {
	t.Parallel()
	f := newIdleFixture(t)
	for _, commit := range []bool{true, false} {
		race(t, f, commit)
	}
	if n := f.count(t, `SELECT count(*) FROM outbox`); n != 1 {
		t.Errorf("%d outbox rows, want carol's one message's", n)
	}
}

// race sends carol's first message to a new conversation while another
// transaction holds alice's uncommitted, then commits or rolls that back.
func race(t *testing.T, f *fixture, commit bool) {
	t.Helper()
	ctx := context.Background()
	conversation := uuid.NewString()
	tx, err := f.pool.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback(ctx) //nolint:errcheck // after Commit, or on a failure: the test's connection back to its pool
	// alice's first message, as SendMessage writes it.
	if _, err := tx.Exec(ctx, `INSERT INTO sent_messages (message_id, sender_id, conversation_id, request_hash, sent_at, starts_conversation)
		VALUES ($1, $2, $3, '\x00', now(), true)`, uuid.NewString(), alice, conversation); err != nil {
		t.Fatal(err)
	}
	var xid string
	if err := tx.QueryRow(ctx, `SELECT (pg_current_xact_id()::text::bigint % 4294967296)::text`).Scan(&xid); err != nil {
		t.Fatal(err)
	}
	sent := make(chan error, 1)
	c := f.user(t, carol)
	go func() {
		_, err := send(ctx, c, conversation, "first!")
		sent <- err
	}()
	testenv.CheckFor(t, 30*time.Second, 10*time.Millisecond, func() error {
		select {
		case err := <-sent:
			t.Fatalf("carol's message did not wait for alice's uncommitted first message: %v", err)
		default:
		}
		var waiting bool
		err := f.pool.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM pg_locks WHERE locktype = 'transactionid' AND transactionid::text = $1 AND NOT granted)`,
			xid).Scan(&waiting)
		if err == nil && !waiting {
			err = fmt.Errorf("carol's message does not wait for alice's")
		}
		return err
	})
	if commit {
		err = tx.Commit(ctx)
	} else {
		err = tx.Rollback(ctx)
	}
	if err != nil {
		t.Fatal(err)
	}
	err = <-sent
	carols := f.count(t, fmt.Sprintf(`SELECT count(*) FROM sent_messages WHERE conversation_id = '%s' AND sender_id = '%s'`, conversation, carol))
	if commit {
		wantCode(t, "carol's first message, after alice's committed", err, connect.CodePermissionDenied)
		if carols != 0 {
			t.Errorf("%d messages of carol's written, want none", carols)
		}
	} else if err != nil || carols != 1 {
		t.Errorf("carol's first message, after alice's rolled back: %v, %d written; want it to start the conversation", err, carols)
	}
}
