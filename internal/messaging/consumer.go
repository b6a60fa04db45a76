package messaging

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"
	"google.golang.org/protobuf/proto"

	eventv1 "github.com/shopbus/shopbus/gen/go/shopbus/event/v1"
	"github.com/shopbus/shopbus/internal/event"
	"github.com/shopbus/shopbus/internal/telemetry"
)

// Delivery is one event handed to a Handler.
type Delivery struct {
	// Envelope is the decoded, validated envelope.
	Envelope *eventv1.Envelope
	// Event is the payload, decoded, validated and upcast to the newest
	// version of its event.
	Event proto.Message
	// Spec describes Event (its newest version).
	Spec event.Spec
	// Subject is the subject the event was published on.
	Subject string
	// Metadata is JetStream's: stream sequence, delivery count ...
	Metadata *jetstream.MsgMetadata
}

// Handler handles one event. Returning nil acks it, so a handler returns nil
// only once its effect is committed. An error that IsPermanent terminates the
// message (dead-letter queue); any other error retries it after the retry
// policy's delay, and terminates it when its deliveries are used up.
type Handler func(ctx context.Context, d *Delivery) error

// Strategy is how the instances of a consumer group share its events. Every
// consumer chooses one (ConsumerConfig.Strategy); docs/adr/008 compares them.
type Strategy string

const (
	// RoundRobin shares one durable consumer between every instance and
	// every worker: any event goes to any of them, with the highest
	// throughput and no order at all (a retry overtakes later events). For
	// effects that do not depend on order, such as counting or aggregating.
	RoundRobin Strategy = "round-robin"
	// KeyBased gives each partition of the stream a durable consumer of its
	// own, owned by one live instance of the group at a time (group.go) and
	// handled in stream order, one event (Consume) or one batch
	// (ConsumeBatch) at a time, MaxAckPending being that many: events with
	// the same partition key take effect in the order they were published,
	// and a retried event or batch holds back the events behind it in its
	// partition until it succeeds or is dead-lettered.
	KeyBased Strategy = "key-based"
)

// ConsumerConfig declares a consumer: a group of instances sharing a
// stream's events by a Strategy.
type ConsumerConfig struct {
	// Stream is the stream to consume.
	Stream string
	// Durable names the consumer and its group: instances with the same
	// Durable share the work. A round-robin group has one durable consumer
	// of that name, a key-based one a durable "<Durable>-p<N>" per partition.
	Durable string
	// Subjects are the events consumed, as type subjects without their
	// version ("ecommerce.order.created" for every version of
	// order.created). Required.
	Subjects []string
	// Strategy is RoundRobin or KeyBased. Required: a consumer says whether
	// it needs per-key order.
	Strategy Strategy
	// AckWait is how long a delivery may stay unacked before JetStream
	// redelivers it; a handler that runs longer tells JetStream it is still
	// working every AckWait/2. Default 30s for round-robin, Lease for
	// key-based, whose unacked event must come back soon after its owner dies.
	AckWait time.Duration
	// Retry is the retry policy; zero fields take DefaultRetry's.
	Retry RetryPolicy
	// MaxAckPending bounds unacked deliveries across instances of a
	// round-robin consumer (default 256). Key-based consumers have one per
	// partition; setting more is an error.
	MaxAckPending int
	// Workers is how many events this instance of a round-robin consumer
	// handles at once (default 1). A key-based instance handles each
	// partition it owns on its own; setting more than 1 is an error.
	Workers int
	// DeadLetter, when set, stores a message in the dead-letter queue
	// before the consumer terminates it (deadletter.Filer); if it fails, the
	// message is retried instead. Without it, the MSG_TERMINATED advisory
	// that follows the Term is the only record.
	DeadLetter DeadLetterFunc
	// Unpublishable, when set, files the outbox rows the service's relay
	// sets aside (RunService; deadletter.OutboxFiler).
	Unpublishable UnpublishableFunc
	// Instance identifies this process in the group (default host, process
	// id and a random suffix); letters, digits, "-" and "_".
	Instance string
	// Lease is how long a member's keys in the group's KV bucket live
	// without renewal (DefaultLease when 0, at least 1s): a member that dies
	// loses its partitions after it.
	Lease time.Duration
	// Telemetry receives the consumer's metrics and spans (none when nil).
	Telemetry *telemetry.Telemetry
	// BatchSize is how many events ConsumeBatch hands its handler at most
	// (DefaultBatchSize when 0, at most MaxBatchSize). A key-based batch
	// consumer has BatchSize events in flight per partition.
	BatchSize int
	// BatchWait is how long ConsumeBatch waits for the next event, once
	// it has one, before it handles a batch that is not full
	// (DefaultBatchWait when 0).
	BatchWait time.Duration
	// HandleTimeout bounds one call of the handler, and so how long a
	// graceful stop waits for the call in hand (20s when 0).
	HandleTimeout time.Duration
	// Ping, when set, tells whether the database of a ConsumeBatch
	// handler answers (pgxpool.Pool.Ping). A batch that runs out of its
	// time (HandleTimeout) while the database answers took too long, not an
	// outage: it is handled one event at a time, and an event alone that
	// still runs out of time is retried against the retry policy's
	// MaxDeliver, then dead-lettered. Without Ping, or when it fails, a
	// batch that runs out of its time pauses as in an outage.
	Ping func(context.Context) error

	batch bool // set by ConsumeBatch
}

