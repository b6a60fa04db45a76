package servicekit

import (
	"fmt"

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
