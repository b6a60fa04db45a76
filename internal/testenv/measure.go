package testenv

import (
	"bytes"
	"os"
	"sync"
	"time"

	"github.com/prometheus/procfs"
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