// DeadLetterFunc stores msg in the dead-letter queue. reason is what the
// consumer gives TermWithReason.
type DeadLetterFunc func(ctx context.Context, msg jetstream.Msg, reason string) error

// ErrBadConfig is wrapped by the errors of a ConsumerConfig that cannot run.
var ErrBadConfig = errors.New("bad consumer config")

func (c ConsumerConfig) withDefaults() ConsumerConfig {
	if c.Lease == 0 {
		c.Lease = DefaultLease
	}
	if c.AckWait == 0 {
		c.AckWait = 30 * time.Second
		if c.Strategy == KeyBased {
			c.AckWait = c.Lease
		}
	}
	c.Retry = c.Retry.withDefaults()
	if c.BatchSize == 0 {
		c.BatchSize = 1
		if c.batch {
			c.BatchSize = DefaultBatchSize
		}
	}
	if c.BatchWait == 0 {
		c.BatchWait = DefaultBatchWait
	}
	if c.HandleTimeout == 0 {
		c.HandleTimeout = handleTimeout
	}
	if c.MaxAckPending == 0 {
		c.MaxAckPending = max(256, 2*c.BatchSize)
		if c.Strategy == KeyBased {
			c.MaxAckPending = c.BatchSize
		}
	}
	if c.Workers == 0 {
		c.Workers = 1
	}
	if c.Instance == "" {
		c.Instance = defaultInstance()
	}
	return c
}

// validate reports what makes c unable to run, naming the field.
func (c ConsumerConfig) validate() error {
	bad := func(format string, args ...any) error {
		return fmt.Errorf("%w: consumer %q: %s", ErrBadConfig, c.Durable, fmt.Sprintf(format, args...))
	}
	switch {
	case c.Stream == "":
		return bad("no Stream")
	case !isName(c.Durable):
		return bad("Durable must be letters, digits, - and _")
	case len(c.Subjects) == 0:
		return bad("no Subjects")
	case c.Strategy != RoundRobin && c.Strategy != KeyBased:
		return bad("Strategy %q is neither %q nor %q", c.Strategy, RoundRobin, KeyBased)
	case c.Workers < 0, c.MaxAckPending < 0, c.AckWait < 0, c.BatchWait < 0, c.HandleTimeout < 0:
		return bad("negative Workers, MaxAckPending, AckWait, BatchWait or HandleTimeout")
	case c.BatchSize < 1 || c.BatchSize > MaxBatchSize:
		return bad("BatchSize %d is not between 1 and %d", c.BatchSize, MaxBatchSize)
	case !c.batch && c.BatchSize > 1:
		return bad("BatchSize %d needs ConsumeBatch and a BatchHandler", c.BatchSize)
	case c.Lease < time.Second:
		return bad("Lease %v is below 1s", c.Lease)
	case !isName(c.Instance):
		return bad("Instance %q must be letters, digits, - and _", c.Instance)
	case c.Strategy == KeyBased && c.Workers > 1:
		return bad("a key-based consumer handles each partition with one worker; Workers is %d", c.Workers)
	case c.Strategy == KeyBased && c.MaxAckPending != c.BatchSize:
		return bad("a key-based consumer has one batch (BatchSize %d) in flight per partition; MaxAckPending is %d", c.BatchSize, c.MaxAckPending)
	}
	for _, s := range c.Subjects {
		tokens := strings.Split(s, ".")
		if len(tokens) != 3 || slices.Contains(tokens, "") || strings.ContainsAny(s, "*> \t") {
			return bad("subject %q is not a type subject without version, <domain>.<entity>.<action>", s)
		}
	}
	return nil
}

// isName reports whether s is a non-empty name of letters, digits, "-" and
// "_", usable as a durable name and a KV key token.
func isName(s string) bool {
	if s == "" || len(s) > 128 {
		return false
	}
	for _, r := range s {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '_') {
			return false
		}
	}
	return true
}

// PartitionDurable is the durable consumer of partition p of a key-based
// consumer.
func PartitionDurable(durable string, p int) string {
	return durable + "-p" + strconv.Itoa(p)
}

