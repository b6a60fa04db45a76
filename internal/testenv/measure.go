package testenv

import (
	"bytes"
	"context"
	"errors"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/procfs"
	"github.com/synadia-io/orbit.go/jetstreamext"
)

// LogBuffer collects what loggers write, from any goroutine.
type LogBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

// Write appends p.
func (l *LogBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

// String returns what was written so far.
func (l *LogBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// CPUTime is the CPU time used so far by this process and by every process
// named postgres (a local server), read from /proc; 0 where there is none.
// Benchmarks report the difference over their timed work.
func CPUTime() time.Duration {
	procs, err := procfs.AllProcs()
	if err != nil {
		return 0
	}
	var seconds float64
	for _, p := range procs {
		stat, err := p.Stat()
		if err == nil && (p.PID == os.Getpid() || stat.Comm == "postgres") {
			seconds += stat.CPUTime()
		}
	}
	return time.Duration(seconds * float64(time.Second))
}

// StreamMessages returns every message stream holds, in stream order.
func StreamMessages(tb testing.TB, js jetstream.JetStream, stream string) []*jetstream.RawStreamMsg {
	tb.Helper()
	ctx := context.Background()
	s, err := js.Stream(ctx, stream)
	if err != nil {
		tb.Fatal(err)
	}
	info, err := s.Info(ctx)
	if err != nil {
		tb.Fatal(err)
	}
	var msgs []*jetstream.RawStreamMsg
	for seq := info.State.FirstSeq; seq <= info.State.LastSeq && info.State.Msgs > 0; seq++ {
		msg, err := s.GetMsg(ctx, seq)
		if errors.Is(err, jetstream.ErrMsgNotFound) {
			continue // deleted
		}
		if err != nil {
			tb.Fatalf("stream %s message %d: %v", stream, seq, err)
		}
		msgs = append(msgs, msg)
	}
	return msgs
}

// InAtomicBatches counts the messages of msgs a JetStream atomic batch
// stored (they carry its id).
func InAtomicBatches(msgs []*jetstream.RawStreamMsg) int {
	n := 0
	for _, m := range msgs {
		if m.Header.Get(jetstreamext.BatchIDHeader) != "" {
			n++
		}
	}
	return n
}
