-- Chat replaces the scaffold's activity read model (001), which nothing
-- reads any more.
DROP TABLE message_activity;

-- The write side (send_message.go): one row per message sent, by its
-- client-chosen id, so that a retry of SendMessage returns the message it
-- sent and writes nothing; the same id with another request is refused
-- (request_hash). The row and the message.sent outbox row are written by
-- one statement.
CREATE TABLE sent_messages (
    message_id      uuid PRIMARY KEY,
    sender_id       uuid NOT NULL,
    conversation_id uuid NOT NULL,
    request_hash    bytea NOT NULL,   -- sha256 of the SendMessage request
    sent_at         timestamptz NOT NULL
);
-- ListMessages lets a sender read a conversation before the read model
-- has placed its first message.
CREATE INDEX sent_messages_by_sender ON sent_messages (sender_id, conversation_id);

-- The read model (apply_message_sent.go, list_messages.go): the messages of
-- each conversation in the order the consumer placed them (seq 1, 2, 3 …,
-- one message.sent event each, exactly once), and its participants (who
-- sent to it or was mentioned in it), who may read it.
CREATE TABLE conversation_messages (
    conversation_id    uuid NOT NULL,
    seq                bigint NOT NULL CHECK (seq > 0),
    message_id         uuid NOT NULL UNIQUE,
    sender_id          uuid NOT NULL,
    body               text NOT NULL,
    mentioned_user_ids uuid[] NOT NULL DEFAULT '{}',
    sent_at            timestamptz NOT NULL,
    event_id           text NOT NULL,  -- the envelope that placed it
    PRIMARY KEY (conversation_id, seq)
);

CREATE TABLE conversation_participants (
    conversation_id uuid NOT NULL,
    user_id         uuid NOT NULL,
    PRIMARY KEY (conversation_id, user_id)
);