// durableConfig is the JetStream configuration of one durable consumer of
// cfg: the shared one (p < 0) or partition p's.
//
// A partition's durable delivers to one pinned client at a time (a
// priority group, ownerGroup): its owner's. A new owner unpins the
// previous one once, after takeOver, before it fetches, so an owner that
// lost its lease while stalled, a frozen process say, gets nothing more
// when it wakes: JetStream answers its pull requests with a pin mismatch.
// The pin also lapses after PinnedTTL without a pull request from its
// client; the client's next request then gets a mismatch and nats.go
// sends another, which is pinned again.
func durableConfig(cfg ConsumerConfig, p int) jetstream.ConsumerConfig {
	cc := jetstream.ConsumerConfig{
		Durable:        cfg.Durable,
		FilterSubjects: filters(cfg.Subjects, p),
		AckPolicy:      jetstream.AckExplicitPolicy,
		AckWait:        cfg.AckWait,
		MaxDeliver:     spareDelivery(cfg.Retry.MaxDeliver),
		MaxAckPending:  cfg.MaxAckPending,
		DeliverPolicy:  jetstream.DeliverAllPolicy,
	}
	if p >= 0 {
		cc.Durable = PartitionDurable(cfg.Durable, p)
		cc.PriorityPolicy = jetstream.PriorityPolicyPinned
		cc.PriorityGroups = []string{ownerGroup}
		cc.PinnedTTL = max(cfg.Lease, 2*pinnedPullExpiry(cfg.Lease))
	}
	return cc
}

// ownerGroup is the priority group through which a key-based partition's
// owner pulls, pinned (durableConfig).
const ownerGroup = "owner"

// pinnedPullExpiry is how long a pull request of a partition's owner
// lives, given its lease (or the durable's PinnedTTL, the same or at least
// twice the result): half of it, at least 1s, at most 10s. So the requests
// of an owner that stalls have expired, and cannot be pinned or delivered
// to, by the time its lease does and another member takes the partition.
func pinnedPullExpiry(lease time.Duration) time.Duration {
	return min(max(lease/2, time.Second), 10*time.Second)
}

// unpin unpins the client of a partition's durable before its new owner
// fetches. A failure is logged, not fatal: the pin then lapses after the
// durable's PinnedTTL. It runs once per ownership, not each time run
// declares the consumer again: an owner that stalled and wakes still
// believing it owns the partition must not unpin its successor.
func unpin(ctx context.Context, js jetstream.JetStream, stream string, cc jetstream.ConsumerConfig, log *slog.Logger) {
	st, err := js.Stream(ctx, stream)
	if err == nil {
		err = st.UnpinConsumer(ctx, cc.Durable, ownerGroup)
	}
	if err != nil && ctx.Err() == nil {
		log.Warn("consumer group: cannot unpin the partition's previous owner; fetching once its pin lapses",
			"durable", cc.Durable, "err", err, "pinned_ttl", cc.PinnedTTL)
	}
}

// spareDelivery is the MaxDeliver of a durable whose retry policy allows
// maxDeliver: one more. The consumer gives up on delivery maxDeliver itself
// and stores the dead letter, with its error, before it terminates the
// message; a process that dies during that delivery leaves the message to
// the spare one, where its successor does the same. Without it JetStream
// would give up first, and its MAX_DELIVERIES advisory, sent after the
// message is settled and dropped when the server stops or the advisory
// stream has no leader meanwhile, would be the only record. Zero (no limit)
// stays zero.
func spareDelivery(maxDeliver int) int {
	if maxDeliver > 0 {
		return maxDeliver + 1
	}
	return maxDeliver
}

// ensureConsumer creates or updates a durable consumer: explicit acks,
// bounded AckWait and MaxAckPending, delivering from the start of the
// stream. Stopping a consumer never deletes it.
func ensureConsumer(ctx context.Context, js jetstream.JetStream, stream string, cc jetstream.ConsumerConfig) (jetstream.Consumer, error) {
	c, err := js.CreateOrUpdateConsumer(ctx, stream, cc)
	if err != nil {
		return nil, fmt.Errorf("jetstream: consumer %s on %s: %w", cc.Durable, stream, err)
	}
	return c, nil
}

// Consume runs this instance's part of the consumer cfg declares until ctx is
// done: it joins the group, then handles events by the group's Strategy. On
// stop it finishes the messages in hand (acking those that succeed), leaves
// the rest for redelivery, leaves the group and returns when its workers
// have. If a durable consumer disappears while running (deleted by an
// operator, a stream restored), it is declared again: a consumer never stops
// silently. A config that cannot run is an error wrapping ErrBadConfig.
func Consume(ctx context.Context, js jetstream.JetStream, cfg ConsumerConfig, h Handler, log *slog.Logger) error {
	return consume(ctx, js, cfg, log, func(ctx context.Context, cons jetstream.Consumer, s *settler) error {
		return consumeLoop(ctx, cons, h, s)
	})
}

