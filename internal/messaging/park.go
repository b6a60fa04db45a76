package messaging

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/shopbus/shopbus/internal/event"
)

// ParkAfter is how long a relay keeps trying a row that JetStream refuses in
// a way that may pass (no stream captures its subject: its stream may be
// being declared again, see stack.DeclareTopology; larger than its stream's
// max_msg_size: the stream may be being changed) before it sets the row
// aside. It counts from the first refusal the relay saw, not from the row's
// creation: after an outage, an old row refused once is not set aside at
// once.
const ParkAfter = 10 * time.Minute

// maxRefused bounds the rows a relay remembers a first refusal of: past
// it, it forgets them all (rows another relay published, say) and counts
// again.
const maxRefused = 10_000

// refusedFor returns how long ago r first saw the row id refused, and
// remembers now as that moment for a row refused for the first time.
func (r *Relay) refusedFor(id string, now time.Time) time.Duration {
	r.refusedMu.Lock()
	defer r.refusedMu.Unlock()
	first, ok := r.refused[id]
	if ok {
		return now.Sub(first)
	}
	if r.refused == nil || len(r.refused) >= maxRefused {
		r.refused = map[string]time.Time{}
	}
	r.refused[id] = now
	return 0
}

// neverCaptured reports whether row, refused with err, is one no stream
// will take: any refusal but "no stream answered", and that one only when
// JetStream says no stream captures its subject. A stream without a leader
// (a cluster that lost its quorum) does not answer either, and its rows
// must wait for it, however long.
func (r *Relay) neverCaptured(ctx context.Context, err error, row UnpublishableRow) bool {
	if !errors.Is(err, jetstream.ErrNoStreamResponse) {
		return true
	}
	_, err = r.js.StreamNameBySubject(ctx, row.Subject)
	return errors.Is(err, jetstream.ErrStreamNotFound)
}

// refusal returns why JetStream refused row with err, when the refusal
// may last (its subject captured by no stream, or the row larger than its
// stream's max_msg_size) and the row is set aside once it has lasted
// ParkAfter, or "" for any other error, which is retried. size is the
// row's size with its headers, as the stream counts it.
func refusal(err error, row UnpublishableRow, size int) string {
	switch {
	case errors.Is(err, jetstream.ErrNoStreamResponse):
		return "no stream captures subject " + row.Subject
	case errors.Is(err, jetstream.ErrStreamMessageExceedsMaximum):
		return fmt.Sprintf("%d bytes with its headers: more than the max_msg_size of the stream that captures %s", size, row.Subject)
	}
	return ""
}

// forgetRefusals forgets the first refusals of rows published or set aside.
func (r *Relay) forgetRefusals(ids ...string) {
	r.refusedMu.Lock()
	defer r.refusedMu.Unlock()
	if len(r.refused) == 0 {
		return
	}
	for _, id := range ids {
		delete(r.refused, id)
	}
}

// UnpublishableRow is an outbox row the relay can never publish, and why.
type UnpublishableRow struct {
	ID        string
	Seq       int64
	Subject   string
	Envelope  []byte
	CreatedAt time.Time
	// Reason says why it cannot be published.
	Reason string
}

// UnpublishableFunc files a row the relay set aside where operators see it
// (deadletter.OutboxFiler: the dead-letter queue).
type UnpublishableFunc func(ctx context.Context, row UnpublishableRow) error

// WithUnpublishable has the relay file each row it sets aside with f.
func WithUnpublishable(f UnpublishableFunc) RelayOption {
	return func(r *Relay) { r.unpublishable = f }
}

// park files row with the relay's UnpublishableFunc and then sets it aside
// in tx (parked_at, park_reason), so the rows behind it are published. A
// row whose filing fails is not set aside: it stays in the outbox, holding
// back its key, and a later pass tries it again (a full or unreachable
// dead-letter queue loses no row). A row filed again because tx did not
// commit is still one dead letter when the next pass comes within the
// queue's duplicate window (deadletter.OutboxFiler's message id is the
// row's).
func (r *Relay) park(ctx context.Context, tx pgx.Tx, row UnpublishableRow) error {
	var scrub event.Scrubber
	scrub.Add(row.Subject, row.Envelope)
	if r.unpublishable != nil {
		if err := r.unpublishable(ctx, row); err != nil {
			r.log.Error("outbox relay: a row that can never be published could not be filed in the dead-letter queue; it stays in the outbox and is tried again",
				"schema", r.schema, "id", row.ID, "subject", event.RedactSubject(row.Subject), "err", err)
			return nil
		}
	}
	if _, err := tx.Exec(ctx, "UPDATE outbox SET parked_at = now(), park_reason = $2 WHERE id = $1", row.ID, row.Reason); err != nil {
		return fmt.Errorf("outbox: park %s: %w", row.ID, err)
	}
	r.log.Error("outbox relay: a row can never be published; set aside", "schema", r.schema, "id", row.ID,
		"subject", event.RedactSubject(row.Subject), "reason", scrub.Scrub(row.Reason))
	return nil
}

// headerSize is about what h takes on the wire.
func headerSize(h nats.Header) int {
	n := len("NATS/1.0\r\n\r\n")
	for k, vs := range h {
		for _, v := range vs {
			n += len(k) + len(v) + 4
		}
	}
	return n
}
