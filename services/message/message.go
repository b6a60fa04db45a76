// Package message is the message service (chat/message): customer chat.
// SendMessage records a message sent by the authenticated caller and
// writes its message.sent event to the outbox in one statement; the
// service's own key-based consumer places each message.sent in its
// conversation's read model (a per-conversation sequence, exactly once per
// event), and ListMessages pages through a conversation in that order
// (CQRS). Events of one conversation share a partition, so they are placed
// in the order they were published.
//
// Who may do what: the sender of a message is the caller (its bearer
// token's subject, a user id), never a field of the request. A
// conversation's participants are the users who sent to it or were
// mentioned in it. Anyone may start a conversation: its first message makes
// the sender and the users it mentions its participants. Once it has a
// message, only its participants and admins may send to it, and only they
// may list it; anyone else is refused (ErrNotParticipant, whose words tell
// nothing of the conversation: ListMessages refuses the same whether or
// not it exists) and nothing is written. The write side knows the
// participants at once (sent_messages keeps each message's sender and
// mentions; the check is part of the statement that writes the message),
// so a user mentioned a moment ago may reply before the read model has
// placed the message.
//
// How fast: each user sends at most Limits allow (a token bucket per user,
// limits.go); past it, SendMessage is refused with ErrRateLimited and a
// wait (ResourceExhausted with Retry-After at the edge), and nothing is
// written.
//
// What it keeps (docs/governance.md, Retention): every message's sender,
// conversation, mentions and request hash (sent_messages, which decides who
// may send to a conversation) and its body in its conversation
// (conversation_messages, conversation_participants), for as long as the
// database is kept. No retention is set: how long chat history is kept is
// the chat team's decision still to take, and pruning must then remove a
// conversation whole, its sent_messages rows included, or a stranger could
// start again a conversation that has lost its first message.
//
// Use cases: send_message.go, apply_message_sent.go (the consumer),
// list_messages.go; limits.go bounds how fast a user sends; handler.go maps
// them onto the Connect API and domain errors onto Connect codes.
package message

import (
	"context"
	"errors"
	"fmt"

	"github.com/google/uuid"

	"github.com/shopbus/shopbus/internal/messaging"
	"github.com/shopbus/shopbus/internal/servicekit"
)

// Errors of the message service's use cases.
var (
	// ErrNotFound means a conversation has no message (yet).
	ErrNotFound = errors.New("conversation not found")
	// ErrNotParticipant means the caller neither sent to the conversation
	// nor was mentioned in it, and is no admin.
	ErrNotParticipant = errors.New("not a participant of the conversation")
	// ErrMessageIDReused means a SendMessage carried the id of a message
	// already sent with another conversation, body or mentions, or by
	// another user.
	ErrMessageIDReused = errors.New("message_id already used for a different message")
	// ErrBadPageToken means a page token was not one this service issued
	// for the conversation.
	ErrBadPageToken = errors.New("invalid page_token")
	// ErrInvalidRequest means a request names a user, message or
	// conversation by something that is not a UUID. The Connect handler's
	// validation interceptor refuses such requests before they get here.
	ErrInvalidRequest = errors.New("invalid request")
)

// Service is the message service. Its Runtime holds its pools, its
// JetStream and the event path's settings (servicekit).
type Service struct {
	servicekit.Runtime

	limiter userLimiter // each user's SendMessage bucket
}

// New returns the message service on rt (named "message", its schema migrated
// with services.Migrations("message") and messaging.Migrations), with
// DefaultLimits.
func New(rt servicekit.Runtime) *Service {
	return &Service{Runtime: rt, limiter: newUserLimiter(DefaultLimits)}
}

// SetLimits replaces the service's limits (zero fields take
// DefaultLimits'), forgetting the users' buckets. Call it before serving.
func (s *Service) SetLimits(l Limits) error {
	l = l.WithDefaults()
	if err := l.Validate(); err != nil {
		return err
	}
	s.limiter = newUserLimiter(l)
	return nil
}

// Run relays the outbox and places the message.sent events in their
// conversations until ctx is done.
func (s *Service) Run(ctx context.Context) error {
	return s.Runtime.Run(ctx, []messaging.Subscription{{Config: MessageSentConsumer(), Handler: s.ApplyMessageSent}})
}

// participantSQL is an SQL condition: the user (the query parameter user,
// e.g. "$2") is a participant of the conversation (the parameter
// conversation). It sent to it, or was mentioned in one of its messages, as
// the write side knows (sent_messages, up to date with every statement) or
// the read model does (conversation_participants, which also knows the
// mentions of messages sent before sent_messages kept them).
func participantSQL(conversation, user string) string {
	return fmt.Sprintf(`(EXISTS (SELECT 1 FROM sent_messages WHERE sender_id = %[2]s AND conversation_id = %[1]s)
		OR EXISTS (SELECT 1 FROM conversation_participants WHERE conversation_id = %[1]s AND user_id = %[2]s)
		OR EXISTS (SELECT 1 FROM sent_messages WHERE conversation_id = %[1]s AND %[2]s = ANY (mentioned_user_ids)))`, conversation, user)
}

// parse returns s, the field what of a request, as a canonical UUID
// (lower-case, hyphenated): one user, message or conversation, however a
// client spells it.
func parse(what, s string) (string, error) {
	id, err := uuid.Parse(s)
	if err != nil {
		return "", fmt.Errorf("%w: %s %q is not a UUID", ErrInvalidRequest, what, s)
	}
	return id.String(), nil
}
