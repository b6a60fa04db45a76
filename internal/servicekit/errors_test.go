package servicekit_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"testing"
	"time"

	"connectrpc.com/connect"

	"github.com/shopbus/shopbus/internal/event"
	"github.com/shopbus/shopbus/internal/postgres"
	"github.com/shopbus/shopbus/internal/servicekit"
)

var errGone = errors.New("widget not found")

// TestErrorsConnect: a domain error keeps its message under its code, a
// cancelled or timed-out call says so, and anything else reaches the client
// without its text: Unavailable (with how to retry) when PostgreSQL could
// not be reached, Internal otherwise.
func TestErrorsConnect(t *testing.T) {
	e := servicekit.Errors{Service: "widget", Retry: "retry with the same key", Log: slog.New(slog.NewTextHandler(io.Discard, nil)),
		Codes: []servicekit.Code{{Err: errGone, Code: connect.CodeNotFound}}}
	for _, tc := range []struct {
		name string
		err  error
		code connect.Code
		msg  string // the client's message contains it
		not  string // and never this
	}{
		{"domain error, wrapped", fmt.Errorf("get: %w: w-1", errGone), connect.CodeNotFound, "widget not found: w-1", ""},
		{"cancelled", fmt.Errorf("get: %w", context.Canceled), connect.CodeCanceled, "", ""},
		{"timed out", fmt.Errorf("get: %w", context.DeadlineExceeded), connect.CodeDeadlineExceeded, "", ""},
		{"database unreachable", fmt.Errorf("select secret_table: %w", postgres.ErrUnavailable), connect.CodeUnavailable, "the widget database is unavailable; retry with the same key", "secret_table"},
		{"anything else", errors.New(`ERROR: relation "secret_table" does not exist`), connect.CodeInternal, "internal error in the widget service", "secret_table"},
		{"rate limited", fmt.Errorf("create: %w", &servicekit.RateLimitedError{Err: errGone, RetryAfter: 1500 * time.Millisecond}), connect.CodeResourceExhausted, "widget not found; retry in 1.5s", ""},
		{"an event that breaks its contract", fmt.Errorf("send: %w: message.sent.v1: body holds a NUL character", event.ErrInvalid), connect.CodeInvalidArgument, "body holds a NUL", ""},
		{"a Connect error passes", connect.NewError(connect.CodeResourceExhausted, errors.New("slow down")), connect.CodeResourceExhausted, "slow down", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := e.Connect("Get", tc.err)
			if got := connect.CodeOf(err); got != tc.code {
				t.Errorf("code %v, want %v (%v)", got, tc.code, err)
			}
			if ce := new(connect.Error); tc.name == "rate limited" && errors.As(err, &ce) && (ce.Meta().Get("Retry-After") != "2" || len(ce.Details()) != 1) {
				t.Errorf("Retry-After %q and %d details, want \"2\" and a RetryInfo", ce.Meta().Get("Retry-After"), len(ce.Details()))
			}
			if !strings.Contains(err.Error(), tc.msg) || (tc.not != "" && strings.Contains(err.Error(), tc.not)) {
				t.Errorf("message %q: want %q in it and not %q", err.Error(), tc.msg, tc.not)
			}
		})
	}
}
