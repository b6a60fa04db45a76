package messaging

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// Group is what an operator sees of a consumer group (`shopbus groups`, the
// admin GroupService): its members and, per durable consumer, the owner and
// the backlog.
type Group struct {
	// Name is the consumer's Durable.
	Name string
	// Stream is the stream it consumes.
	Stream string
	// Strategy is RoundRobin or KeyBased.
	Strategy Strategy
	// Members are the live instances, sorted by instance id.
	Members []Member
	// Partitions are the durable consumers: one per partition of a
	// key-based group, in partition order, or the shared one of a
	// round-robin group (Partition -1).
	Partitions []PartitionState
}

// PartitionState is one durable consumer of a group.
type PartitionState struct {
	// Partition is the partition number, or -1 for a round-robin group's
	// shared consumer.
	Partition int
	// Consumer is the durable consumer's name.
	Consumer string
	// Owner is the member that holds its lease (key-based), or empty.
	Owner string
	// OwnerSince is when Owner took it.
	OwnerSince time.Time
	// Pending is how many stream messages it has yet to deliver.
	Pending uint64
	// AckPending is how many it delivered and has not had acked.
	AckPending int
	// Redelivered is how many of those were delivered more than once.
	Redelivered int
	// Delivered and Acked are the consumer sequences of the last delivery
	// and of the ack floor: deliveries made, and deliveries settled with
	// every one before them (a redelivery counts again).
	Delivered, Acked uint64
	// AckFloor is the stream sequence of the ack floor: the next message
	// on Filters after it is the oldest one not yet settled.
	AckFloor uint64
	// Filters are the durable consumer's filter subjects.
	Filters []string
	// Missing is set when the durable consumer does not exist.
	Missing bool
	// Err is why the durable consumer could not be read (NATS did not
	// answer, say), when it exists but its info is not known.
	Err error
}

// ListGroups returns every consumer group on js, sorted by name, read from
// the groups' KV buckets and their consumers' info.
func ListGroups(ctx context.Context, js jetstream.JetStream) ([]Group, error) {
	names, err := GroupNames(ctx, js)
	if err != nil {
		return nil, err
	}
	groups := make([]Group, 0, len(names))
	for _, name := range names {
		g, err := ReadGroup(ctx, js, name)
		if errors.Is(err, ErrNoGroup) {
			continue // removed meanwhile
		}
		if err != nil {
			return nil, err
		}
		groups = append(groups, g)
	}
	return groups, nil
}

// GroupNames returns the names of the consumer groups on js, sorted.
func GroupNames(ctx context.Context, js jetstream.JetStream) ([]string, error) {
	lister := js.KeyValueStoreNames(ctx)
	var names []string
	for bucket := range lister.Name() {
		if name, ok := strings.CutPrefix(bucket, GroupBucketPrefix); ok {
			names = append(names, name)
		}
	}
	if err := lister.Error(); err != nil {
		return nil, fmt.Errorf("jetstream: list consumer groups: %w", err)
	}
	slices.Sort(names)
	return names, nil
}

// ErrNoGroup means a consumer group has no KV bucket: no instance of it
// ever started, or an operator removed it.
var ErrNoGroup = errors.New("no such consumer group")

// ReadGroup reads the consumer group name (its Durable) from its KV bucket
// and its consumers' info; ErrNoGroup when it has no bucket.
func ReadGroup(ctx context.Context, js jetstream.JetStream, name string) (Group, error) {
	g, err := groupOf(ctx, js, GroupBucketPrefix+name)
	if errors.Is(err, jetstream.ErrBucketNotFound) {
		return Group{}, fmt.Errorf("%w: %s", ErrNoGroup, name)
	}
	return g, err
}

