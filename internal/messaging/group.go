package messaging

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"math/rand/v2"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// Consumer groups. The instances that run one consumer (one Durable) form a
// group whose state lives in a JetStream KV bucket of its own, with keys
// that expire: no coordinator of shopbus's own.
//
//	members.<instance>  a Member, written every Lease/5; it expires after
//	                    Lease without a write, and its expiry marker tells
//	                    the others at once
//	partitions.<n>      a Lease naming the partition's owner: taken with
//	                    Create (only if absent), renewed with Update at the
//	                    revision the owner last wrote (compare-and-set),
//	                    released with Delete at that revision
//
// Each member computes its share from the live members it sees (sorted by
// instance id, the first P mod M members take one partition more than the
// rest), releases the partitions above its share once their consumers have
// finished the event in hand, and takes free partitions up to its share.
// A member that stops deletes its keys, so the others take over at once; one
// that dies stops writing, its keys expire after Lease, and the others take
// over when the expiry marker arrives. A member that cannot renew a lease
// for 4/5 of Lease stops consuming that partition on its own.
//
// Per-key order at a handover: a partition's durable consumer has up to
// MaxAckPending events in flight (one for Consume, the batch size for
// ConsumeBatch), and JetStream redelivers an unacked one (after AckWait,
// which for key-based consumers is Lease) before anything newer, whichever
// member asks. A member that releases a partition first finishes what it
// holds (or hands back a batch waiting for a retry); a new owner that finds
// deliveries out (its predecessor died, or handed a batch back) resets the
// partition's durable to its ack floor before fetching (takeOver), so
// JetStream delivers them again in stream order, ahead of anything newer.
// Not covered: an owner that lost its lease while alive but stalled is not
// fenced (ADR 009).

// GroupBucketPrefix begins the name of every consumer group's KV bucket.
const GroupBucketPrefix = "shopbus-group-"

// GroupBucket returns the KV bucket of the consumer group durable.
func GroupBucket(durable string) string { return GroupBucketPrefix + durable }

// Metadata keys of a group's KV bucket, so the group can be listed without
// its members.
const (
	metadataStream   = "shopbus.stream"
	metadataStrategy = "shopbus.strategy"
)

// DefaultLease is how long a member's keys live without being renewed.
const DefaultLease = 5 * time.Second

// Member is one instance of a consumer group, as its member key records it.
type Member struct {
	// Instance identifies the member (ConsumerConfig.Instance).
	Instance string `json:"instance"`
	// Host is the host it runs on.
	Host string `json:"host"`
	// PID is its process id.
	PID int `json:"pid"`
	// Since is when it joined.
	Since time.Time `json:"since"`
}

// Lease names the owner of a partition, as its partition key records it.
type Lease struct {
	// Owner is the owning member's instance id.
	Owner string `json:"owner"`
	// Since is when the owner took the partition.
	Since time.Time `json:"since"`
}

const (
	memberKeyPrefix    = "members."
	partitionKeyPrefix = "partitions."
)

func partitionKey(p int) string { return partitionKeyPrefix + strconv.Itoa(p) }

// EnsureGroupBucket declares the KV bucket of cfg's consumer group
// (members and partition leases), creating it when missing and updating
// it when it is not as cfg wants (sending nothing otherwise): what the
// platform identity does for every service at start, since a service's own
// NATS identity may not declare streams (natsauth).
func EnsureGroupBucket(ctx context.Context, js jetstream.JetStream, cfg ConsumerConfig) error {
	cfg = cfg.withDefaults()
	partitions := 0
	if cfg.Strategy == KeyBased {
		n, err := Partitions(ctx, js, cfg.Stream)
		if err != nil {
			return fmt.Errorf("consumer group %s: %w", cfg.Durable, err)
		}
		partitions = n
	}
	_, err := ensureGroupBucket(ctx, js, cfg, partitions)
	return err
}

