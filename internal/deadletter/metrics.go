package deadletter

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"

	"github.com/shopbus/shopbus/internal/telemetry"
)

// CensusKey groups dead letters: the stream of the original message and
// why it was given up on (ReasonMaxDeliveries or ReasonTerminated).
type CensusKey struct{ Stream, Reason string }

// Bounds of the census: how many stream sequences one window covers, and
// how many letters one round reads at most.
const (
	censusWindow = 4096
	censusRead   = 250_000
)

// maxDeletedDetails is the most letters removed from inside the DLQ (by a
// redrive or a discard) for which a census asks the server which they are;
// with more it reads every window again.
const maxDeletedDetails = 1 << 16

// census counts the dead letters by original stream and reason, reading
// only their headers, and reads each letter once: it keeps its counts by
// window of stream sequences, and a round reads the letters appended since
// the last and again only the windows that lost letters since they were
// read (a redrive, a discard, retention at the front). So a large DLQ is
// read in full once, over as many rounds as that takes, and then costs a
// round only its new letters.
type census struct {
	js jetstream.JetStream
	// size is the window's size (censusWindow) and limit the letters a
	// round reads at most (censusRead); smaller in tests.
	size, limit uint64
	// reads counts the letters read, over all rounds.
	reads   uint64
	windows map[uint64]*window // by first sequence / size
	// deleted is how many letters the stream lacked inside its range at
	// the last round (JetStream's NumDeleted).
	deleted uint64
}

// window is the census of one window: the letters from its start (or the
// stream's first sequence, from, when that was inside the window) through
// sequence through.
type window struct {
	from, through uint64
	n             int
	counts        map[CensusKey]int
}

// reset forgets what w counted: the window is read again from lo.
func (w *window) reset(lo uint64) {
	w.from, w.through, w.n, w.counts = lo, lo-1, 0, map[CensusKey]int{}
}

// round brings the census up to the DLQ's last letter, and returns the
// counts and true once it is there; when ctx ends first it returns false,
// keeping what it read for the next round.
func (c *census) round(ctx context.Context) (map[CensusKey]int, bool, error) {
	if c.size == 0 {
		c.size, c.limit = censusWindow, censusRead
	}
	stream, err := c.js.Stream(ctx, Stream)
	if err != nil {
		return nil, false, fmt.Errorf("jetstream: census of %s: %w", Stream, err)
	}
	st := stream.CachedInfo().State
	var deleted []uint64 // sorted
	details := st.NumDeleted <= maxDeletedDetails
	if st.NumDeleted > 0 && details {
		info, err := stream.Info(ctx, jetstream.WithDeletedDetails(true))
		if err != nil {
			return nil, false, fmt.Errorf("jetstream: census of %s: %w", Stream, err)
		}
		st = info.State
		deleted = slices.Sorted(slices.Values(st.Deleted))
	}
	if c.windows == nil || st.Msgs == 0 {
		c.windows = map[uint64]*window{}
	}
	// What was read and is no longer there: windows behind the front go,
	// and a window that lost letters is read again.
	readAgain := !details && uint64(st.NumDeleted) != c.deleted
	c.deleted = uint64(st.NumDeleted)
	for k, w := range c.windows {
		start, end := k*c.size, k*c.size+c.size-1
		lo := max(start, st.FirstSeq)
		switch {
		case end < st.FirstSeq || st.Msgs == 0:
			delete(c.windows, k)
		case w.through > st.LastSeq || lo > w.from || readAgain:
			w.reset(lo) // a stream made anew, letters gone at the front, or too many gone to say where
		case details && w.through >= lo && w.n != int(w.through-lo+1)-countBetween(deleted, lo, w.through):
			w.reset(lo) // letters gone inside
		}
	}
	if st.Msgs == 0 {
		return map[CensusKey]int{}, true, nil
	}
	// Read what is unread: each run of windows behind, with a consumer of
	// its own, up to this round's share of sequences.
	budget := c.limit
	var run [2]uint64 // first and last sequence of the run being formed
	for k := st.FirstSeq / c.size; k <= st.LastSeq/c.size+1; k++ {
		from, to := uint64(0), uint64(0) // what window k lacks (none: 0)
		if k <= st.LastSeq/c.size {
			w := c.windows[k]
			if w == nil {
				w = &window{}
				w.reset(max(k*c.size, st.FirstSeq))
				c.windows[k] = w
			}
			if end := min(k*c.size+c.size-1, st.LastSeq); w.through < end {
				from, to = w.through+1, end
			}
		}
		if run[0] != 0 && (from == 0 || from != run[1]+1) {
			if budget == 0 {
				return nil, false, nil // the next round goes on
			}
			last := min(run[1], run[0]+budget-1)
			err := c.read(ctx, stream, run[0], last)
			if errors.Is(err, context.DeadlineExceeded) && ctx.Err() != nil {
				return nil, false, nil
			}
			if err != nil {
				return nil, false, err
			}
			if last < run[1] {
				return nil, false, nil
			}
			budget -= last - run[0] + 1
			run = [2]uint64{}
		}
		if from != 0 {
			if run[0] == 0 {
				run[0] = from
			}
			run[1] = to
		}
	}
	out := map[CensusKey]int{}
	for _, w := range c.windows {
		for key, n := range w.counts {
			out[key] += n
		}
	}
	return out, true, nil
}