// loopFunc handles the messages of one durable consumer until ctx is done
// (nil) or receiving fails (an error).
type loopFunc func(ctx context.Context, cons jetstream.Consumer, s *settler) error

// consume is Consume and ConsumeBatch: it joins the group and runs loop on
// each durable this instance holds.
func consume(ctx context.Context, js jetstream.JetStream, cfg ConsumerConfig, log *slog.Logger, loop loopFunc) error {
	cfg = cfg.withDefaults()
	if err := cfg.validate(); err != nil {
		return err
	}
	log = log.With("consumer", cfg.Durable, "stream", cfg.Stream, "instance", cfg.Instance)
	metrics, err := newConsumerMetrics(cfg.Telemetry, cfg.Durable)
	if err != nil {
		return err
	}
	s := &settler{retry: cfg.Retry, deadLetter: cfg.DeadLetter, ackWait: cfg.AckWait, log: log,
		tracer: cfg.Telemetry.Tracer(tracerName), tracing: cfg.Telemetry.Tracing(), metrics: metrics, firstFailure: map[uint64]time.Time{}, terminated: map[uint64]bool{},
		batchSize: cfg.BatchSize, batchWait: cfg.BatchWait, handleTimeout: cfg.HandleTimeout, ping: cfg.Ping}
	partitions := 0
	if cfg.Strategy == KeyBased {
		n, err := Partitions(ctx, js, cfg.Stream)
		if err != nil {
			return fmt.Errorf("%w: consumer %q is key-based: %w", ErrBadConfig, cfg.Durable, err)
		}
		partitions = n
	}
	// Every durable is declared before the group starts, so each partition
	// shows its backlog even while no member owns it.
	for p := range max(partitions, 1) {
		if cfg.Strategy == RoundRobin {
			p = -1
		}
		if _, err := ensureConsumer(ctx, js, cfg.Stream, durableConfig(cfg, p)); err != nil {
			return err
		}
	}
	// An old server (before 2.11) cannot make the bucket: an error at
	// start, not a group that never forms.
	if _, err := ensureGroupBucket(ctx, js, cfg, partitions); err != nil {
		return err
	}
	ensure := func(ctx context.Context) (jetstream.KeyValue, error) {
		return ensureGroupBucket(ctx, js, cfg, partitions)
	}
	m := newMember(ensure, cfg, partitions, func(ctx context.Context, p int) {
		cc := durableConfig(cfg, p)
		if cfg.Strategy == KeyBased {
			takeOver(ctx, js, cfg.Stream, cc.Durable, cfg.Lease, cfg.AckWait, log)
			unpin(ctx, js, cfg.Stream, cc, log)
		}
		run(ctx, js, cfg.Stream, cc, loop, s)
	}, log)
	if cfg.Strategy == KeyBased {
		return m.run(ctx)
	}
	var wg sync.WaitGroup
	wctx, stop := context.WithCancel(ctx)
	wg.Go(func() {
		defer stop()
		_ = m.run(wctx)
	})
	for range cfg.Workers {
		wg.Go(func() { run(wctx, js, cfg.Stream, durableConfig(cfg, -1), loop, s) })
	}
	wg.Wait()
	return ctx.Err()
}

// takeOver makes a new owner of a key-based partition start where every
// event before is settled. When deliveries of the partition are out (its
// previous owner died with a batch in hand, handed one back, or was
// delivered events it never handled), fetching at once could hand this
// owner later events of a key before JetStream redelivers the earlier ones
// (it queues redeliveries as their AckWait or Nak delay runs out, not in
// stream order across those). So it resets the durable to its ack floor
// (nats-server 2.14+): JetStream forgets those deliveries and delivers
// again, in stream order, everything after the last event settled in order.
// Events handled after that point come again and are skipped as handled
// (processed_events), so each still takes effect once.
//
// First it waits a fifth of the lease, the interval at which members renew:
// a previous owner still alive (its lease taken from it) notices within it
// and stops fetching, and its last acks and hand-backs arrive before the
// reset rather than after it, on the new deliveries.
//
// A reset forgets JetStream's delivery counts, which MaxDeliver is counted
// on. So a partition whose owners settled nothing since its durable was
// reset (or made) is not reset again: a batch that kills its process, or
// that keeps being handed back, is redelivered with its count going up and
// is dead-lettered after MaxDeliver, as without resets, instead of going
// round the group forever. Then, and when the reset fails (an older
// server), the new owner waits out the AckWait instead, which narrows the
// window for a reorder but does not close it.
//
// A partition with nothing out starts at once: the common case, and a
// handover by a member that finished its batch.
func takeOver(ctx context.Context, js jetstream.JetStream, stream, durable string, lease, ackWait time.Duration, log *slog.Logger) {
	info := func() (*jetstream.ConsumerInfo, error) {
		c, err := js.Consumer(ctx, stream, durable)
		if err != nil {
			return nil, err
		}
		return c.CachedInfo(), nil
	}
	ci, err := info()
	if err == nil && ci.NumAckPending == 0 {
		return
	}
	if err == nil {
		select {
		case <-ctx.Done():
			return
		case <-time.After(lease / 5):
		}
		ci, err = info()
	}
	switch {
	case err != nil:
		err = fmt.Errorf("read the durable: %w", err)
	case ci.NumAckPending == 0:
		return
	case ci.AckFloor.Consumer == 0:
		err = errors.New("nothing settled since the durable was reset or made: its delivery counts are kept, for MaxDeliver")
	default:
		r, rerr := js.ResetConsumer(ctx, stream, durable)
		if rerr == nil {
			log.Info("consumer group: the previous owner's deliveries were out; the partition starts again after its last settled event",
				"durable", durable, "ack_pending", ci.NumAckPending, "from_seq", r.ResetSeq)
			return
		}
		err = fmt.Errorf("reset to the ack floor: %w", rerr)
	}
	log.Warn("consumer group: the partition does not start again after its last settled event; waiting its AckWait before fetching",
		"durable", durable, "reason", err, "wait", ackWait)
	select {
	case <-ctx.Done():
	case <-time.After(ackWait):
	}
}