// ensureGroupBucket returns the KV bucket of cfg's group, declaring it
// only when it is missing or not as cfg wants it: a bucket the platform
// declared is used as it is, so an identity that may not declare streams
// still joins.
func ensureGroupBucket(ctx context.Context, js jetstream.JetStream, cfg ConsumerConfig, partitions int) (jetstream.KeyValue, error) {
	replicas, err := streamReplicas(ctx, js, cfg.Stream)
	if err != nil {
		return nil, fmt.Errorf("consumer group %s: %w", cfg.Durable, err)
	}
	want := groupBucketConfig(cfg, partitions, replicas)
	kv, err := js.KeyValue(ctx, want.Bucket)
	if err == nil {
		st, serr := kv.Status(ctx)
		if b, ok := st.(*jetstream.KeyValueBucketStatus); serr == nil && ok && sameGroupBucket(b.StreamInfo().Config, want) {
			return kv, nil
		}
	} else if !errors.Is(err, jetstream.ErrBucketNotFound) {
		return nil, fmt.Errorf("jetstream: consumer group bucket %s: %w", want.Bucket, err)
	}
	kv, err = js.CreateOrUpdateKeyValue(ctx, want)
	if err != nil {
		return nil, fmt.Errorf("jetstream: consumer group bucket %s (needs nats-server 2.11 or later; a service identity cannot declare it: the platform declares it at start): %w", want.Bucket, err)
	}
	return kv, nil
}

// streamReplicas returns the replicas of stream, or 1 when it does not
// exist (yet): a group's bucket has as many copies as the stream the group
// consumes, so in a cluster it survives what the stream survives.
func streamReplicas(ctx context.Context, js jetstream.JetStream, stream string) (int, error) {
	s, err := js.Stream(ctx, stream)
	switch {
	case errors.Is(err, jetstream.ErrStreamNotFound):
		return 1, nil
	case err != nil:
		return 0, fmt.Errorf("jetstream: stream %s: %w", stream, err)
	}
	return max(s.CachedInfo().Config.Replicas, 1), nil
}

// groupBucketConfig is the bucket of cfg's group, with replicas copies.
func groupBucketConfig(cfg ConsumerConfig, partitions, replicas int) jetstream.KeyValueConfig {
	return jetstream.KeyValueConfig{
		Bucket:      GroupBucket(cfg.Durable),
		Description: "shopbus consumer group " + cfg.Durable + ": members and partition leases",
		TTL:         cfg.Lease,
		// Expiries leave a marker, so watchers see a member die.
		LimitMarkerTTL: cfg.Lease,
		// Leases are rewritten every second: in memory, they cost no
		// fsync, and after a NATS restart every member takes its share
		// again.
		Storage: jetstream.MemoryStorage,
		// As many copies as the consumed stream: in a cluster, a bucket
		// on one node freezes the group while that node is down (members
		// keep what they hold, but a dead member's partitions are not
		// taken over and nobody joins).
		Replicas: replicas,
		Metadata: map[string]string{
			metadataStream:     cfg.Stream,
			metadataStrategy:   string(cfg.Strategy),
			MetadataPartitions: strconv.Itoa(partitions),
		},
	}
}

// sameGroupBucket reports whether a bucket's stream has what want asks.
func sameGroupBucket(have jetstream.StreamConfig, want jetstream.KeyValueConfig) bool {
	for k, v := range want.Metadata {
		if have.Metadata[k] != v {
			return false
		}
	}
	return have.MaxAge == want.TTL && have.SubjectDeleteMarkerTTL == want.LimitMarkerTTL && have.Storage == want.Storage &&
		max(have.Replicas, 1) == max(want.Replicas, 1)
}

// member is this instance's membership of a group: it keeps its member key
// alive and, for key-based consumers, owns its share of the partitions and
// runs consume for each while it owns it.
type member struct {
	ensure     func(context.Context) (jetstream.KeyValue, error)
	kv         jetstream.KeyValue
	self       Member
	lease      time.Duration
	partitions int
	consume    func(ctx context.Context, p int)
	log        *slog.Logger

	// What the watch of the bucket shows. seen is when each member's key
	// was last written, as the watch delivered it: a member not seen for
	// longer than the lease counts as gone even if its expiry marker never
	// arrived (a bucket lost with a NATS restart and declared again).
	members map[string]Member
	seen    map[string]time.Time
	owners  map[int]string
	ready   bool // the watch has delivered the bucket's current state

	held     map[int]*held
	released chan *held
	// dropped are the partitions given up without their lease (taken
	// over, or not renewed in time) whose consumers may still be finishing
	// their batch: leave waits for them too.
	dropped []*held
}