// read counts the letters from sequence from through last, through one
// short-lived consumer of its own (deleted when done, and by the server
// after 30s of inactivity if read could not). Windows read through already
// are skipped.
func (c *census) read(ctx context.Context, stream jetstream.Stream, from, last uint64) error {
	cons, err := stream.CreateConsumer(ctx, jetstream.ConsumerConfig{
		AckPolicy: jetstream.AckNonePolicy, HeadersOnly: true,
		DeliverPolicy: jetstream.DeliverByStartSequencePolicy, OptStartSeq: from,
		InactiveThreshold: 30 * time.Second, MemoryStorage: true, Replicas: 1,
	})
	if err != nil {
		return fmt.Errorf("jetstream: census of %s: %w", Stream, err)
	}
	defer func() {
		dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 2*time.Second)
		defer cancel()
		_ = stream.DeleteConsumer(dctx, cons.CachedInfo().Name) // else the threshold removes it
	}()
	// seen marks every sequence up to seq read: what a window lacks there
	// is gone.
	seen := func(seq uint64) {
		for k := from / c.size; k <= seq/c.size; k++ {
			if w := c.windows[k]; w != nil && w.through < seq {
				w.through = min(seq, k*c.size+c.size-1)
			}
		}
		from = max(from, seq+1)
	}
	for from <= last {
		if err := ctx.Err(); err != nil {
			return fmt.Errorf("census of %s: %w", Stream, err)
		}
		batch, err := cons.FetchNoWait(1000) // all it reads is stored
		if err != nil {
			return fmt.Errorf("jetstream: census of %s: %w", Stream, err)
		}
		n, end := 0, false
		for msg := range batch.Messages() {
			n++
			meta, err := msg.Metadata()
			if err != nil {
				continue
			}
			seq := meta.Sequence.Stream
			if seq > last {
				end = true
				continue // appended since the round began: the next round's
			}
			if w := c.windows[seq/c.size]; w != nil && seq > w.through {
				h := msg.Headers()
				w.counts[CensusKey{Stream: h.Get(HeaderOriginalStream), Reason: h.Get(HeaderReason)}]++
				w.n++
				c.reads++
			}
			seen(seq)
			if meta.NumPending == 0 {
				end = true
			}
		}
		if err := batch.Error(); err != nil && !errors.Is(err, jetstream.ErrNoMessages) && !errors.Is(err, nats.ErrTimeout) {
			return fmt.Errorf("jetstream: census of %s: %w", Stream, err)
		}
		if end || n == 0 {
			seen(last) // nothing more through last: the rest was removed
			return nil
		}
	}
	return nil
}

// countBetween is how many of sorted fall within [lo, hi].
func countBetween(sorted []uint64, lo, hi uint64) int {
	i, _ := slices.BinarySearch(sorted, lo)
	j, _ := slices.BinarySearch(sorted, hi+1)
	return j - i
}

// Metrics counts the dead letters in the background and exports the
// counts (telemetry.DeadLetters) by original stream and reason. The gateway
// process, which serves the DeadLetterService, runs it.
type Metrics struct {
	census census
	every  time.Duration
	log    *slog.Logger

	mu     sync.Mutex
	counts map[CensusKey]int
}

// NewMetrics registers the dead-letter gauge on t, counted by Run every
// interval (10s when 0); Close unregisters it.
func NewMetrics(store *Store, t *telemetry.Telemetry, every time.Duration, log *slog.Logger) (*Metrics, metric.Registration, error) {
	if every <= 0 {
		every = 10 * time.Second
	}
	m := &Metrics{census: census{js: store.js}, every: every, log: log}
	meter := t.Meter("github.com/shopbus/shopbus/internal/deadletter")
	g, err := meter.Int64ObservableGauge(telemetry.DeadLetters, metric.WithUnit("{letter}"),
		metric.WithDescription("Dead letters in the DLQ, by original stream and reason (max_deliveries or terminated)."))
	if err != nil {
		return nil, nil, fmt.Errorf("dead letters: metrics: %w", err)
	}
	// The callback only reads memory: a scrape never waits on NATS.
	reg, err := meter.RegisterCallback(func(_ context.Context, o metric.Observer) error {
		m.mu.Lock()
		defer m.mu.Unlock()
		for k, n := range m.counts {
			o.ObserveInt64(g, int64(n), metric.WithAttributes(attribute.String("stream", k.Stream), attribute.String("reason", k.Reason)))
		}
		return nil
	}, g)
	if err != nil {
		return nil, nil, fmt.Errorf("dead letters: metrics: %w", err)
	}
	return m, reg, nil
}

// censusRound bounds one round of the census. A DLQ too large to read in
// one round is read over several, and its counts appear when the census
// has reached its last letter.
const censusRound = 5 * time.Second

// Run counts the dead letters every interval until ctx is done. While NATS
// does not answer, the last counts are dropped (their series disappear
// rather than show stale figures) and a warning says why; while a census
// takes more than one round, the last counts stay.
func (m *Metrics) Run(ctx context.Context) error {
	failing := false
	for {
		cctx, cancel := context.WithTimeout(ctx, censusRound)
		counts, done, err := m.census.round(cctx)
		cancel()
		switch {
		case ctx.Err() != nil:
			return ctx.Err()
		case err != nil:
			if !failing {
				m.log.Warn("dead letters: no census; the dlq gauge is gone until one succeeds", "err", err)
			}
			failing = true
			m.set(nil) // no figure rather than a stale one
		case done:
			if failing {
				m.log.Info("dead letters: census back")
			}
			failing = false
			m.set(counts)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(m.every):
		}
	}
}

// set replaces the exported counts.
func (m *Metrics) set(counts map[CensusKey]int) {
	m.mu.Lock()
	m.counts = counts
	m.mu.Unlock()
}

// Counts returns the counts the gauge exports: the last census's, or nil
// when there is none.
func (m *Metrics) Counts() map[CensusKey]int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return maps.Clone(m.counts)
}
