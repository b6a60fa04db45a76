package messaging

import (
	"context"
	"errors"
	"fmt"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/shopbus/shopbus/internal/event"
)

// ErrNoEvent means no stored event matches: none in the stream (LastEvent)
// or no published outbox row (Resend).
var ErrNoEvent = errors.New("no such event")

// LastEvent reads the newest event of stream on subject (wildcards
// allowed, e.g. "ecommerce.inventory.adjusted.*.*.<order id>") and decodes
// it as consumer would receive it: a watchdog hands it to the consumer's
// handler when the delivery itself was lost (dead-lettered, expired), and
// the handler's processed_events record makes that idempotent. It wraps
// ErrNoEvent when none matches, and event.ErrMalformed or
// event.ErrInvalid when the stored event cannot be handled.
func LastEvent(ctx context.Context, js jetstream.JetStream, stream, subject, consumer string) (*Delivery, error) {
	st, err := js.Stream(ctx, stream)
	if err != nil {
		return nil, fmt.Errorf("jetstream: stream %s: %w", stream, err)
	}
	raw, err := st.GetLastMsgForSubject(ctx, subject)
	if errors.Is(err, jetstream.ErrMsgNotFound) {
		return nil, fmt.Errorf("%w: none on %s in %s", ErrNoEvent, subject, stream)
	}
	if err != nil {
		return nil, fmt.Errorf("jetstream: last of %s in %s: %w", subject, stream, err)
	}
	meta := &jetstream.MsgMetadata{Sequence: jetstream.SequencePair{Stream: raw.Sequence}, Stream: stream,
		Consumer: consumer, NumDelivered: 1, Timestamp: raw.Time}
	d, err := decodeParts(raw.Subject, raw.Data, raw.Header, meta)
	if err != nil {
		return nil, fmt.Errorf("%s #%d: %w", stream, raw.Sequence, err)
	}
	return d, nil
}

// Resend publishes again a published outbox row of pool's outbox
// (search_path: its service's schema): the row id (the event's id), or,
// when id is "" (a row written before its id was kept), the newest whose
// subject matches like (a SQL LIKE pattern, which reads the outbox from its
// newest row back). It publishes the same envelope and event id, so that
// every consumer that handled it skips it, with a Nats-Msg-Id of the event
// id plus suffix, so that JetStream's duplicate window does not drop it
// (the same suffix within the window sends it once). It returns the event
// id, or an error wrapping ErrNoEvent when no published row matches (none,
// or pruned).
func Resend(ctx context.Context, pool *pgxpool.Pool, js jetstream.JetStream, id, like, suffix string) (string, error) {
	var subject string
	var data []byte
	query, arg := `SELECT subject, envelope FROM outbox WHERE id = $1 AND published_at IS NOT NULL`, id
	if id == "" {
		query, arg = `SELECT subject, envelope FROM outbox
			WHERE subject LIKE $1 AND published_at IS NOT NULL ORDER BY seq DESC LIMIT 1`, like
	}
	err := pool.QueryRow(ctx, query, arg).Scan(&subject, &data)
	if errors.Is(err, pgx.ErrNoRows) {
		return "", fmt.Errorf("%w: no published outbox row %s on %s", ErrNoEvent, id, like)
	}
	if err != nil {
		return "", fmt.Errorf("outbox: %w", err)
	}
	env, err := event.Decode(data)
	if err != nil {
		return "", fmt.Errorf("outbox row on %s: %w", subject, err)
	}
	h := event.Headers(env)
	h.Set(nats.MsgIdHdr, env.GetId()+suffix)
	if _, err := js.PublishMsg(ctx, &nats.Msg{Subject: subject, Data: data, Header: h}); err != nil {
		return "", fmt.Errorf("resend %s: %w", env.GetId(), err)
	}
	return env.GetId(), nil
}