// held is a partition this member owns.
type held struct {
	partition int
	rev       uint64    // the revision of its last write, for compare-and-set
	renewed   time.Time // when that write was sent
	since     time.Time
	cancel    context.CancelFunc
	done      chan struct{} // closed when its consumer has returned
	releasing bool
}

func newMember(ensure func(context.Context) (jetstream.KeyValue, error), cfg ConsumerConfig, partitions int, consume func(context.Context, int), log *slog.Logger) *member {
	host, _ := os.Hostname()
	return &member{
		ensure:     ensure,
		self:       Member{Instance: cfg.Instance, Host: host, PID: os.Getpid(), Since: time.Now().UTC()},
		lease:      cfg.Lease,
		partitions: partitions,
		consume:    consume,
		log:        log,
		members:    map[string]Member{},
		seen:       map[string]time.Time{},
		owners:     map[int]string{},
		held:       map[int]*held{},
		released:   make(chan *held, partitions+1),
	}
}

// run keeps the membership until ctx is done, then leaves the group: it
// stops its consumers (each finishes the event in hand) and deletes its keys.
// When the bucket disappears (a NATS restart loses a memory bucket, an
// operator deletes it), it declares the bucket again and carries on.
func (m *member) run(ctx context.Context) error {
	defer m.leave()
	tick := time.NewTicker(m.lease / 5)
	defer tick.Stop()
	for failures := 0; ctx.Err() == nil; {
		kv, err := m.ensure(ctx)
		var w jetstream.KeyWatcher
		if err == nil {
			m.kv = kv
			w, err = kv.WatchAll(ctx)
		}
		if err != nil {
			failures++
			wait := Backoff(failures)
			if ctx.Err() == nil {
				m.log.Warn("consumer group: cannot watch the group; retrying", "err", err, "retry_in", wait)
			}
			select {
			case <-ctx.Done():
			case <-time.After(wait):
			}
			continue
		}
		failures = 0
		m.ready = false
		clear(m.members)
		clear(m.seen)
		clear(m.owners)
		_ = m.beat(ctx)
		m.watch(ctx, w, tick.C)
		_ = w.Stop()
	}
	return ctx.Err()
}

// watch handles the bucket's updates, the renewal ticks and the released
// partitions until ctx is done, the watcher ends or the bucket is gone.
func (m *member) watch(ctx context.Context, w jetstream.KeyWatcher, tick <-chan time.Time) {
	for {
		select {
		case <-ctx.Done():
			return
		case e, ok := <-w.Updates():
			if !ok {
				m.log.Warn("consumer group: watch ended; watching again")
				return
			}
			if e == nil {
				m.ready = true
			} else {
				m.apply(e)
			}
			m.reconcile(ctx)
		case <-tick:
			if err := m.beat(ctx); bucketGone(err) {
				m.log.Warn("consumer group: bucket gone; declaring it again", "err", err)
				return
			}
			m.renew(ctx)
			m.reconcile(ctx)
		case h := <-m.released:
			m.deleteLease(ctx, h)
		}
	}
}

// bucketGone reports whether err says the group's bucket does not exist.
func bucketGone(err error) bool {
	return errors.Is(err, jetstream.ErrBucketNotFound) || errors.Is(err, jetstream.ErrStreamNotFound) ||
		errors.Is(err, jetstream.ErrNoStreamResponse)
}

// apply records one update of the bucket.
func (m *member) apply(e jetstream.KeyValueEntry) {
	gone := e.Operation() != jetstream.KeyValuePut
	switch key := e.Key(); {
	case strings.HasPrefix(key, memberKeyPrefix):
		id := strings.TrimPrefix(key, memberKeyPrefix)
		if gone {
			delete(m.members, id)
			delete(m.seen, id)
			return
		}
		var mem Member
		if err := json.Unmarshal(e.Value(), &mem); err != nil {
			m.log.Warn("consumer group: unreadable member; ignored", "key", key, "err", err)
			return
		}
		m.members[id] = mem
		m.seen[id] = time.Now()
	case strings.HasPrefix(key, partitionKeyPrefix):
		p, err := strconv.Atoi(strings.TrimPrefix(key, partitionKeyPrefix))
		if err != nil || p < 0 || p >= m.partitions {
			return
		}
		owner := ""
		if !gone {
			var l Lease
			if err := json.Unmarshal(e.Value(), &l); err != nil {
				m.log.Warn("consumer group: unreadable lease; ignored", "key", key, "err", err)
				return
			}
			owner = l.Owner
		}
		if owner == "" {
			delete(m.owners, p)
		} else {
			m.owners[p] = owner
		}
		if h, ok := m.held[p]; ok && owner != m.self.Instance && e.Revision() > h.rev {
			// Taken by another member, or expired: no longer ours.
			m.log.Warn("consumer group: lost partition", "partition", p, "owner", owner)
			m.drop(p)
		}
	}
}