// healthyRun is how long a consumer must have received before a failure
// starts its back-off afresh.
const healthyRun = time.Minute

// run handles the messages of one durable consumer until ctx is done,
// declaring it again (after a backoff) whenever receiving fails.
func run(ctx context.Context, js jetstream.JetStream, stream string, cc jetstream.ConsumerConfig, loop loopFunc, s *settler) {
	for failures := 0; ctx.Err() == nil; {
		began := time.Now()
		err := func() error {
			cons, err := ensureConsumer(ctx, js, stream, cc)
			if err != nil {
				return err
			}
			return loop(ctx, cons, s)
		}()
		if ctx.Err() != nil {
			return
		}
		if time.Since(began) > healthyRun {
			failures = 0 // it ran well for a while: a new failure, not the same one
		}
		failures++
		wait := Backoff(failures)
		s.log.Error("consumer: stopped receiving; declaring it again", "durable", cc.Durable, "err", err, "retry_in", wait)
		select {
		case <-ctx.Done():
		case <-time.After(wait):
		}
	}
}

// consumeLoop handles the messages of cons one at a time until ctx is done
// (nil) or its message iterator ends (an error). When ctx is done it drains
// the iterator: messages already delivered to it are handled, not left to
// wait out their AckWait.
func consumeLoop(ctx context.Context, cons jetstream.Consumer, h Handler, s *settler) error {
	it, err := messages(cons, 1)
	if err != nil {
		return fmt.Errorf("jetstream: %w", err)
	}
	defer it.Stop()
	stop := context.AfterFunc(ctx, it.Drain)
	defer stop()
	for {
		msg, err := nextMsg(ctx, it, cons, s)
		if msg == nil {
			return err
		}
		// A message in hand is finished even when ctx is cancelled, so a
		// committed effect is acked; HandleTimeout bounds it.
		hctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), s.handleTimeout)
		s.handle(hctx, msg, h)
		cancel()
	}
}

// nextMsg waits for the iterator's next message. A nil message ends the
// consumer's loop, with nil when ctx is done (the iterator drained) or with
// the error that makes the consumer declare itself again.
func nextMsg(ctx context.Context, it jetstream.MessagesContext, cons jetstream.Consumer, s *settler) (jetstream.Msg, error) {
	for missed := 0; ; {
		msg, err := it.Next()
		switch {
		case err == nil:
			return msg, nil
		case errors.Is(err, jetstream.ErrMsgIteratorClosed):
			if ctx.Err() != nil {
				return nil, nil
			}
			return nil, errors.New("message iterator closed")
		case errors.Is(err, jetstream.ErrNoHeartbeat):
			// No heartbeat for two intervals while waiting: the consumer
			// may be gone (deleted, NATS moved), or this process did not
			// run (stopped, starved). Declare it again if it is gone, or
			// if it goes on missing them; otherwise pull on: the iterator
			// sends a new request, and a new iterator would lose the
			// partition's pin.
			missed++
			ictx, cancel := context.WithTimeout(ctx, infoTimeout)
			_, ierr := cons.Info(ictx)
			cancel()
			if ierr != nil || missed >= maxMissedHeartbeats {
				return nil, fmt.Errorf("jetstream: %w (%d in a row; reading the consumer: %v)", err, missed, ierr)
			}
			s.log.Info("consumer: missed heartbeats, the consumer is still there; pulling on", "durable", cons.CachedInfo().Name)
		case errors.Is(err, jetstream.ErrConsumerDeleted):
			return nil, fmt.Errorf("jetstream: %w", err)
		default:
			s.log.Warn("consumer: next", "durable", cons.CachedInfo().Name, "err", err)
		}
	}
}