func groupOf(ctx context.Context, js jetstream.JetStream, bucket string) (Group, error) {
	kv, err := js.KeyValue(ctx, bucket)
	if err != nil {
		return Group{}, fmt.Errorf("jetstream: consumer group %s: %w", bucket, err)
	}
	st, err := kv.Status(ctx)
	if err != nil {
		return Group{}, fmt.Errorf("jetstream: consumer group %s: %w", bucket, err)
	}
	meta := map[string]string{}
	if bs, ok := st.(*jetstream.KeyValueBucketStatus); ok {
		meta = bs.StreamInfo().Config.Metadata
	}
	g := Group{
		Name:     strings.TrimPrefix(bucket, GroupBucketPrefix),
		Stream:   meta[metadataStream],
		Strategy: Strategy(meta[metadataStrategy]),
	}
	partitions, _ := strconv.Atoi(meta[MetadataPartitions])
	leases := map[int]Lease{}
	keys, err := kv.ListKeys(ctx)
	if err != nil {
		return Group{}, fmt.Errorf("jetstream: consumer group %s: %w", bucket, err)
	}
	for key := range keys.Keys() {
		e, err := kv.Get(ctx, key)
		if errors.Is(err, jetstream.ErrKeyNotFound) {
			continue // expired meanwhile
		}
		if err != nil {
			return Group{}, fmt.Errorf("jetstream: consumer group %s: %s: %w", bucket, key, err)
		}
		switch {
		case strings.HasPrefix(key, memberKeyPrefix):
			var m Member
			if json.Unmarshal(e.Value(), &m) == nil {
				g.Members = append(g.Members, m)
			}
		case strings.HasPrefix(key, partitionKeyPrefix):
			var l Lease
			p, err := strconv.Atoi(strings.TrimPrefix(key, partitionKeyPrefix))
			if err == nil && json.Unmarshal(e.Value(), &l) == nil {
				leases[p] = l
			}
		}
	}
	slices.SortFunc(g.Members, func(a, b Member) int { return cmp.Compare(a.Instance, b.Instance) })
	if g.Strategy == RoundRobin {
		g.Partitions = []PartitionState{partitionState(ctx, js, g.Stream, g.Name, -1, Lease{})}
		return g, nil
	}
	for p := range partitions {
		g.Partitions = append(g.Partitions, partitionState(ctx, js, g.Stream, PartitionDurable(g.Name, p), p, leases[p]))
	}
	return g, nil
}

func partitionState(ctx context.Context, js jetstream.JetStream, stream, durable string, p int, l Lease) PartitionState {
	ps := PartitionState{Partition: p, Consumer: durable, Owner: l.Owner, OwnerSince: l.Since}
	var info *jetstream.ConsumerInfo
	c, err := js.Consumer(ctx, stream, durable)
	if err == nil {
		info, err = c.Info(ctx)
	}
	switch {
	case errors.Is(err, jetstream.ErrConsumerNotFound), errors.Is(err, jetstream.ErrStreamNotFound):
		ps.Missing = true
		return ps
	case err != nil:
		ps.Err = err
		return ps
	}
	ps.Pending, ps.AckPending, ps.Redelivered = info.NumPending, info.NumAckPending, info.NumRedelivered
	ps.Delivered, ps.Acked, ps.AckFloor = info.Delivered.Consumer, info.AckFloor.Consumer, info.AckFloor.Stream
	ps.Filters = info.Config.FilterSubjects
	if info.Config.FilterSubject != "" {
		ps.Filters = append(ps.Filters, info.Config.FilterSubject)
	}
	return ps
}

// Settled reports whether the consumer group durable on stream has settled
// (acked or terminated) the event at stream sequence seq and every event
// before it that the same durable consumer receives: for a key-based group,
// the durable of the event's partition; for a round-robin one, the shared
// durable.
func Settled(ctx context.Context, js jetstream.JetStream, stream, durable string, seq uint64) (bool, error) {
	s, err := js.Stream(ctx, stream)
	if err != nil {
		return false, fmt.Errorf("jetstream: stream %s: %w", stream, err)
	}
	msg, err := s.GetMsg(ctx, seq)
	if err != nil {
		return false, fmt.Errorf("jetstream: %s #%d: %w", stream, seq, err)
	}
	name := durable
	if tokens := strings.Split(msg.Subject, "."); len(tokens) == 6 && isPartition(tokens[4]) {
		p, _ := strconv.Atoi(tokens[4])
		if _, err := js.Consumer(ctx, stream, PartitionDurable(durable, p)); err == nil {
			name = PartitionDurable(durable, p)
		}
	}
	c, err := js.Consumer(ctx, stream, name)
	if err != nil {
		return false, fmt.Errorf("jetstream: consumer %s: %w", name, err)
	}
	info, err := c.Info(ctx)
	if err != nil {
		return false, fmt.Errorf("jetstream: consumer %s: %w", name, err)
	}
	return info.AckFloor.Stream >= seq, nil
}
