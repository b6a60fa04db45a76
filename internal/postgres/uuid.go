package postgres

import (
	"fmt"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5/pgtype"
)

// UUIDs parses ids, UUIDs in their text form, for a uuid[] parameter, which
// pgx then sends in binary. Given the []string itself (or uuid.UUIDs, which
// are driver.Valuers of text), pgx first tries binary, fails, formats the
// whole list into an error that it drops, and then sends text that
// PostgreSQL parses again: a cost paid on every batch.
func UUIDs(ids []string) ([]pgtype.UUID, error) {
	out := make([]pgtype.UUID, len(ids))
	for i, id := range ids {
		u, err := uuid.Parse(id)
		if err != nil {
			return nil, fmt.Errorf("%q is not a UUID: %w", id, err)
		}
		out[i] = pgtype.UUID{Bytes: u, Valid: true}
	}
	return out, nil
}
