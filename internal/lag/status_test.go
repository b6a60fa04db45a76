package lag

import (
	"errors"
	"testing"
	"time"
)

func TestEvaluate(t *testing.T) {
	t.Parallel()
	at := func(i int) time.Time { return time.Unix(1_700_000_000, 0).Add(time.Duration(i) * time.Second) }
	s := func(i int, lag, acked uint64) Sample {
		return Sample{At: at(i), Active: true, Pending: lag, Acked: acked}
	}
	down := Sample{Err: errors.New("nats: timeout")}
	gone := func(i int, lag uint64) Sample { return Sample{At: at(i), Pending: lag} }
	tests := []struct {
		name   string
		window []Sample
		want   Status
	}{
		{"no samples", nil, OK},
		{"idle", []Sample{s(0, 0, 5), s(1, 0, 5), s(2, 0, 5), s(3, 0, 5)}, OK},
		{"keeping up", []Sample{s(0, 3, 5), s(1, 2, 8), s(2, 4, 10), s(3, 1, 14)}, OK},
		{"zero once in the window", []Sample{s(0, 3, 5), s(1, 0, 5), s(2, 4, 5), s(3, 6, 5)}, OK},
		{"stuck", []Sample{s(0, 3, 5), s(1, 4, 5), s(2, 4, 5), s(3, 9, 5)}, STALL},
		{"stuck but the window is not full yet", []Sample{s(0, 3, 5), s(1, 4, 5)}, OK},
		{"falling behind", []Sample{s(0, 3, 5), s(1, 4, 8), s(2, 4, 9), s(3, 9, 12)}, WARN},
		{"lag fell once", []Sample{s(0, 3, 5), s(1, 2, 8), s(2, 4, 9), s(3, 9, 12)}, OK},
		{"unreadable once", []Sample{s(0, 3, 5), down}, OK},
		{"unreadable once while stuck", []Sample{s(0, 3, 5), s(1, 3, 5), s(2, 3, 5), s(3, 3, 5), down}, STALL},
		{"unreadable twice", []Sample{s(0, 3, 5), down, down}, ERR},
		{"unreadable from the start", []Sample{down}, ERR},
		{"recovered from an error", []Sample{down, s(1, 3, 5), s(2, 4, 5), s(3, 4, 5)}, OK},
		{"no owner three times", []Sample{s(0, 0, 5), gone(1, 0), gone(2, 0), gone(3, 0)}, STOP},
		{"no owner twice (a takeover)", []Sample{s(0, 3, 5), s(1, 3, 6), gone(2, 3), gone(3, 3)}, OK},
		{"owner back", []Sample{gone(0, 3), gone(1, 3), gone(2, 3), s(3, 0, 8)}, OK},
	}
	for _, tt := range tests {
		if got := Evaluate(tt.window, 4); got != tt.want {
			t.Errorf("%s: Evaluate = %v, want %v", tt.name, got, tt.want)
		}
	}
	if ERR.String() != "ERR" || Status(9).String() != "UNKNOWN" {
		t.Errorf("String: %v %v", ERR, Status(9))
	}
}
