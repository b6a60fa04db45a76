package message

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	messageeventsv1 "github.com/shopbus/shopbus/gen/go/chat/message/v1"
	messagev1 "github.com/shopbus/shopbus/gen/go/shopbus/message/v1"
	"github.com/shopbus/shopbus/internal/messaging"
	"github.com/shopbus/shopbus/internal/servicekit"
)

// Sender is who sends a message: a user (its id, a UUID), who may have the
// admin role.
type Sender struct {
	// UserID is the user's id, the message's sender.
	UserID string
	// Admin reports the admin role: an admin may send to any conversation.
	Admin bool
}

// startTries is how many times at most SendMessage runs the statement that
// checks and writes a message. A message that lost the start of a new
// conversation to another first message sent at once
// (sent_messages_one_start) is checked once more, and that settles it: the
// conversation has a message then.
const startTries = 2

// SendMessage sends req's message as sender: the message's record and its
// message.sent event (in the outbox) are written by one statement, and the
// message is returned as sent, with seq 0 (the consumer places it). req
// must be valid (the Connect handler's validation interceptor sees to it).
//
// Anyone may start a conversation, a conversation_id no message was sent
// to. A conversation that has messages takes them only from its
// participants (who sent to it or was mentioned in it, see participantSQL)
// and admins; anyone else gets ErrNotParticipant, in the words
// ListMessages refuses a non-participant with (nothing more of the
// conversation is told), and nothing is written. The check is part of the
// statement that writes the message (insertMessage), not a read before it.
// Of two first messages sent to a conversation at once, one starts it and
// the other is checked again, against it.
//
// A retry, the same request from the same sender with a message_id seen
// before, returns that message with replayed true and writes nothing; any
// other request with that message_id fails with ErrMessageIDReused, and
// writes nothing either.
//
// Each sender is held to the service's Limits: past its rate, SendMessage
// fails with ErrRateLimited in a servicekit.RateLimitedError (when to
// retry) and writes nothing. Admins are held too, as the order service
// holds them. The token is taken before the message_id is looked up, the
// order the order service's CreateOrder takes its token and its
// idempotency key in: telling a retry needs the database, which the limit
// is there to spare, so a retry counts against the limit, and a retry
// refused for it returns the message once retried after the wait.
func (s *Service) SendMessage(ctx context.Context, sender Sender, req *messagev1.SendMessageRequest) (m *messagev1.Message, replayed bool, err error) {
	user, req, err := canonical(sender.UserID, req)
	if err != nil {
		return nil, false, err
	}
	// The canonical id: one user, one bucket, however its id is cased.
	if err := s.limiter.allow(user, time.Now()); err != nil {
		return nil, false, err
	}
	hash, err := servicekit.RequestHash(req)
	if err != nil {
		return nil, false, err
	}
	// Microseconds, PostgreSQL's precision: a replay returns the time the
	// first answer did.
	now := time.Now().UTC().Truncate(time.Microsecond)
	m = sentMessage(user, req, now)
	env, err := s.NewEvent(ctx, &messageeventsv1.MessageSent{
		MessageId: m.GetMessageId(), ConversationId: m.GetConversationId(), SenderId: user,
		Body: m.GetBody(), MentionedUserIds: m.GetMentionedUserIds(), SentAt: m.GetSentAt(),
	})
	if err != nil {
		return nil, false, fmt.Errorf("send message: %w", err)
	}
	row, end, err := messaging.NewOutboxRow(ctx, env)
	if err != nil {
		return nil, false, fmt.Errorf("send message: %w", err)
	}
	var inserted, allowed bool
	for try := 1; ; try++ {
		inserted, allowed, err = s.insertMessage(ctx, sender.Admin, user, req, hash, now, row)
		if try < startTries && isLostStart(err) {
			continue
		}
		break
	}
	end(err)
	if err != nil {
		return nil, false, fmt.Errorf("send message: insert message: %w", err)
	}
	if inserted {
		messaging.WakeRelays(s.Pool)
		return m, false, nil
	}
	// A retry, another message under the same id, or a sender the
	// conversation does not take.
	var priorSender string
	var priorHash []byte
	var sentAt time.Time
	err = s.Pool.QueryRow(ctx, `SELECT sender_id::text, request_hash, sent_at FROM sent_messages WHERE message_id = $1`,
		req.GetMessageId()).Scan(&priorSender, &priorHash, &sentAt)
	if errors.Is(err, pgx.ErrNoRows) && !allowed {
		// The words ListMessages refuses a non-participant with, whether or
		// not the conversation exists: nothing of it is told (that the
		// message is refused shows it has messages, as starting it would
		// show it had none).
		return nil, false, fmt.Errorf("%w: %s (its participants are who sent to it or was mentioned in it)", ErrNotParticipant, req.GetConversationId())
	}
	if err != nil {
		return nil, false, fmt.Errorf("send message: read the message of message_id: %w", err)
	}
	if priorSender != user || !bytes.Equal(priorHash, hash) {
		// Nothing of the other message is told: it may be another user's.
		return nil, false, fmt.Errorf("%w: %s (send a new message with a new message_id)", ErrMessageIDReused, req.GetMessageId())
	}
	return sentMessage(user, req, sentAt), true, nil
}

// insertMessage writes req's message, sent by user, and its outbox row in
// one statement (atomic without BEGIN and COMMIT), if the conversation
// takes it: it has no message yet (the message starts it), or the user is
// an admin or a participant, as the statement's snapshot shows. allowed
// reports that check; inserted, that the message was written, which it is
// not when its message_id was seen before (so no event either).
func (s *Service) insertMessage(ctx context.Context, admin bool, user string, req *messagev1.SendMessageRequest, hash []byte, now time.Time, row messaging.OutboxRow) (inserted, allowed bool, err error) {
	err = s.Pool.QueryRow(ctx, `WITH c AS (
			SELECT NOT EXISTS (SELECT 1 FROM sent_messages WHERE conversation_id = $3)
				AND NOT EXISTS (SELECT 1 FROM conversation_participants WHERE conversation_id = $3) AS starts
		), a AS (
			SELECT c.starts, c.starts OR $10::boolean OR `+participantSQL("$3", "$2")+` AS allowed FROM c
		), m AS (
			INSERT INTO sent_messages (message_id, sender_id, conversation_id, request_hash, sent_at, mentioned_user_ids, starts_conversation)
			SELECT $1, $2, $3, $4, $5, coalesce($9::uuid[], '{}'), a.starts FROM a WHERE a.allowed
			ON CONFLICT (message_id) DO NOTHING
			RETURNING message_id
		), e AS (
			INSERT INTO outbox (id, subject, envelope) SELECT $6, $7, $8 FROM m
		)
		SELECT EXISTS (SELECT 1 FROM m), (SELECT allowed FROM a)`,
		req.GetMessageId(), user, req.GetConversationId(), hash, now, row.ID, row.Subject, row.Envelope,
		req.GetMentionedUserIds(), admin).Scan(&inserted, &allowed)
	return inserted, allowed, err
}

// isLostStart reports whether err is the unique violation of
// sent_messages_one_start: the message would have started its
// conversation, but another first message, sent at once, did.
func isLostStart(err error) bool {
	var pgErr *pgconn.PgError
	return errors.As(err, &pgErr) && pgErr.Code == "23505" && pgErr.ConstraintName == "sent_messages_one_start"
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
