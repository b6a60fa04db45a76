package messaging

import (
	"context"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
)

// SetPublishBudget sets how long r's passes go on publishing rows
// (passPublishBudget), for tests.
func SetPublishBudget(r *Relay, d time.Duration) { r.publishBudget = d }

// SetParkAfter sets how long r keeps trying a row that JetStream refuses in
// a way that may pass (ParkAfter), for tests.
func SetParkAfter(r *Relay, d time.Duration) { r.parkAfter = d }

// NeverCaptured is r.neverCaptured, for tests.
func NeverCaptured(ctx context.Context, r *Relay, err error, subject string) bool {
	return r.neverCaptured(ctx, err, UnpublishableRow{Subject: subject})
}

// RelayWakes returns a channel that receives the wake-ups of schema's
// relays in this process, until stop is called.
func RelayWakes(schema string) (wakes <-chan struct{}, stop func()) {
	c := make(chan struct{}, 1)
	return c, registerRelay(schema, c)
}

// InTxBeginningWith is inTx with a first batch that queue fills after its
// BEGIN, for tests.
func InTxBeginningWith(ctx context.Context, pool *pgxpool.Pool, queue func(*pgx.Batch), fn func(pgx.Tx) error) error {
	first := txBatch()
	queue(first)
	return inTx(ctx, pool, first, fn)
}

// OwnerGroup is the priority group of a key-based partition's owner
// (ownerGroup), for tests that fetch as one.
const OwnerGroup = ownerGroup

// DurableConfig, PartitionMessages and Unpin are durableConfig, messages
// and unpin, for tests of a partition's pin.
var (
	DurableConfig     = durableConfig
	PartitionMessages = messages
	Unpin             = unpin
)
