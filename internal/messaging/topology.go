package messaging

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/shopbus/shopbus/internal/event"
)

// DefaultDuplicateWindow is the JetStream duplicate window of every stream:
// a publish whose Nats-Msg-Id was seen within it is dropped. It must cover
// the longest time between an outbox row's first publish and its re-publish
// after a relay crash, restart or NATS outage; 10 minutes covers a restart or
// redeploy with room to spare, while the server keeps one id per message
// published in the window (at 1,000 events/s, 600k ids, some tens of MB).
// Beyond it, the consumers' processed_events table still absorbs a
// duplicate.
const DefaultDuplicateWindow = 10 * time.Minute

// StreamOptions are the settings of every stream EnsureStreams declares.
// How long a stream keeps its events is not one of them: it is declared by
// the events' contracts (StreamRetention).
type StreamOptions struct {
	// Replicas is the number of copies in a cluster (1 embedded, 3 in
	// production).
	Replicas int
	// DuplicateWindow is the deduplication window (DefaultDuplicateWindow).
	DuplicateWindow time.Duration
	// Partitions is the number of partitions JetStream maps partition keys
	// to (DefaultPartitions when 0, at most MaxPartitions). It is fixed when
	// a stream is created: changing it would send a key's later events to
	// another partition than its earlier ones, so EnsureStream refuses to.
	Partitions int
	// AtomicBatches lets the relays publish a backlog in atomic batches
	// (relay_atomic.go): the streams allow them. The operator turns it on
	// only once every server of the cluster runs AtomicPublishVersion or
	// later: an older stream leader would store a batch's messages one by
	// one, without its all-or-nothing. EnsureStream turns it on where it is
	// off, never off where it is on (another process may have turned it
	// on), and refuses it when the server it is connected to is older.
	AtomicBatches bool
}

func (o StreamOptions) withDefaults() StreamOptions {
	if o.DuplicateWindow == 0 {
		o.DuplicateWindow = DefaultDuplicateWindow
	}
	if o.Partitions == 0 {
		o.Partitions = DefaultPartitions
	}
	o.Replicas = max(o.Replicas, 1)
	return o
}

// StreamName returns the stream that holds the events of a domain's bounded
// context: "ECOMMERCE_ORDER" for ecommerce/order.
func StreamName(domain, context string) string {
	return strings.ToUpper(domain + "_" + context)
}

// StreamOf returns the name of the stream that holds spec's events.
func StreamOf(spec event.Spec) string { return StreamName(spec.Domain, spec.Context) }

// KeyBasedConsumer declares the key-based consumer durable of subjects
// (type subjects without version, as ConsumerConfig.Subjects), on the
// stream the event catalog puts their events in: the first subject's (no
// Stream, which ConsumeBatch refuses, when the catalog has no such event).
func KeyBasedConsumer(durable string, subjects ...string) ConsumerConfig {
	cfg := ConsumerConfig{Durable: durable, Subjects: subjects, Strategy: KeyBased}
	for _, spec := range event.Catalog() {
		if len(subjects) > 0 && spec.Domain+"."+spec.Name == subjects[0] {
			cfg.Stream = StreamOf(spec)
		}
	}
	return cfg
}

// IsEventStream reports whether name is the stream of one of the event
// catalog's bounded contexts (EnsureStreams declares them).
func IsEventStream(name string) bool {
	for _, spec := range event.Catalog() {
		if StreamOf(spec) == name {
			return true
		}
	}
	return false
}

// EnsureStreams creates or updates one stream per bounded context of the
// event catalog, holding the events of its context (EnsureStream). It is
// idempotent: running it at every start is safe.
func EnsureStreams(ctx context.Context, js jetstream.JetStream, opts StreamOptions) error {
	subjects := map[string][]string{}
	var names []string
	for _, spec := range event.Catalog() {
		name := StreamOf(spec)
		if _, ok := subjects[name]; !ok {
			names = append(names, name)
		}
		subjects[name] = append(subjects[name], spec.Subject())
	}
	for _, name := range names {
		if err := EnsureStream(ctx, js, name, subjects[name], opts); err != nil {
			return err
		}
	}
	return nil
}

// StreamRetention is how long a stream holding the events of the given type
// subjects keeps them: the longest retention their contracts declare
// ((shopbus.event.v1.event).retention_days), so no event leaves its stream
// before its own retention has passed. A type subject of no event of the
// catalog, or an event that declares no retention, is an error naming it.
func StreamRetention(typeSubjects []string) (time.Duration, error) {
	var longest time.Duration
	for _, ts := range typeSubjects {
		spec, err := event.LookupSubject(ts)
		if err != nil {
			return 0, fmt.Errorf("retention of %s: %w", ts, err)
		}
		if spec.Retention <= 0 {
			return 0, fmt.Errorf("retention of %s: %w: %s declares no retention_days in its (shopbus.event.v1.event) option",
				ts, event.ErrUngoverned, spec)
		}
		longest = max(longest, spec.Retention)
	}
	return longest, nil
}

