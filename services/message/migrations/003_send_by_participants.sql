-- SendMessage admits to a conversation that has messages only its
-- participants and admins (send_message.go), checked in the statement that
-- writes the message. The read model's participants
-- (conversation_participants) are placed a moment after a message is sent,
-- so the write side keeps each message's mentions too: a user mentioned a
-- moment ago may reply at once. Messages sent before this migration mention
-- nobody here; their mentioned users are participants once the consumer has
-- placed them.
ALTER TABLE sent_messages ADD COLUMN mentioned_user_ids uuid[] NOT NULL DEFAULT '{}';

-- One message starts a conversation (the first, sent when it had none). Two
-- first messages sent at once, each finding the conversation empty, cannot
-- both be written: the second waits for the first, fails on this index, and
-- is checked again, as a message to a conversation that has one. Messages
-- sent before this migration start nothing.
ALTER TABLE sent_messages ADD COLUMN starts_conversation boolean NOT NULL DEFAULT false;
CREATE UNIQUE INDEX sent_messages_one_start ON sent_messages (conversation_id) WHERE starts_conversation;

-- The check's look-ups of a conversation's messages: has it any, whom do
-- they mention.
CREATE INDEX sent_messages_by_conversation ON sent_messages (conversation_id);