// infoTimeout bounds the read of a consumer that missed its heartbeats,
// and after maxMissedHeartbeats misses in a row it is declared again.
const (
	infoTimeout         = 5 * time.Second
	maxMissedHeartbeats = 3
)

// PullOptions are the pull settings of every shopbus consumer (a
// key-based partition's owner pulls for shorter, see messages): at most
// max messages buffered, pull requests that expire after 10s with
// heartbeats every 5s, and missing heartbeats reported, so a consumer that
// was deleted or lost is noticed within about 10s and declared again.
func PullOptions(max int) []jetstream.PullMessagesOpt {
	return pullOptions(max, 10*time.Second)
}

func pullOptions(max int, expiry time.Duration) []jetstream.PullMessagesOpt {
	return []jetstream.PullMessagesOpt{
		jetstream.PullMaxMessages(max),
		jetstream.PullExpiry(expiry),
		jetstream.PullHeartbeat(expiry / 2),
		jetstream.WithMessagesErrOnMissingHeartbeat(true),
	}
}

// messages is cons's message iterator with PullOptions, or, on a
// partition's durable, with pull requests in its owner group that expire
// within half its PinnedTTL, so within the lease (pinnedPullExpiry).
func messages(cons jetstream.Consumer, max int) (jetstream.MessagesContext, error) {
	cc := cons.CachedInfo().Config
	if cc.PriorityPolicy != jetstream.PriorityPolicyPinned {
		return cons.Messages(PullOptions(max)...)
	}
	return cons.Messages(append(pullOptions(max, pinnedPullExpiry(cc.PinnedTTL)), jetstream.PullPriorityGroup(ownerGroup))...)
}

// handleTimeout is ConsumerConfig.HandleTimeout when it is 0, and
// deadLetterTimeout bounds the storing of a dead letter.
const (
	handleTimeout     = 20 * time.Second
	deadLetterTimeout = 10 * time.Second
)

// Reasons given to TermWithReason, which the MSG_TERMINATED advisory carries
// to the dead-letter queue: "<kind>: <error> [first failure <RFC 3339>]".
const (
	// TermPoison marks a permanent failure, terminated at once.
	TermPoison = "poison"
	// TermExhausted marks a transient failure on the last allowed delivery.
	TermExhausted = "retries exhausted"
	// TermFiled ends the reason of a message whose dead letter the consumer
	// stored before terminating it (ConsumerConfig.DeadLetter): the
	// advisory's collector has nothing to add.
	TermFiled = "[filed]"
)

// settler settles messages: ack, nak with delay, or term.
type settler struct {
	retry         RetryPolicy
	deadLetter    DeadLetterFunc
	ackWait       time.Duration
	log           *slog.Logger
	tracer        trace.Tracer
	tracing       bool // spans are recorded
	metrics       *consumerMetrics
	batchSize     int
	batchWait     time.Duration
	handleTimeout time.Duration
	ping          func(context.Context) error // ConsumerConfig.Ping

	mu           sync.Mutex
	firstFailure map[uint64]time.Time // by stream sequence, for the DLQ
	terminated   map[uint64]bool      // stream sequences this consumer dead-lettered (stale)
}

// Outcomes of handling an event, the outcome label of the consumer metrics
// and the shopbus.outcome attribute of its span.
const (
	OutcomeAcked        = "acked"
	OutcomeRetried      = "retried"
	OutcomeDeadLettered = "dead_lettered"
	// OutcomePaused: a batch whose handler found PostgreSQL unreachable,
	// waiting in hand without spending its deliveries.
	OutcomePaused = "paused"
)

// handle runs h on msg, settles msg, and records the outcome: a span that
// continues the event's trace, and the consumer's metrics.
func (s *settler) handle(ctx context.Context, msg jetstream.Msg, h Handler) {
	meta, err := msg.Metadata()
	if err != nil {
		s.log.Error("consumer: message without JetStream metadata", "subject", event.RedactSubject(msg.Subject()), "err", err)
		return
	}
	if s.stale(msg, meta) {
		return
	}
	start := time.Now()
	d, err := decode(msg, meta)
	if d != nil {
		ctx = event.ContextWithTrace(ctx, d.Envelope)
	}
	span := trace.SpanFromContext(ctx) // the event's, not recording
	if s.tracing {
		ctx, span = s.tracer.Start(ctx, "process "+typeOf(msg.Subject()), trace.WithSpanKind(trace.SpanKindConsumer),
			trace.WithAttributes(
				attribute.String("messaging.system", "nats"),
				attribute.String("messaging.operation.type", "process"),
				attribute.String("messaging.destination.name", event.RedactSubject(msg.Subject())),
				attribute.String("messaging.consumer.group.name", meta.Consumer),
				attribute.Int64("messaging.nats.stream_sequence", int64(meta.Sequence.Stream)),
				attribute.Int64("messaging.nats.delivered", int64(meta.NumDelivered)),
			))
		if d != nil {
			span.SetAttributes(attribute.String("messaging.message.id", d.Envelope.GetId()))
		}
	}
	if err == nil {
		stop := keepAlive(s.ackWait/2, msg)
		err = s.call(ctx, func(ctx context.Context) error { return h(ctx, d) })
		stop()
	}
	outcome := s.settle(ctx, msg, meta, err)
	if s.tracing {
		span.SetAttributes(attribute.String("shopbus.outcome", outcome))
		if err != nil {
			span.RecordError(err)
			span.SetStatus(codes.Error, truncate(err.Error(), 200))
		}
		span.End()
	}
	s.metrics.record(ctx, meta.Consumer, outcome, time.Since(start))
}