// beat writes this member's key.
func (m *member) beat(ctx context.Context) error {
	b, _ := json.Marshal(m.self)
	wctx, cancel := context.WithTimeout(ctx, m.lease/5)
	defer cancel()
	_, err := m.kv.Put(wctx, memberKeyPrefix+m.self.Instance, b)
	if err != nil && ctx.Err() == nil {
		m.log.Warn("consumer group: heartbeat failed", "err", err)
	}
	return err
}

// renew rewrites the lease of every partition held, at its last revision.
// A lease another member took is dropped at once; one that could not be
// written for 4/5 of the lease is dropped before it can expire.
func (m *member) renew(ctx context.Context) {
	for _, p := range slices.Sorted(maps.Keys(m.held)) {
		h := m.held[p]
		sent := time.Now()
		wctx, cancel := context.WithTimeout(ctx, m.lease/5)
		rev, err := m.kv.Update(wctx, partitionKey(p), m.leaseValue(h.since), h.rev)
		cancel()
		switch {
		case err == nil:
			h.rev, h.renewed = rev, sent
		case errors.Is(err, jetstream.ErrKeyRevisionMismatch) || errors.Is(err, jetstream.ErrKeyExists):
			m.log.Warn("consumer group: lease taken over", "partition", p)
			m.drop(p)
		case time.Since(h.renewed) > m.lease*4/5:
			m.log.Warn("consumer group: lease not renewed in time; stopping its consumer", "partition", p, "err", err)
			m.drop(p)
		case ctx.Err() == nil:
			m.log.Warn("consumer group: lease renewal failed", "partition", p, "err", err)
		}
	}
}

// reconcile moves this member toward its share: it releases partitions above
// it and takes free ones below it.
func (m *member) reconcile(ctx context.Context) {
	if !m.ready || m.partitions == 0 || ctx.Err() != nil {
		return
	}
	live := m.live()
	if !slices.Contains(live, m.self.Instance) {
		live = append(live, m.self.Instance)
		slices.Sort(live)
	}
	i := slices.Index(live, m.self.Instance)
	share := m.partitions / len(live)
	if i < m.partitions%len(live) {
		share++
	}
	var active []int
	for p, h := range m.held {
		if !h.releasing {
			active = append(active, p)
		}
	}
	slices.Sort(active)
	for len(active) > share {
		p := active[len(active)-1]
		active = active[:len(active)-1]
		m.release(p)
	}
	// Start looking where this member's share would begin, so members do
	// not all race for the same free partition.
	start := i * m.partitions / len(live)
	var took []int
	defer func() {
		if len(took) > 0 {
			m.log.Info("consumer group: took partitions", "partitions", took, "members", len(live))
		}
	}()
	// First the partitions the watch shows free; then, still below the
	// share, the others: Create fails while a lease lives, and succeeds
	// where the watch missed a lease's release or expiry (a bucket lost and
	// declared again by another member while this one kept watching).
	for pass := range 2 {
		for k := 0; k < m.partitions && len(active) < share; k++ {
			p := (start + k) % m.partitions
			if _, mine := m.held[p]; mine {
				continue
			}
			if _, taken := m.owners[p]; taken && pass == 0 {
				continue
			}
			if m.acquire(ctx, p) {
				active = append(active, p)
				took = append(took, p)
			}
		}
	}
}

// live returns the members whose heartbeat the watch delivered within a
// lease (and a fifth) of this member's own, sorted, and forgets the others
// with their partitions: their keys have expired, whether or not the watch
// delivered the expiry, so those partitions are free to try.
func (m *member) live() []string {
	// Judged against this member's own heartbeat as the watch delivered
	// it, not the clock: a watch (or a loop) running late then forgets
	// no one.
	ref, ok := m.seen[m.self.Instance]
	var live []string
	for id := range m.members {
		if id != m.self.Instance && ok && ref.Sub(m.seen[id]) > m.lease+m.lease/5 {
			m.log.Warn("consumer group: member not seen for a lease; counted as gone", "member", id)
			delete(m.members, id)
			delete(m.seen, id)
			for p, owner := range m.owners {
				if owner == id {
					delete(m.owners, p)
				}
			}
			continue
		}
		live = append(live, id)
	}
	slices.Sort(live)
	return live
}

