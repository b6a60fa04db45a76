// Package lag watches consumer groups: every Interval it reads each durable
// consumer from JetStream (pending, ack pending, redelivered, delivered,
// ack floor, and the age of the oldest event not yet settled, from the
// stream's own timestamp), keeps a sliding window of those samples, and
// judges each consumer OK, WARN, STALL, STOP or ERR the way LinkedIn's
// Burrow judges Kafka consumers (status.go). The Monitor exports what it
// sees as metrics (telemetry.Consumer*), feeds readiness (Check), and
// serves the admin LagService (handler.go) behind `shopbus lag`.
package lag

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"

	"github.com/shopbus/shopbus/internal/messaging"
	"github.com/shopbus/shopbus/internal/telemetry"
)

// Options configure a Monitor.
type Options struct {
	// Interval is how often consumers are read (default 5s).
	Interval time.Duration
	// Window is how many samples a status is judged on (default 12: a
	// minute at the default interval). A consumer stalls after a full
	// window without progress.
	Window int
	// Groups limits the monitor to these consumer groups (their Durable);
	// empty watches every group on the server.
	Groups []string
}

func (o Options) withDefaults() Options {
	if o.Interval == 0 {
		o.Interval = 5 * time.Second
	}
	if o.Window == 0 {
		o.Window = 12
	}
	return o
}

// Consumer is what the monitor knows of one consumer group.
type Consumer struct {
	// Group is the consumer group (its Durable), Stream what it consumes.
	Group, Stream string
	// Strategy is the group's.
	Strategy messaging.Strategy
	// Status is the worst status of its partitions.
	Status Status
	// Lag is the events not yet settled, over all partitions; Age the age
	// of the oldest of them.
	Lag uint64
	Age time.Duration
	// Rate is the deliveries settled per second over the window.
	Rate float64
	// Members are the live instances.
	Members int
	// Partitions are its durable consumers (one, "shared", for a
	// round-robin group).
	Partitions []Partition
}

// Partition is one durable consumer of a group.
type Partition struct {
	// Label is the partition number, or "shared" (messaging.PartitionLabel).
	Label string
	// Durable is the durable consumer, Owner the instance holding it
	// (key-based groups).
	Durable, Owner string
	// Status is judged over the window.
	Status Status
	// Latest is the last sample.
	Latest Sample
}

// Monitor samples consumer groups and judges them. Its methods are safe
// for concurrent use.
type Monitor struct {
	js   jetstream.JetStream
	opts Options
	log  *slog.Logger

	mu        sync.Mutex
	windows   map[key][]Sample
	consumers []Consumer
	sampled   bool
	sampledAt time.Time
	expected  []string // groups readiness waits for (Check)
	reg       metric.Registration
}

type key struct{ group, durable string }

// NewMonitor returns a monitor of the groups on js that opts selects, whose
// figures are exported as metrics on t. Run starts it.
func NewMonitor(js jetstream.JetStream, t *telemetry.Telemetry, opts Options, log *slog.Logger) (*Monitor, error) {
	opts = opts.withDefaults()
	if opts.Interval < 0 || opts.Window < 2 {
		return nil, fmt.Errorf("lag monitor: Interval %v must be positive and Window %d at least 2", opts.Interval, opts.Window)
	}
	m := &Monitor{js: js, opts: opts, log: log, windows: map[key][]Sample{}}
	if err := m.register(t); err != nil {
		return nil, fmt.Errorf("lag monitor: metrics: %w", err)
	}
	return m, nil
}

// Run samples every Interval until ctx is done, and returns ctx's error.
// While a group that readiness waits for (Check) has not appeared yet, it
// samples every 200ms, so a starting process is ready as soon as its
// consumers joined their groups.
func (m *Monitor) Run(ctx context.Context) error {
	for {
		m.Sample(ctx)
		wait := m.opts.Interval
		if m.missing() {
			wait = min(wait, startupInterval)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(wait):
		}
	}
}

// startupInterval is how often Run samples while an expected group is
// missing.
const startupInterval = 200 * time.Millisecond

