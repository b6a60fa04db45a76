package servicekit_test

import (
	"encoding/base64"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/shopbus/shopbus/internal/servicekit"
)

// TestTimeCursor: a cursor gives back its time (to the nanosecond, in any
// zone) and id; a token it did not make is ErrBadCursor.
func TestTimeCursor(t *testing.T) {
	t.Parallel()
	at := time.Date(2026, 3, 1, 12, 30, 0, 123456789, time.FixedZone("CET", 3600))
	const id = "0190b1a8-7c2e-7d3f-9a4b-5c6d7e8f9a0b"
	gotAt, gotID, err := servicekit.DecodeTimeCursor(servicekit.EncodeTimeCursor(at, id))
	if err != nil || !gotAt.Equal(at) || gotID != id {
		t.Errorf("round trip: %v %q %v, want %v %q", gotAt, gotID, err, at, id)
	}
	b64 := func(s string) string { return base64.RawURLEncoding.EncodeToString([]byte(s)) }
	bad := []string{"%%%", b64("no separator"), b64("yesterday|" + id), b64(at.Format(time.RFC3339Nano) + "|not-a-uuid")}
	// Forms of a UUID that uuid.Parse takes and PostgreSQL's uuid type
	// does not.
	for _, form := range []string{"urn:uuid:" + id, "{" + id + "}", strings.ReplaceAll(id, "-", "")} {
		bad = append(bad, b64(at.Format(time.RFC3339Nano)+"|"+form))
	}
	for _, tok := range bad {
		if _, _, err := servicekit.DecodeTimeCursor(tok); !errors.Is(err, servicekit.ErrBadCursor) {
			t.Errorf("%q: %v, want ErrBadCursor", tok, err)
		}
	}
}
