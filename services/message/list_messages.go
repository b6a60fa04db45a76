package message

import (
	"context"
	"encoding/base64"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"google.golang.org/protobuf/types/known/timestamppb"

	messagev1 "github.com/shopbus/shopbus/gen/go/shopbus/message/v1"
	"github.com/shopbus/shopbus/internal/servicekit"
)

// Page sizes of ListMessages.
const (
	// DefaultPageSize is the page size of a request that names none.
	DefaultPageSize = 50
	// MaxPageSize is the largest page (the request's rule refuses more).
	MaxPageSize = 200
)

// Reader is who lists a conversation: a user (its id, a UUID), or an admin,
// who may read any conversation.
type Reader struct {
	// UserID is the user's id; it may be empty for an admin.
	UserID string
	// Admin reports the admin role.
	Admin bool
}

// ListMessages returns a page of the conversation's messages, in their
// order (ascending seq), and the token of the next page ("" on the last).
// A reader who is no participant of the conversation (ErrNotParticipant)
// and no admin is refused whether or not the conversation exists; an admin
// gets ErrNotFound for a conversation without messages. A user who sent
// to the conversation, or was mentioned in it, a moment ago is a
// participant before the consumer has placed that message: its page may
// not hold the message yet, or be empty. A page token that is not the
// next_page_token of this conversation's previous page fails with
// ErrBadPageToken.
func (s *Service) ListMessages(ctx context.Context, reader Reader, req *messagev1.ListMessagesRequest) ([]*messagev1.Message, string, error) {
	conversation, err := parse("conversation_id", req.GetConversationId())
	if err != nil {
		return nil, "", err
	}
	size := int(req.GetPageSize())
	switch {
	case size == 0:
		size = DefaultPageSize
	case size > MaxPageSize:
		size = MaxPageSize
	}
	var after int64
	if tok := req.GetPageToken(); tok != "" {
		if after, err = decodePageToken(tok, conversation); err != nil {
			return nil, "", err
		}
	}
	if err := s.mayRead(ctx, reader, conversation); err != nil {
		return nil, "", err
	}
	rows, err := s.Pool.Query(ctx, `SELECT message_id::text, conversation_id::text, seq, sender_id::text, body,
			mentioned_user_ids::text[], sent_at
		FROM conversation_messages WHERE conversation_id = $1 AND seq > $2 ORDER BY seq LIMIT $3`,
		conversation, after, size+1)
	if err != nil {
		return nil, "", fmt.Errorf("list messages: %w", err)
	}
	return servicekit.Page(rows, size, scanMessage, func(last *messagev1.Message) string {
		return encodePageToken(last.GetConversationId(), last.GetSeq())
	}, "list messages")
}

// mayRead returns nil if reader may read the conversation: an admin, if it
// has messages (ErrNotFound otherwise); a user, if it is a participant,
// as the read model knows or the write side does (the read model may not
// have placed the message that made it one yet).
func (s *Service) mayRead(ctx context.Context, reader Reader, conversation string) error {
	if reader.Admin {
		var exists bool
		err := s.Pool.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM conversation_messages WHERE conversation_id = $1)`, conversation).Scan(&exists)
		if err != nil {
			return fmt.Errorf("list messages: %w", err)
		}
		if !exists {
			return fmt.Errorf("%w: %s", ErrNotFound, conversation)
		}
		return nil
	}
	user, err := parse("reader", reader.UserID)
	if err != nil {
		return fmt.Errorf("%w: %s", ErrNotParticipant, conversation)
	}
	var participant bool
	err = s.Pool.QueryRow(ctx, `SELECT `+participantSQL("$1", "$2"), conversation, user).Scan(&participant)
	if err != nil {
		return fmt.Errorf("list messages: %w", err)
	}
	if !participant {
		return fmt.Errorf("%w: %s (its participants are who sent to it or was mentioned in it)", ErrNotParticipant, conversation)
	}
	return nil
}

func scanMessage(row pgx.Row) (*messagev1.Message, error) {
	m := &messagev1.Message{}
	var sent time.Time
	if err := row.Scan(&m.MessageId, &m.ConversationId, &m.Seq, &m.SenderId, &m.Body, &m.MentionedUserIds, &sent); err != nil {
		return nil, err
	}
	m.SentAt = timestamppb.New(sent)
	return m, nil
}

// pageTokenPrefix begins every page token (before base64): the token's
// format, so that a later one can be told apart.
const pageTokenPrefix = "m1|"

// encodePageToken is the token of the page after seq in conversation. It
// is opaque to clients, not secret: it names a position in a conversation
// the caller may read, and every page checks that again.
func encodePageToken(conversation string, seq int64) string {
	return base64.RawURLEncoding.EncodeToString([]byte(pageTokenPrefix + conversation + "|" + strconv.FormatInt(seq, 10)))
}

// decodePageToken returns the seq a token of conversation's pages
// continues after, or ErrBadPageToken.
func decodePageToken(tok, conversation string) (int64, error) {
	b, err := base64.RawURLEncoding.DecodeString(tok)
	if err != nil {
		return 0, fmt.Errorf("%w: not a token ListMessages gave", ErrBadPageToken)
	}
	rest, ok := strings.CutPrefix(string(b), pageTokenPrefix)
	if !ok {
		return 0, fmt.Errorf("%w: not a token ListMessages gave", ErrBadPageToken)
	}
	conv, seqText, ok := strings.Cut(rest, "|")
	if !ok || conv != conversation {
		return 0, fmt.Errorf("%w: not a token of conversation %s's pages", ErrBadPageToken, conversation)
	}
	seq, err := strconv.ParseInt(seqText, 10, 64)
	if err != nil || seq <= 0 || strconv.FormatInt(seq, 10) != seqText {
		return 0, fmt.Errorf("%w: not a token ListMessages gave", ErrBadPageToken)
	}
	return seq, nil
}
