-- The rest of a post's fan-out (fan_out_post.go): a post.published event
-- writes the feed rows of its author's first followers (fanOutChunk, in
-- follower_id order) in the consumer's transaction, and when there may be
-- more, one row here; the service's fan-out task then writes the followers
-- after after_follower a chunk per transaction, until none is left, and
-- deletes the row. An author with millions of followers so never holds the
-- consumer's transaction, nor its partition, for longer than one chunk.
CREATE TABLE fan_outs (
    post_id        uuid PRIMARY KEY REFERENCES posts (post_id),
    author_id      uuid NOT NULL,
    published_at   timestamptz NOT NULL,
    after_follower uuid NOT NULL,
    queued_at      timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX fan_outs_by_age ON fan_outs (queued_at, post_id);
