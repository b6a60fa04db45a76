package message

import (
	"bytes"
	"context"
	"fmt"
	"time"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	messageeventsv1 "github.com/shopbus/shopbus/gen/go/chat/message/v1"
	messagev1 "github.com/shopbus/shopbus/gen/go/shopbus/message/v1"
	"github.com/shopbus/shopbus/internal/messaging"
	"github.com/shopbus/shopbus/internal/servicekit"
)

// SendMessage sends req's message as sender (the caller's user id): the
// message's record and its message.sent event (in the outbox) are written
// by one statement, and the message is returned as sent, with seq 0 (the
// consumer places it). req must be valid (the Connect handler's validation
// interceptor sees to it). A retry, the same request from the same sender
// with a message_id seen before, returns that message with replayed true
// and writes nothing; any other request with that message_id fails with
// ErrMessageIDReused, and writes nothing either.
func (s *Service) SendMessage(ctx context.Context, sender string, req *messagev1.SendMessageRequest) (m *messagev1.Message, replayed bool, err error) {
	sender, req, err = canonical(sender, req)
	if err != nil {
		return nil, false, err
	}
	hash, err := servicekit.RequestHash(req)
	if err != nil {
		return nil, false, err
	}
	// Microseconds, PostgreSQL's precision: a replay returns the time the
	// first answer did.
	now := time.Now().UTC().Truncate(time.Microsecond)
	m = sentMessage(sender, req, now)
	env, err := s.NewEvent(ctx, &messageeventsv1.MessageSent{
		MessageId: m.GetMessageId(), ConversationId: m.GetConversationId(), SenderId: sender,
		Body: m.GetBody(), MentionedUserIds: m.GetMentionedUserIds(), SentAt: m.GetSentAt(),
	})
	if err != nil {
		return nil, false, fmt.Errorf("send message: %w", err)
	}
	row, end, err := messaging.NewOutboxRow(ctx, env)
	if err != nil {
		return nil, false, fmt.Errorf("send message: %w", err)
	}
	// The record and its event in one statement: atomic without BEGIN and
	// COMMIT. A message_id seen before inserts no record, so no event.
	var inserted bool
	err = s.Pool.QueryRow(ctx, `WITH m AS (
			INSERT INTO sent_messages (message_id, sender_id, conversation_id, request_hash, sent_at)
			VALUES ($1, $2, $3, $4, $5)
			ON CONFLICT (message_id) DO NOTHING
			RETURNING message_id
		), e AS (
			INSERT INTO outbox (id, subject, envelope) SELECT $6, $7, $8 FROM m
		)
		SELECT EXISTS (SELECT 1 FROM m)`,
		req.GetMessageId(), sender, req.GetConversationId(), hash, now, row.ID, row.Subject, row.Envelope).Scan(&inserted)
	end(err)
	if err != nil {
		return nil, false, fmt.Errorf("send message: insert message: %w", err)
	}
	if inserted {
		messaging.WakeRelays(s.Pool)
		return m, false, nil
	}
	// A retry, or another message under the same id.
	var priorSender string
	var priorHash []byte
	var sentAt time.Time
	err = s.Pool.QueryRow(ctx, `SELECT sender_id::text, request_hash, sent_at FROM sent_messages WHERE message_id = $1`,
		req.GetMessageId()).Scan(&priorSender, &priorHash, &sentAt)
	if err != nil {
		return nil, false, fmt.Errorf("send message: read the message of message_id: %w", err)
	}
	if priorSender != sender || !bytes.Equal(priorHash, hash) {
		// Nothing of the other message is told: it may be another user's.
		return nil, false, fmt.Errorf("%w: %s (send a new message with a new message_id)", ErrMessageIDReused, req.GetMessageId())
	}
	return sentMessage(sender, req, sentAt), true, nil
}

// canonical returns sender and req with every UUID in its canonical
// (lower-case, hyphenated) form: one message, one conversation, one user,
// however a client spells them.
func canonical(sender string, req *messagev1.SendMessageRequest) (string, *messagev1.SendMessageRequest, error) {
	sender, err := parse("sender", sender)
	if err != nil {
		return "", nil, err
	}
	req = proto.CloneOf(req)
	if req.MessageId, err = parse("message_id", req.GetMessageId()); err != nil {
		return "", nil, err
	}
	if req.ConversationId, err = parse("conversation_id", req.GetConversationId()); err != nil {
		return "", nil, err
	}
	for i, u := range req.GetMentionedUserIds() {
		if req.MentionedUserIds[i], err = parse("mentioned_user_ids", u); err != nil {
			return "", nil, err
		}
	}
	return sender, req, nil
}

// sentMessage is req's message, sent by sender at at, not placed yet.
func sentMessage(sender string, req *messagev1.SendMessageRequest, at time.Time) *messagev1.Message {
	return &messagev1.Message{
		MessageId: req.GetMessageId(), ConversationId: req.GetConversationId(), SenderId: sender,
		Body: req.GetBody(), MentionedUserIds: req.GetMentionedUserIds(), SentAt: timestamppb.New(at),
	}
}
