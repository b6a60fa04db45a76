package servicekit

import (
	"context"
	"errors"
	"log/slog"
	"math"
	"strconv"

	"connectrpc.com/connect"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/shopbus/shopbus/internal/event"
	"github.com/shopbus/shopbus/internal/postgres"
)

// Code maps a domain error (and every error that wraps it) onto a Connect
// code.
type Code struct {
	// Err is the domain error, matched with errors.Is.
	Err error
	// Code is what the client sees.
	Code connect.Code
}

// Errors is a service's edge: its domain errors' Connect codes, and what
// it says when anything else goes wrong.
type Errors struct {
	// Service names the service in log lines and in the messages clients
	// get ("the order database is unavailable").
	Service string
	// Codes are the service's domain errors, matched in order.
	Codes []Code
	// Retry, when set, is how a client retries after Unavailable ("retry
	// with the same idempotency key"); "retry" when empty.
	Retry string
	// Log receives the unexpected errors, in full.
	Log *slog.Logger
}

// Connect returns err as a Connect error for method: a RateLimitedError as
// ResourceExhausted, saying when to retry; a domain error with its code and
// message; an event that breaks its contract (event.ErrInvalid) as
// InvalidArgument; a cancelled or timed-out call as such; anything
// else logged in full and returned without database text: Unavailable when
// PostgreSQL could not be reached, Internal otherwise.
func (e Errors) Connect(method string, err error) error {
	var ce *connect.Error
	if errors.As(err, &ce) {
		return ce
	}
	if rl := (*RateLimitedError)(nil); errors.As(err, &rl) {
		e := connect.NewError(connect.CodeResourceExhausted, err)
		if d, derr := connect.NewErrorDetail(&errdetails.RetryInfo{RetryDelay: durationpb.New(rl.RetryAfter)}); derr == nil {
			e.AddDetail(d)
		}
		e.Meta().Set("Retry-After", strconv.Itoa(int(math.Ceil(rl.RetryAfter.Seconds()))))
		return e
	}
	for _, c := range e.Codes {
		if errors.Is(err, c.Err) {
			return connect.NewError(c.Code, err)
		}
	}
	switch {
	case errors.Is(err, event.ErrInvalid):
		// An event made from the request breaks its contract: the
		// request's fault (a NUL in a text, a rule the RPC's own rules
		// did not state).
		return connect.NewError(connect.CodeInvalidArgument, err)
	case errors.Is(err, context.Canceled):
		return connect.NewError(connect.CodeCanceled, err)
	case errors.Is(err, context.DeadlineExceeded):
		return connect.NewError(connect.CodeDeadlineExceeded, err)
	}
	e.Log.Error(e.Service+": "+method+" failed", slog.Any("err", err))
	if postgres.IsUnavailable(err) {
		retry := e.Retry
		if retry == "" {
			retry = "retry"
		}
		return connect.NewError(connect.CodeUnavailable, errors.New("the "+e.Service+" database is unavailable; "+retry))
	}
	return connect.NewError(connect.CodeInternal, errors.New("internal error in the "+e.Service+" service"))
}
