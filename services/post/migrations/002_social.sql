-- Social Pulse: posts, who follows whom, the feeds the fan-out writes, and
-- the SKUs the catalog has named. It replaces the scaffold's read model
-- (post_activity, which no release read).
DROP TABLE IF EXISTS post_activity;

-- Every post (publish_post.go writes it with its post.published event's
-- outbox row; the fan-out inserts it from the event, which changes nothing
-- then). idempotency_key and request_hash tell a retry of PublishPost from
-- a different post; they are NULL for a post known only from its event.
CREATE TABLE posts (
    post_id         uuid PRIMARY KEY,
    author_id       uuid NOT NULL,
    body            text NOT NULL,
    hashtags        text[] NOT NULL DEFAULT '{}',
    product_sku     text NOT NULL DEFAULT '',
    visibility      text NOT NULL CHECK (visibility IN ('PUBLIC', 'FOLLOWERS')),
    published_at    timestamptz NOT NULL,
    idempotency_key text,
    request_hash    bytea,
    UNIQUE (author_id, idempotency_key)
);

-- follower_id follows followee_id (follow_user.go, unfollow_user.go).
CREATE TABLE follows (
    follower_id uuid NOT NULL,
    followee_id uuid NOT NULL CHECK (followee_id <> follower_id),
    followed_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (follower_id, followee_id)
);
-- The fan-out reads an author's followers.
CREATE INDEX follows_by_followee ON follows (followee_id, follower_id);

-- One row per post in each feed it reached (fan_out_post.go): its author's
-- and its author's followers' when the event was applied. GetFeed reads a
-- reader's newest first.
CREATE TABLE feed_entries (
    reader_id    uuid NOT NULL,
    post_id      uuid NOT NULL REFERENCES posts (post_id),
    published_at timestamptz NOT NULL,
    PRIMARY KEY (reader_id, post_id)
);
CREATE INDEX feed_entries_by_time ON feed_entries (reader_id, published_at DESC, post_id DESC);

-- The SKUs a post may review: those the inventory service has priced
-- (inventory.priced, keep_catalog.go), event-carried state, so that
-- PublishPost checks a SKU without calling the inventory service.
CREATE TABLE products (
    sku         text PRIMARY KEY,
    known_since timestamptz NOT NULL DEFAULT now()
);
