package message

import (
	"context"
	"errors"
	"fmt"

	"github.com/jackc/pgx/v5"

	messageeventsv1 "github.com/shopbus/shopbus/gen/go/chat/message/v1"
	"github.com/shopbus/shopbus/internal/messaging"
)

// MessageSentConsumer is the service's consumer of message.sent. It is
// key-based, keyed by conversation id: the messages of one conversation
// are placed one at a time, in the order they were published.
func MessageSentConsumer() messaging.ConsumerConfig {
	return messaging.KeyBasedConsumer("message-conversations", "chat.message.sent")
}

// ApplyMessageSent places a batch of message.sent (one partition's, in
// stream order) in their conversations, in one transaction, each event
// once: a message gets the next position (seq) of its conversation, and its
// sender and mentioned users become participants. A redelivered event, or
// another event of a message already placed (the same message_id), changes
// nothing. An event that is no message.sent, or that reuses the id of a
// message of another conversation or sender, is dead-lettered alone.
func (s *Service) ApplyMessageSent(ctx context.Context, batch []*messaging.Delivery) error {
	return messaging.OnceBatch(ctx, s.Events(), MessageSentConsumer().Durable, batch, func(ctx context.Context, tx pgx.Tx, d *messaging.Delivery) error {
		m, ok := d.Event.(*messageeventsv1.MessageSent)
		if !ok {
			return messaging.Permanent(fmt.Errorf("message: unexpected event %s", d.Spec))
		}
		return place(ctx, tx, m, d.Envelope.GetId())
	})
}

// place appends m to its conversation's read model in tx, unless a message
// with its id is there already.
func place(ctx context.Context, tx pgx.Tx, m *messageeventsv1.MessageSent, eventID string) error {
	// The next seq of the conversation: its key's events are applied one at
	// a time; should two consumers ever race (a partition's handover), the
	// primary key (conversation_id, seq) fails one, which is retried.
	var placed bool
	err := tx.QueryRow(ctx, `WITH m AS (
			INSERT INTO conversation_messages (conversation_id, seq, message_id, sender_id, body, mentioned_user_ids, sent_at, event_id)
			SELECT $1, coalesce(max(seq), 0) + 1, $2, $3, $4, coalesce($5::uuid[], '{}'), $6, $7 FROM conversation_messages WHERE conversation_id = $1
			ON CONFLICT (message_id) DO NOTHING
			RETURNING conversation_id
		), p AS (
			INSERT INTO conversation_participants (conversation_id, user_id)
			SELECT DISTINCT m.conversation_id, u FROM m, unnest($3::uuid || coalesce($5::uuid[], '{}')) AS u
			ON CONFLICT DO NOTHING
		)
		SELECT EXISTS (SELECT 1 FROM m)`,
		m.GetConversationId(), m.GetMessageId(), m.GetSenderId(), m.GetBody(), m.GetMentionedUserIds(), m.GetSentAt().AsTime(), eventID).Scan(&placed)
	if err != nil {
		return fmt.Errorf("place message %s: %w", m.GetMessageId(), err)
	}
	if placed {
		return nil
	}
	// Placed before, by another event of the same message: nothing to do,
	// unless the id is another message's.
	var same bool
	err = tx.QueryRow(ctx, `SELECT conversation_id = $2 AND sender_id = $3 FROM conversation_messages WHERE message_id = $1`,
		m.GetMessageId(), m.GetConversationId(), m.GetSenderId()).Scan(&same)
	if errors.Is(err, pgx.ErrNoRows) {
		return fmt.Errorf("place message %s: neither placed nor found", m.GetMessageId())
	}
	if err != nil {
		return fmt.Errorf("place message %s: %w", m.GetMessageId(), err)
	}
	if !same {
		return messaging.Permanent(fmt.Errorf("%w: %s is placed in another conversation or from another sender", ErrMessageIDReused, m.GetMessageId()))
	}
	return nil
}
