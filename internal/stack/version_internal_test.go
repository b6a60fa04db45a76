package stack

import (
	"strings"
	"testing"
)

// TestCheckServerVersion: an old nats-server (Debian's 2.9.10, say) is
// refused at connect with the version it has and the one needed.
func TestCheckServerVersion(t *testing.T) {
	t.Parallel()
	for v, want := range map[string]string{
		"2.9.10":       "nats-server 2.9.10; shopbus needs 2.11.0 or later",
		"2.10.22":      "nats-server 2.10.22; shopbus needs 2.11.0 or later",
		"2.11.0":       "",
		"2.15.3":       "",
		"2.12.0-RC.1":  "",
		"3.0.0":        "",
		"not-a-server": `reports version "not-a-server"`,
	} {
		err := checkServerVersion(v)
		if want == "" && err != nil || want != "" && (err == nil || !strings.Contains(err.Error(), want)) {
			t.Errorf("%s: %v, want %q", v, err, want)
		}
	}
}
