package messaging

import (
	"errors"
	"strings"

	"github.com/jackc/pgx/v5/pgconn"

	"github.com/shopbus/shopbus/internal/event"
)

// permanentError marks an error that no retry can fix.
type permanentError struct{ err error }

func (e *permanentError) Error() string { return e.err.Error() }
func (e *permanentError) Unwrap() error { return e.err }

// Permanent wraps err to say that retrying cannot help (a business rule that
// can never pass, a reference that will never exist). A handler returning it
// has its message terminated and sent to the dead-letter queue at once.
func Permanent(err error) error {
	if err == nil {
		return nil
	}
	return &permanentError{err}
}

// IsPermanent reports whether err is permanent: wrapped with Permanent, an
// event decoding or validation error (the same bytes never get better), or
// a PostgreSQL data exception (SQLSTATE class 22: a value the column cannot
// hold, a sum out of range), which the same event raises every time.
// Everything else (database or NATS unavailable, timeouts) is transient.
func IsPermanent(err error) bool {
	var p *permanentError
	var pg *pgconn.PgError
	return errors.As(err, &p) ||
		errors.As(err, &pg) && strings.HasPrefix(pg.Code, "22") ||
		errors.Is(err, event.ErrMalformed) ||
		errors.Is(err, event.ErrInvalid) ||
		errors.Is(err, event.ErrUnknownType) ||
		errors.Is(err, event.ErrWrongSource)
}

// ErrPanic marks a handler that panicked: the consumer recovered it, logged
// the panic with its stack, and treats it as a transient failure (retried
// with the policy's delay, dead-lettered when it repeats past MaxDeliver);
// in a batch, the events are then handled one at a time, so the others
// take effect. The process stays up.
var ErrPanic = errors.New("handler panicked")