// settle acks, retries or terminates msg after its handler returned err,
// and says which. A transient failure on the last allowed delivery is
// terminated with its error (rather than left to JetStream's MAX_DELIVERIES
// advisory, which cannot say what went wrong), so the dead letter records
// the last error.
func (s *settler) settle(ctx context.Context, msg jetstream.Msg, meta *jetstream.MsgMetadata, err error) string {
	seq := meta.Sequence.Stream
	attrs := []any{"subject", event.RedactSubject(msg.Subject()), "stream_seq", seq, "delivered", meta.NumDelivered}
	switch {
	case err == nil:
		s.forget(seq)
		// Its own bound: an ack sent while NATS is away is never answered,
		// and the handler's time may be nearly used up.
		actx, cancel := context.WithTimeout(context.WithoutCancel(ctx), ackTimeout)
		defer cancel()
		if err := msg.DoubleAck(actx); err != nil {
			// The effect is committed; a redelivery finds it in
			// processed_events.
			s.log.Warn("consumer: ack not confirmed; the event may be redelivered", append(attrs, "err", err)...)
		}
		return OutcomeAcked
	case IsPermanent(err), s.retry.MaxDeliver > 0 && int(meta.NumDelivered) >= s.retry.MaxDeliver:
		kind := TermPoison
		if !IsPermanent(err) {
			kind = TermExhausted
		}
		return s.terminate(ctx, msg, meta, kind, err, 0)
	default:
		s.remember(seq, time.Now())
		delay := s.retry.Delay(int(meta.NumDelivered))
		s.log.Warn("consumer: transient failure; retrying", append(attrs, "err", scrubbed(err, msg), "retry_in", delay)...)
		if err := msg.NakWithDelay(delay); err != nil {
			s.log.Warn("consumer: nak", append(attrs, "err", err)...)
		}
		return OutcomeRetried
	}
}

// terminate dead-letters msg (kind is TermPoison or TermExhausted, err the
// last failure, attempts the handler calls of a batch retried in place, or
// 0) and terminates it; if the dead letter cannot be stored, msg is retried
// instead, and the outcome says which.
func (s *settler) terminate(ctx context.Context, msg jetstream.Msg, meta *jetstream.MsgMetadata, kind string, err error, attempts int) string {
	seq := meta.Sequence.Stream
	attrs := []any{"subject", event.RedactSubject(msg.Subject()), "stream_seq", seq, "delivered", meta.NumDelivered}
	// What is logged and dead-lettered of the failure is without the
	// event's personal and sensitive values (docs/governance.md).
	errText := scrubbed(err, msg)
	first := s.forget(seq)
	if first.IsZero() {
		first = time.Now()
	}
	var tried string
	if attempts > int(meta.NumDelivered) {
		tried = fmt.Sprintf(" [attempts %d]", attempts)
	}
	reason := fmt.Sprintf("%s: %s%s [first failure %s]", kind, truncate(errText, 400), tried, first.UTC().Format(time.RFC3339Nano))
	if s.deadLetter != nil {
		// Its own time: the handler may have used up ctx's.
		dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), deadLetterTimeout)
		err := s.deadLetter(dctx, msg, reason)
		cancel()
		if err != nil {
			if int(meta.NumDelivered) <= s.retry.MaxDeliver {
				s.remember(seq, first)
			} // else no redelivery (the spare one is spent): JetStream's MAX_DELIVERIES advisory files it
			s.log.Warn("consumer: dead letter not stored; retrying", append(attrs, "err", err)...)
			_ = msg.NakWithDelay(s.retry.Delay(int(meta.NumDelivered)))
			return OutcomeRetried
		}
		reason += " " + TermFiled
	}
	s.log.Error("consumer: giving up; terminating (dead-letter queue)", append(attrs, "err", errText, "kind", kind)...)
	if err := msg.TermWithReason(reason); err != nil {
		s.log.Warn("consumer: term", append(attrs, "err", err)...)
	}
	s.markTerminated(seq)
	return OutcomeDeadLettered
}