// EnsureStream creates or updates the stream name holding the events whose
// type subjects ("<domain>.<entity>.<action>.v<N>") are given, published
// with their partition key as a fifth token, with file storage, the
// retention their contracts declare (StreamRetention) and a subject
// transform that stores each event with its partition (see partition.go). It
// refuses to change the partition count of an existing stream.
func EnsureStream(ctx context.Context, js jetstream.JetStream, name string, typeSubjects []string, opts StreamOptions) error {
	opts = opts.withDefaults()
	if opts.Partitions < 1 || opts.Partitions > MaxPartitions {
		return fmt.Errorf("jetstream: stream %s: %d partitions, want 1 to %d", name, opts.Partitions, MaxPartitions)
	}
	subjects := make([]string, len(typeSubjects))
	for i, ts := range typeSubjects {
		if tokens := strings.Split(ts, "."); len(tokens) != 4 || strings.ContainsAny(ts, "*> ") {
			return fmt.Errorf("jetstream: stream %s: type subject %q is not <domain>.<entity>.<action>.v<N>", name, ts)
		}
		subjects[i] = ts + ".*"
	}
	maxAge, err := StreamRetention(typeSubjects)
	if err != nil {
		return fmt.Errorf("jetstream: stream %s: %w", name, err)
	}
	want := jetstream.StreamConfig{
		Name:               name,
		Description:        "shopbus events of " + strings.ToLower(strings.Replace(name, "_", "/", 1)),
		Subjects:           subjects,
		SubjectTransform:   partitionTransform(opts.Partitions),
		Metadata:           map[string]string{MetadataPartitions: strconv.Itoa(opts.Partitions)},
		Storage:            jetstream.FileStorage,
		Retention:          jetstream.LimitsPolicy,
		MaxAge:             maxAge,
		Replicas:           opts.Replicas,
		Duplicates:         opts.DuplicateWindow,
		AllowAtomicPublish: opts.AtomicBatches,
	}
	if opts.AtomicBatches {
		v := js.Conn().ConnectedServerVersion()
		if atLeast, ok := VersionAtLeast(v, AtomicPublishVersion); !ok || !atLeast {
			return fmt.Errorf("jetstream: stream %s: atomic batches need nats-server %s or later; the server is %q", name, AtomicPublishVersion, v)
		}
	}
	if s, err := js.Stream(ctx, name); err == nil {
		have := s.CachedInfo().Config
		if n, err := partitionsOf(have); err == nil && n != opts.Partitions {
			return fmt.Errorf("jetstream: stream %s has %d partitions; changing it to %d would move keys between partitions "+
				"and break their order: keep %d, or drain and delete the stream first", name, n, opts.Partitions, n)
		}
		// Atomic batches are turned on, never off: another process may
		// have turned them on, and the relays read the stream's setting.
		want.AllowAtomicPublish = want.AllowAtomicPublish || have.AllowAtomicPublish
		if sameStream(have, want) {
			// Every instance runs this at start: an update that changes
			// nothing is not sent (nats-server 2.15 races a stream
			// update against a consumer being created on it).
			return nil
		}
	} else if !errors.Is(err, jetstream.ErrStreamNotFound) {
		return fmt.Errorf("jetstream: stream %s: %w", name, err)
	}
	if _, err := js.CreateOrUpdateStream(ctx, want); err != nil {
		return fmt.Errorf("jetstream: stream %s: %w", name, err)
	}
	return nil
}

// sameStream reports whether an existing stream's configuration has what
// EnsureStream would set.
func sameStream(have, want jetstream.StreamConfig) bool {
	return have.Description == want.Description && slices.Equal(have.Subjects, want.Subjects) &&
		have.SubjectTransform != nil && *have.SubjectTransform == *want.SubjectTransform &&
		have.Metadata[MetadataPartitions] == want.Metadata[MetadataPartitions] &&
		have.Storage == want.Storage && have.Retention == want.Retention && have.MaxAge == want.MaxAge &&
		have.Replicas == want.Replicas && have.Duplicates == want.Duplicates && have.AllowAtomicPublish == want.AllowAtomicPublish
}

// AtomicPublishVersion is the oldest nats-server the relays' atomic
// batches are declared on: 2.12.0 brought atomic batches without
// Nats-Msg-Id deduplication in them (nats-server#7391 added it in the 2.12
// series); 2.14 has it, and the embedded 2.15 is what the tests run.
const AtomicPublishVersion = "2.14.0"

// VersionAtLeast reports whether the nats-server version v
// ("major.minor.patch[-suffix]") is min or later; ok is false when either
// does not read as one.
func VersionAtLeast(v, min string) (atLeast, ok bool) {
	have, ok1 := parseVersion(v)
	want, ok2 := parseVersion(min)
	if !ok1 || !ok2 {
		return false, false
	}
	return slices.Compare(have, want) >= 0, true
}

// parseVersion reads "major.minor.patch[-suffix]".
func parseVersion(v string) ([]int, bool) {
	core, _, _ := strings.Cut(v, "-")
	parts := strings.Split(core, ".")
	if len(parts) != 3 {
		return nil, false
	}
	out := make([]int, 3)
	for i, p := range parts {
		n, err := strconv.Atoi(p)
		if err != nil {
			return nil, false
		}
		out[i] = n
	}
	return out, true
}
