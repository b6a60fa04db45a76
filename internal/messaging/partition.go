package messaging

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"

	"github.com/nats-io/nats.go/jetstream"
)

// Subjects and partitions. An event is published on its type subject
// followed by its partition key, "<domain>.<entity>.<action>.v<N>.<key>"
// (event.Spec.SubjectFor). Every stream EnsureStream declares carries a
// subject transform that inserts the partition JetStream computes from the
// key, partition(N, key), before it:
//
//	published ecommerce.order.created.v2.0193a5e2-…
//	stored    ecommerce.order.created.v2.5.0193a5e2-…
//
// so a key-based consumer filters one partition of every version of an event
// with "ecommerce.order.created.*.5.*", and a round-robin one all of them
// with "ecommerce.order.created.>".

// MetadataPartitions is the stream metadata key that records the stream's
// partition count, the N of its partition(N, …) transform.
const MetadataPartitions = "shopbus.partitions"

// DefaultPartitions is the partition count of a stream when StreamOptions
// does not choose one.
const DefaultPartitions = 8

// MaxPartitions bounds a stream's partition count: each partition is a
// durable consumer per key-based group and a lease in its KV bucket.
const MaxPartitions = 256

// ErrNotPartitioned means a stream has no partition count in its metadata:
// it was not declared by EnsureStream, so key-based consumers cannot use it.
var ErrNotPartitioned = errors.New("stream is not partitioned by shopbus")

// partitionTransform is the subject transform of a stream with n
// partitions: every published subject has five tokens, the fifth the key.
func partitionTransform(n int) *jetstream.SubjectTransformConfig {
	return &jetstream.SubjectTransformConfig{
		Source:      "*.*.*.*.*",
		Destination: fmt.Sprintf("{{wildcard(1)}}.{{wildcard(2)}}.{{wildcard(3)}}.{{wildcard(4)}}.{{partition(%d,5)}}.{{wildcard(5)}}", n),
	}
}

// Partitions returns the partition count of stream, from its metadata.
func Partitions(ctx context.Context, js jetstream.JetStream, stream string) (int, error) {
	s, err := js.Stream(ctx, stream)
	if err != nil {
		return 0, fmt.Errorf("jetstream: stream %s: %w", stream, err)
	}
	return partitionsOf(s.CachedInfo().Config)
}

func partitionsOf(cfg jetstream.StreamConfig) (int, error) {
	v, ok := cfg.Metadata[MetadataPartitions]
	if !ok {
		return 0, fmt.Errorf("%w: %s has no %s metadata", ErrNotPartitioned, cfg.Name, MetadataPartitions)
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < 1 || n > MaxPartitions {
		return 0, fmt.Errorf("%w: %s has %s %q, not 1 to %d", ErrNotPartitioned, cfg.Name, MetadataPartitions, v, MaxPartitions)
	}
	return n, nil
}

// PublishedSubject returns the subject an event stored on subject was
// published on: the stored subject without its partition token
// ("ecommerce.order.created.v2.5.K" gives "ecommerce.order.created.v2.K").
// Any other subject is returned as it is. A redrive publishes there, so the
// stream computes the partition again.
func PublishedSubject(subject string) string {
	tokens := strings.Split(subject, ".")
	if len(tokens) != 6 || !isPartition(tokens[4]) {
		return subject
	}
	return strings.Join(append(tokens[:4], tokens[5]), ".")
}

// KeyOf returns the partition key token of a published or stored event
// subject, and whether it has one.
func KeyOf(subject string) (string, bool) {
	tokens := strings.Split(subject, ".")
	switch {
	case len(tokens) == 5:
		return tokens[4], true
	case len(tokens) == 6 && isPartition(tokens[4]):
		return tokens[5], true
	}
	return "", false
}

func isPartition(token string) bool {
	n, err := strconv.Atoi(token)
	return err == nil && n >= 0 && n < MaxPartitions && strconv.Itoa(n) == token
}

// filters returns the consumer filter subjects for events (type subjects
// without the version, "ecommerce.order.created"): of partition p, or of
// every partition when p < 0.
func filters(events []string, p int) []string {
	out := make([]string, len(events))
	for i, e := range events {
		if p < 0 {
			out[i] = e + ".>"
		} else {
			out[i] = e + ".*." + strconv.Itoa(p) + ".*"
		}
	}
	return out
}
