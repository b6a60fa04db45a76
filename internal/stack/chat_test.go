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

	messagev1 "github.com/shopbus/shopbus/gen/go/shopbus/message/v1"
	"github.com/shopbus/shopbus/gen/go/shopbus/message/v1/messagev1connect"
	"github.com/shopbus/shopbus/internal/auth"
	"github.com/shopbus/shopbus/internal/testenv"
)

// chatClient is a MessageService client through the gateway, calling as p.
func chatClient(t *testing.T, s *testStack, p auth.Principal) messagev1connect.MessageServiceClient {
	return messagev1connect.NewMessageServiceClient(http.DefaultClient, s.URL(), as(t, p))
}

// TestChatThroughGateway: chat end to end, through the gateway with bearer
// tokens, the outbox, JetStream and the message service's consumer. The
// sender is the token's user; a retry is replayed; the conversation is
// listed in order by a mentioned user and an admin; another user may
// neither list it nor send to it, and bad input is INVALID_ARGUMENT with
// nothing sent.
func TestChatThroughGateway(t *testing.T) {
	t.Parallel()
	s := startStack(t)
	ctx := context.Background()
	const bob, carol = "9a8b7c6d-5e4f-4a3b-8c2d-1e0f9a8b7c6d", "0c1d2e3f-4a5b-4c6d-8e7f-8a9b0c1d2e3f"
	alice := chatClient(t, s, auth.Principal{Subject: customer})
	conversation := uuid.NewString()
	var first *messagev1.SendMessageRequest
	for i := 1; i <= 3; i++ {
		req := &messagev1.SendMessageRequest{MessageId: uuid.NewString(), ConversationId: conversation, Body: fmt.Sprintf("message %d", i)}
		if i == 1 {
			req.MentionedUserIds, first = []string{bob}, req
		}
		res, err := alice.SendMessage(ctx, connect.NewRequest(req))
		if err != nil {
			t.Fatal(err)
		}
		if res.Msg.GetMessage().GetSenderId() != customer {
			t.Fatalf("sent by %q, want the token's user %s", res.Msg.GetMessage().GetSenderId(), customer)
		}
	}
	if res, err := alice.SendMessage(ctx, connect.NewRequest(first)); err != nil || !res.Msg.GetReplayed() {
		t.Errorf("a retry: %v, %v; want it replayed", res, err)
	}

	for who, c := range map[string]messagev1connect.MessageServiceClient{
		"bob, mentioned": chatClient(t, s, auth.Principal{Subject: bob}),
		"an admin":       chatClient(t, s, admin),
	} {
		testenv.CheckFor(t, 30*time.Second, 50*time.Millisecond, func() error {
			var got []string
			token := ""
			for {
				res, err := c.ListMessages(ctx, connect.NewRequest(&messagev1.ListMessagesRequest{ConversationId: conversation, PageSize: 2, PageToken: token}))
				if err != nil {
					return fmt.Errorf("%s: %w", who, err)
				}
				for _, m := range res.Msg.GetMessages() {
					got = append(got, fmt.Sprintf("%d:%s", m.GetSeq(), m.GetBody()))
				}
				if token = res.Msg.GetNextPageToken(); token == "" {
					break
				}
			}
			if want := "1:message 1 2:message 2 3:message 3"; strings.Join(got, " ") != want {
				return fmt.Errorf("%s lists %q, want %q", who, got, want)
			}
			return nil
		})
	}
	_, err := chatClient(t, s, auth.Principal{Subject: carol}).ListMessages(ctx, connect.NewRequest(&messagev1.ListMessagesRequest{ConversationId: conversation}))
	wantCode(t, "carol lists a conversation she is not in", err, connect.CodePermissionDenied)
	_, err = chatClient(t, s, auth.Principal{Subject: carol}).SendMessage(ctx, connect.NewRequest(&messagev1.SendMessageRequest{
		MessageId: uuid.NewString(), ConversationId: conversation, Body: "let me in", MentionedUserIds: []string{carol}}))
	wantCode(t, "carol sends to a conversation she is not in", err, connect.CodePermissionDenied)
	_, err = messagev1connect.NewMessageServiceClient(http.DefaultClient, s.URL()).ListMessages(ctx,
		connect.NewRequest(&messagev1.ListMessagesRequest{ConversationId: conversation}))
	wantCode(t, "no token", err, connect.CodeUnauthenticated)
	_, err = alice.SendMessage(ctx, connect.NewRequest(&messagev1.SendMessageRequest{MessageId: uuid.NewString(), ConversationId: conversation}))
	wantCode(t, "an empty body", err, connect.CodeInvalidArgument)
	_, err = alice.ListMessages(ctx, connect.NewRequest(&messagev1.ListMessagesRequest{ConversationId: conversation, PageToken: "tampered"}))
	wantCode(t, "a tampered page token", err, connect.CodeInvalidArgument)
	if n := s.count(t, "message", "SELECT count(*) FROM sent_messages"); n != 3 {
		t.Errorf("%d messages sent, want 3", n)
	}
}

// TestREADMEBufCurlChat runs README.md's chat lines, SendMessage and
// ListMessages, with `buf curl` as the demo customer against a stack.
func TestREADMEBufCurlChat(t *testing.T) {
	t.Parallel()
	if testing.Short() {
		t.Skip("runs buf")
	}
	readme, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	send := readmeLine(t, readme, "/shopbus.message.v1.MessageService/SendMessage")
	list := readmeLine(t, readme, "/shopbus.message.v1.MessageService/ListMessages")
	s := startStack(t)
	tokenFile := filepath.Join(t.TempDir(), "customer.jwt")
	if err := os.WriteFile(tokenFile, []byte(token(t, auth.Principal{Subject: customer})+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	local := strings.NewReplacer("http://127.0.0.1:8080", s.URL(), ".data/auth/customer.jwt", tokenFile)
	run := func(line string) []byte {
		t.Helper()
		cmd := exec.Command("sh", "-c", local.Replace(line))
		cmd.Dir = "../.."
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("%s: %v\n%s", line, err, out)
		}
		return out
	}
	var sent struct {
		Message struct {
			MessageID string `json:"messageId"`
			SenderID  string `json:"senderId"`
		} `json:"message"`
		Replayed bool `json:"replayed"`
	}
	for i, replayed := range []bool{false, true} { // the README's line, run twice: a retry
		out := run(send)
		if err := json.Unmarshal(out, &sent); err != nil || sent.Message.SenderID != customer || sent.Replayed != replayed {
			t.Fatalf("SendMessage #%d through buf curl answered %s (%v); want the demo customer's message, replayed %v", i+1, out, err, replayed)
		}
	}
	testenv.CheckFor(t, 30*time.Second, 50*time.Millisecond, func() error {
		var listed struct {
			Messages []struct {
				MessageID string `json:"messageId"`
				Seq       string `json:"seq"`
			} `json:"messages"`
		}
		out := run(list)
		if err := json.Unmarshal(out, &listed); err != nil {
			return fmt.Errorf("ListMessages through buf curl printed %s: %w", out, err)
		}
		if len(listed.Messages) != 1 || listed.Messages[0].MessageID != sent.Message.MessageID || listed.Messages[0].Seq != "1" {
			return fmt.Errorf("ListMessages through buf curl answered %s, want the message sent, seq 1", out)
		}
		return nil
	})
}