func (m *member) leaseValue(since time.Time) []byte {
	b, _ := json.Marshal(Lease{Owner: m.self.Instance, Since: since})
	return b
}

// acquire takes partition p if no one holds it, and starts its consumer.
func (m *member) acquire(ctx context.Context, p int) bool {
	now := time.Now()
	wctx, cancel := context.WithTimeout(ctx, m.lease/5)
	rev, err := m.kv.Create(wctx, partitionKey(p), m.leaseValue(now.UTC()))
	cancel()
	if err != nil {
		if !errors.Is(err, jetstream.ErrKeyExists) && ctx.Err() == nil {
			m.log.Warn("consumer group: cannot take partition", "partition", p, "err", err)
		}
		return false
	}
	pctx, stop := context.WithCancel(context.WithoutCancel(ctx))
	h := &held{partition: p, rev: rev, renewed: now, since: now.UTC(), cancel: stop, done: make(chan struct{})}
	m.held[p] = h
	m.owners[p] = m.self.Instance
	go func() {
		defer close(h.done)
		m.consume(pctx, p)
	}()
	return true
}

// release stops partition p's consumer and, once it has returned, deletes
// the lease (in watch, through m.released).
func (m *member) release(p int) {
	h := m.held[p]
	h.releasing = true
	h.cancel()
	m.log.Info("consumer group: releasing partition", "partition", p)
	go func() {
		<-h.done
		m.released <- h
	}()
}

// deleteLease deletes the lease of released partition h, at the revision
// this member last wrote: if it expired meanwhile, the delete fails and the
// key is left to its new owner. A partition dropped while its consumer
// finished (and perhaps taken again since, by this member) is left alone:
// its lease, if any, is not h's.
func (m *member) deleteLease(ctx context.Context, h *held) {
	p := h.partition
	if m.held[p] != h {
		return
	}
	delete(m.held, p)
	wctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), m.lease/5)
	defer cancel()
	if err := m.kv.Delete(wctx, partitionKey(p), jetstream.LastRevision(h.rev)); err != nil {
		m.log.Warn("consumer group: release not recorded; the lease will expire", "partition", p, "err", err)
		return
	}
	delete(m.owners, p)
}

// drop stops partition p's consumer without touching its lease: it is
// another member's, or expired.
func (m *member) drop(p int) {
	if h, ok := m.held[p]; ok {
		h.cancel()
		delete(m.held, p)
		m.dropped = append(slices.DeleteFunc(m.dropped, finished), h)
	}
}

// finished reports whether h's consumer has returned.
func finished(h *held) bool {
	select {
	case <-h.done:
		return true
	default:
		return false
	}
}

// leave stops every consumer, waits for them (each finishes the event in
// hand), and deletes this member's leases and member key so the others
// take over without waiting for expiry.
func (m *member) leave() {
	if m.kv == nil {
		return
	}
	var wg sync.WaitGroup
	for _, h := range m.held {
		h.cancel()
		wg.Go(func() { <-h.done })
	}
	for _, h := range m.dropped {
		wg.Go(func() { <-h.done })
	}
	wg.Wait()
	m.dropped = nil
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	for _, p := range slices.Sorted(maps.Keys(m.held)) {
		_ = m.kv.Delete(ctx, partitionKey(p), jetstream.LastRevision(m.held[p].rev))
	}
	clear(m.held)
	_ = m.kv.Delete(ctx, memberKeyPrefix+m.self.Instance)
}

// defaultInstance names this process in its groups: host, process id and a
// random suffix, in the characters a KV key allows.
func defaultInstance() string {
	host, _ := os.Hostname()
	host = strings.Map(func(r rune) rune {
		if r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '_' {
			return r
		}
		return '-'
	}, cmp.Or(host, "host"))
	return fmt.Sprintf("%s-%d-%04x", host, os.Getpid(), rand.N(0x10000))
}
