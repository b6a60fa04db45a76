package deadletter

import (
	"context"

	"github.com/nats-io/nats.go/jetstream"
)

// Census is the census of Metrics, for tests: windows of size sequences,
// at most limit letters a round.
type Census struct{ c census }

// NewCensus returns a census of js's DLQ.
func NewCensus(js jetstream.JetStream, size, limit uint64) *Census {
	return &Census{census{js: js, size: size, limit: limit}}
}

// Round runs one round of the census.
func (c *Census) Round(ctx context.Context) (map[CensusKey]int, bool, error) { return c.c.round(ctx) }

// Reads is how many letters the census read over all its rounds.
func (c *Census) Reads() uint64 { return c.c.reads }
