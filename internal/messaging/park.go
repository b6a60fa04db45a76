package messaging

import (
	"context"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/nats-io/nats.go"

	"github.com/shopbus/shopbus/internal/event"
)

// ParkAfter is how long the relay keeps trying a row no stream takes (its
// stream may be being declared again, see stack.DeclareTopology) before it
// sets the row aside.
const ParkAfter = 10 * time.Minute

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

// park sets row aside in tx (parked_at, park_reason), so the rows behind it
// are published, and files it with the relay's UnpublishableFunc. A filing
// that fails is logged: the row stays parked, with its reason, in the
// outbox.
func (r *Relay) park(ctx context.Context, tx pgx.Tx, row UnpublishableRow) error {
	if _, err := tx.Exec(ctx, "UPDATE outbox SET parked_at = now(), park_reason = $2 WHERE id = $1", row.ID, row.Reason); err != nil {
		return fmt.Errorf("outbox: park %s: %w", row.ID, err)
	}
	var scrub event.Scrubber
	scrub.Add(row.Subject, row.Envelope)
	r.log.Error("outbox relay: a row can never be published; set aside", "schema", r.schema, "id", row.ID,
		"subject", event.RedactSubject(row.Subject), "reason", scrub.Scrub(row.Reason))
	if r.unpublishable != nil {
		if err := r.unpublishable(ctx, row); err != nil {
			r.log.Error("outbox relay: could not file the row set aside in the dead-letter queue; it stays parked in the outbox",
				"schema", r.schema, "id", row.ID, "err", err)
		}
	}
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
