package servicekit

import (
	"encoding/base64"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
)

// Page collects a page of a list RPC from rows, a query that asked for
// size+1 rows (LIMIT size+1): it returns at most size items and, when
// there are more, the next page's token, which token makes of the page's
// last item. what names the list in errors ("list orders").
func Page[T any](rows pgx.Rows, size int, scan func(pgx.Row) (T, error), token func(last T) string, what string) ([]T, string, error) {
	items, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (T, error) { return scan(r) })
	if err != nil {
		return nil, "", fmt.Errorf("%s: %w", what, err)
	}
	if len(items) <= size {
		return items, "", nil
	}
	items = items[:size]
	return items, token(items[size-1]), nil
}

// ErrBadCursor means a page token is not one EncodeTimeCursor made.
var ErrBadCursor = errors.New("not a (time, id) cursor")

// EncodeTimeCursor is the page token of a list ordered by (time, UUID):
// the position after the item at at with id, as base64 (URL alphabet, no
// padding) of "<RFC 3339 time, UTC>|<id>". It is opaque to clients, not
// secret.
func EncodeTimeCursor(at time.Time, id string) string {
	return base64.RawURLEncoding.EncodeToString([]byte(at.UTC().Format(time.RFC3339Nano) + "|" + id))
}

// DecodeTimeCursor reads EncodeTimeCursor's token: the time and the id. A
// token it did not make is ErrBadCursor (a service wraps it in its own
// invalid-page-token error).
func DecodeTimeCursor(tok string) (time.Time, string, error) {
	b, err := base64.RawURLEncoding.DecodeString(tok)
	if err != nil {
		return time.Time{}, "", fmt.Errorf("%w: not base64", ErrBadCursor)
	}
	ts, id, ok := strings.Cut(string(b), "|")
	at, err := time.Parse(time.RFC3339Nano, ts)
	if !ok || err != nil {
		return time.Time{}, "", ErrBadCursor
	}
	// Only the form EncodeTimeCursor writes: uuid.Parse also takes
	// "urn:uuid:…" and "{…}", which PostgreSQL's uuid type refuses.
	u, err := uuid.Parse(id)
	if err != nil || u.String() != id {
		return time.Time{}, "", ErrBadCursor
	}
	return at, id, nil
}