// markTerminated records that this consumer dead-lettered the event at
// stream sequence seq (bounded, like remember).
func (s *settler) markTerminated(seq uint64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.terminated) >= 10_000 {
		for k := range s.terminated {
			delete(s.terminated, k)
			break
		}
	}
	s.terminated[seq] = true
}

// stale reports whether msg is another copy of an event this consumer has
// dead-lettered, and if so terminates it again, without handling or filing
// it. JetStream can deliver an event again while its first copy is still
// in hand: one that waits in the iterator, where nothing keeps it alive,
// longer than its AckWait (behind a batch handled one event at a time),
// is delivered again before the Term of the first copy. Handled, such a
// copy would be filed twice, or take effect after the events of its key
// that followed it, although it is in the dead-letter queue.
func (s *settler) stale(msg jetstream.Msg, meta *jetstream.MsgMetadata) bool {
	s.mu.Lock()
	dead := s.terminated[meta.Sequence.Stream]
	s.mu.Unlock()
	if !dead {
		return false
	}
	s.log.Info("consumer: another copy of an event dead-lettered already; terminated again", "subject", event.RedactSubject(msg.Subject()),
		"stream_seq", meta.Sequence.Stream, "delivered", meta.NumDelivered)
	// Filed with its first copy: the collector files no other.
	if err := msg.TermWithReason("a copy of an event dead-lettered already " + TermFiled); err != nil {
		s.log.Warn("consumer: term", "subject", event.RedactSubject(msg.Subject()), "stream_seq", meta.Sequence.Stream, "err", err)
	}
	return true
}

// scrubbed is err's message without the values of the personal and
// sensitive fields of the events in msgs, and without their partition keys
// when those are personal: what a consumer may log or dead-letter of a
// handler's error, which can quote anything of the event.
func scrubbed(err error, msgs ...jetstream.Msg) string {
	var s event.Scrubber
	for _, msg := range msgs {
		s.Add(msg.Subject(), msg.Data())
	}
	return s.ScrubError(err)
}

// remember records at as the first failure of seq, unless it has one.
func (s *settler) remember(seq uint64, at time.Time) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.firstFailure[seq]; ok {
		return
	}
	if len(s.firstFailure) >= 10_000 { // bounded: forget an arbitrary one
		for k := range s.firstFailure {
			delete(s.firstFailure, k)
			break
		}
	}
	s.firstFailure[seq] = at
}

func (s *settler) forget(seq uint64) time.Time {
	s.mu.Lock()
	defer s.mu.Unlock()
	t := s.firstFailure[seq]
	delete(s.firstFailure, seq)
	return t
}

func decode(msg jetstream.Msg, meta *jetstream.MsgMetadata) (*Delivery, error) {
	return decodeParts(msg.Subject(), msg.Data(), msg.Headers(), meta)
}

// decodeParts checks and decodes an event published on subject with data
// and headers h.
func decodeParts(subject string, data []byte, h nats.Header, meta *jetstream.MsgMetadata) (*Delivery, error) {
	env, err := event.Decode(data)
	if err != nil {
		return nil, err
	}
	if err := event.CheckHeaders(h, env); err != nil {
		return nil, err
	}
	if err := event.CheckSource(env); err != nil {
		return nil, err
	}
	if key, ok := KeyOf(subject); env.GetPartitionKey() != "" && (!ok || key != env.GetPartitionKey()) {
		// A key-based consumer orders by the subject's key: one that
		// disagrees with the envelope would put the event out of order.
		return nil, fmt.Errorf("%w: subject %s does not end in the envelope's partition key %q", event.ErrInvalid, subject, env.GetPartitionKey())
	}
	payload, spec, err := event.Latest(env)
	if err != nil {
		return nil, err
	}
	return &Delivery{Envelope: env, Event: payload, Spec: spec, Subject: subject, Metadata: meta}, nil
}

// keepAlive tells JetStream every interval that msgs are still being
// handled, until the returned stop is called, so a handler that runs longer
// than AckWait is not redelivered meanwhile.
func keepAlive(every time.Duration, msgs ...jetstream.Msg) (stop func()) {
	if every <= 0 {
		return func() {}
	}
	var mu sync.Mutex
	stopped := false
	var t *time.Timer
	mu.Lock()
	t = time.AfterFunc(every, func() {
		mu.Lock()
		defer mu.Unlock()
		if !stopped {
			for _, msg := range msgs {
				_ = msg.InProgress()
			}
			t.Reset(every)
		}
	})
	mu.Unlock()
	return func() {
		mu.Lock()
		defer mu.Unlock()
		stopped = true
		t.Stop()
	}
}

// truncate cuts s to at most n bytes without splitting a character.
func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return strings.ToValidUTF8(s[:n], "")
}