// missing reports whether a group readiness waits for was not seen in the
// last sample.
func (m *Monitor) missing() bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, g := range m.expected {
		if !slices.ContainsFunc(m.consumers, func(c Consumer) bool { return c.Group == g }) {
			return true
		}
	}
	return false
}

// Sample reads every watched consumer once and judges it again. Run calls
// it every Interval. It reads NATS without holding the monitor's lock, so
// scrapes, readiness and the LagService never wait on NATS.
func (m *Monitor) Sample(ctx context.Context) {
	ctx, cancel := context.WithTimeout(ctx, max(m.opts.Interval, 5*time.Second))
	defer cancel()
	now := time.Now()
	reads, err := m.readAll(ctx, now)
	if err != nil && ctx.Err() == nil {
		m.log.Warn("lag monitor: cannot list consumer groups", "err", err)
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if err != nil {
		// Every consumer known so far gets a failed sample.
		reads = nil
		for _, c := range m.consumers {
			r := groupRead{group: messaging.Group{Name: c.Group, Stream: c.Stream, Strategy: c.Strategy}, err: err}
			for _, p := range c.Partitions {
				r.group.Partitions = append(r.group.Partitions, messaging.PartitionState{Consumer: p.Durable, Owner: p.Owner})
			}
			reads = append(reads, r)
		}
	}
	seen := map[key]bool{}
	var consumers []Consumer
	for _, r := range reads {
		g := r.group
		c := Consumer{Group: g.Name, Stream: g.Stream, Strategy: g.Strategy, Members: len(g.Members)}
		if r.err != nil && len(g.Partitions) == 0 {
			// A group never read: judged as a whole, so that its first
			// failed read is ERR, not OK for want of partitions.
			k := key{g.Name, ""}
			seen[k] = true
			c.Status = Evaluate(m.push(k, Sample{At: now, Err: r.err}), m.opts.Window)
		}
		for i, ps := range g.Partitions {
			s := Sample{At: now, Err: r.err}
			if r.err == nil {
				s = r.samples[i]
			}
			k := key{g.Name, ps.Consumer}
			seen[k] = true
			window := m.push(k, s)
			p := Partition{Label: messaging.PartitionLabel(ps.Consumer, g.Name), Durable: ps.Consumer, Owner: ps.Owner,
				Status: Evaluate(window, m.opts.Window), Latest: s}
			c.Status = max(c.Status, p.Status)
			c.Lag += s.Lag()
			c.Age = max(c.Age, s.Age)
			if first := window[0]; first.Err == nil && s.Err == nil && s.At.After(first.At) && s.Acked >= first.Acked {
				c.Rate += float64(s.Acked-first.Acked) / s.At.Sub(first.At).Seconds()
			}
			c.Partitions = append(c.Partitions, p)
		}
		consumers = append(consumers, c)
	}
	for k := range m.windows {
		if !seen[k] {
			delete(m.windows, k) // a group that was removed
		}
	}
	slices.SortFunc(consumers, func(a, b Consumer) int { return cmp.Compare(a.Group, b.Group) })
	m.consumers, m.sampled, m.sampledAt = consumers, true, now
}

// groupRead is what one sample read of a group: a sample per partition, or
// the error that kept it from being read.
type groupRead struct {
	group   messaging.Group
	samples []Sample
	err     error
}

// readAll reads the watched groups: Options.Groups, or every group on the
// server. A group that cannot be read is an error of that group only; the
// error returned is listing the groups failing.
func (m *Monitor) readAll(ctx context.Context, now time.Time) ([]groupRead, error) {
	names := m.opts.Groups
	if len(names) == 0 {
		var err error
		if names, err = messaging.GroupNames(ctx, m.js); err != nil {
			return nil, err
		}
	}
	streams := map[string]jetstream.Stream{}
	var reads []groupRead
	for _, name := range names {
		g, err := messaging.ReadGroup(ctx, m.js, name)
		if errors.Is(err, messaging.ErrNoGroup) {
			continue // not started yet: Check says so
		}
		if err != nil {
			// Its partitions as last seen get the error.
			m.mu.Lock()
			if i := slices.IndexFunc(m.consumers, func(c Consumer) bool { return c.Group == name }); i >= 0 {
				c := m.consumers[i]
				g = messaging.Group{Name: c.Group, Stream: c.Stream, Strategy: c.Strategy}
				for _, p := range c.Partitions {
					g.Partitions = append(g.Partitions, messaging.PartitionState{Consumer: p.Durable, Owner: p.Owner})
				}
			}
			m.mu.Unlock()
			g.Name = name
			reads = append(reads, groupRead{group: g, err: err})
			continue
		}
		r := groupRead{group: g}
		for _, ps := range g.Partitions {
			r.samples = append(r.samples, m.read(ctx, g, ps, now, streams))
		}
		reads = append(reads, r)
	}
	return reads, nil
}

// read turns a durable consumer's state into a sample, reading the
// timestamp of its oldest unsettled event from the stream (looked up once
// per sample in streams).
func (m *Monitor) read(ctx context.Context, g messaging.Group, ps messaging.PartitionState, now time.Time, streams map[string]jetstream.Stream) Sample {
	switch {
	case ps.Missing:
		return Sample{At: now, Err: fmt.Errorf("durable consumer %s on %s is missing", ps.Consumer, g.Stream)}
	case ps.Err != nil:
		return Sample{At: now, Err: fmt.Errorf("durable consumer %s: %w", ps.Consumer, ps.Err)}
	}
	s := Sample{
		At: now, Pending: ps.Pending, AckPending: uint64(max(ps.AckPending, 0)), Redelivered: uint64(max(ps.Redelivered, 0)),
		Delivered: ps.Delivered, Acked: ps.Acked,
		Active: len(g.Members) > 0 && (g.Strategy == messaging.RoundRobin || ps.Owner != ""),
	}
	if s.Lag() == 0 {
		return s
	}
	stream, ok := streams[g.Stream]
	if !ok {
		var err error
		if stream, err = m.js.Stream(ctx, g.Stream); err != nil {
			return Sample{At: now, Err: fmt.Errorf("stream %s: %w", g.Stream, err)}
		}
		streams[g.Stream] = stream
	}
	var oldest time.Time
	for _, f := range ps.Filters {
		msg, err := stream.GetMsg(ctx, ps.AckFloor+1, jetstream.WithGetMsgSubject(f))
		if errors.Is(err, jetstream.ErrMsgNotFound) {
			continue
		}
		if err != nil {
			return Sample{At: now, Err: fmt.Errorf("oldest unsettled event of %s: %w", ps.Consumer, err)}
		}
		if oldest.IsZero() || msg.Time.Before(oldest) {
			oldest = msg.Time
		}
	}
	if !oldest.IsZero() {
		s.Age = max(now.Sub(oldest), 0)
	}
	return s
}

// push appends s to k's window, dropping what falls out, and returns it. A
// sample taken less than half an Interval after the window's last (Run
// samples faster while starting) replaces it, so a window always spans
// about Window × Interval.
func (m *Monitor) push(k key, s Sample) []Sample {
	w := m.windows[k]
	if n := len(w); n > 0 && s.At.Sub(w[n-1].At) < m.opts.Interval/2 {
		w[n-1] = s
		return w
	}
	w = append(w, s)
	if len(w) > m.opts.Window {
		w = slices.Clone(w[len(w)-m.opts.Window:])
	}
	m.windows[k] = w
	return w
}

// Consumers returns what the monitor saw at its last sample, sorted by
// group, and when that was (the zero time before the first).
func (m *Monitor) Consumers() ([]Consumer, time.Time) {
	m.mu.Lock()
	defer m.mu.Unlock()
	out := slices.Clone(m.consumers)
	for i := range out {
		out[i].Partitions = slices.Clone(out[i].Partitions)
	}
	return out, m.sampledAt
}

// Close stops exporting the monitor's figures.
func (m *Monitor) Close() error { return m.reg.Unregister() }

// Window is the time a status is judged over: Interval × Window.
func (m *Monitor) Window() time.Duration { return m.opts.Interval * time.Duration(m.opts.Window) }

// Check returns the consumers' part of readiness: an error naming each of
// groups that is in STOP or ERR or that the monitor has not seen (yet).
func (m *Monitor) Check(groups ...string) func(context.Context) error {
	m.mu.Lock()
	m.expected = append(m.expected, groups...)
	m.mu.Unlock()
	return func(context.Context) error {
		m.mu.Lock()
		defer m.mu.Unlock()
		if !m.sampled {
			return errors.New("not sampled yet")
		}
		var errs []error
		for _, g := range groups {
			i := slices.IndexFunc(m.consumers, func(c Consumer) bool { return c.Group == g })
			switch {
			case i < 0:
				errs = append(errs, fmt.Errorf("consumer %s has no group yet", g))
			case m.consumers[i].Status >= STOP:
				errs = append(errs, fmt.Errorf("consumer %s is %v", g, m.consumers[i].Status))
			}
		}
		return errors.Join(errs...)
	}
}

// register exports the monitor's figures as observable instruments, read
// from the last sample whenever metrics are collected.
func (m *Monitor) register(t *telemetry.Telemetry) error {
	meter := t.Meter("github.com/shopbus/shopbus/internal/lag")
	var errs []error
	gauge := func(name, unit, desc string) metric.Float64ObservableGauge {
		g, err := meter.Float64ObservableGauge(name, metric.WithUnit(unit), metric.WithDescription(desc))
		errs = append(errs, err)
		return g
	}
	counter := func(name, desc string) metric.Int64ObservableCounter {
		c, err := meter.Int64ObservableCounter(name, metric.WithUnit("{delivery}"), metric.WithDescription(desc))
		errs = append(errs, err)
		return c
	}
	pending := gauge(telemetry.ConsumerPending, "{event}", "Events in the stream the consumer has not been delivered yet.")
	ackPending := gauge(telemetry.ConsumerAckPending, "{event}", "Events delivered and not yet settled.")
	redelivered := gauge(telemetry.ConsumerRedelivered, "{event}", "Unsettled events delivered more than once.")
	lagEvents := gauge(telemetry.ConsumerLag, "{event}", "Events not yet settled: pending plus ack pending.")
	age := gauge(telemetry.ConsumerLagAge, "s", "Lag in seconds: age of the oldest event the consumer has not settled (from the stream's timestamp).")
	rate := gauge(telemetry.ConsumerRate, "{delivery}/s", "Deliveries settled per second over the status window.")
	status := gauge(telemetry.ConsumerStatus, "", "Burrow-style status over the window: 0 OK, 1 WARN, 2 STALL, 3 STOP, 4 ERR.")
	delivered := counter(telemetry.ConsumerDelivered, "Deliveries made (the consumer sequence; a redelivery counts again).")
	acked := counter(telemetry.ConsumerAcked, "Deliveries settled, up to the ack floor (consumer sequence).")
	if err := errors.Join(errs...); err != nil {
		return err
	}
	var err error
	m.reg, err = meter.RegisterCallback(func(_ context.Context, o metric.Observer) error {
		consumers, _ := m.Consumers()
		for _, c := range consumers {
			group := attribute.String("consumer", c.Group)
			o.ObserveFloat64(rate, c.Rate, metric.WithAttributes(group))
			o.ObserveFloat64(status, float64(c.Status), metric.WithAttributes(group, attribute.String("partition", "all")))
			for _, p := range c.Partitions {
				attrs := metric.WithAttributes(group, attribute.String("partition", p.Label))
				o.ObserveFloat64(status, float64(p.Status), attrs)
				if p.Latest.Err != nil {
					continue
				}
				s := p.Latest
				o.ObserveFloat64(pending, float64(s.Pending), attrs)
				o.ObserveFloat64(ackPending, float64(s.AckPending), attrs)
				o.ObserveFloat64(redelivered, float64(s.Redelivered), attrs)
				o.ObserveFloat64(lagEvents, float64(s.Lag()), attrs)
				o.ObserveFloat64(age, s.Age.Seconds(), attrs)
				o.ObserveInt64(delivered, int64(min(s.Delivered, 1<<62)), attrs)
				o.ObserveInt64(acked, int64(min(s.Acked, 1<<62)), attrs)
			}
		}
		return nil
	}, pending, ackPending, redelivered, lagEvents, age, rate, status, delivered, acked)
	return err
}
