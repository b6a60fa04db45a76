package messaging

import (
	"context"
	"io"
	"log/slog"
	"maps"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// groupBucket is cfg's group bucket on a nats-server of the test's own (the
// package's tests cannot use testenv, which imports it).
func groupBucket(t *testing.T, cfg ConsumerConfig, partitions int) jetstream.KeyValue {
	t.Helper()
	srv, err := server.NewServer(&server.Options{Host: "127.0.0.1", Port: -1, JetStream: true, StoreDir: t.TempDir(), NoSigs: true})
	if err != nil {
		t.Fatal(err)
	}
	go srv.Start()
	t.Cleanup(srv.Shutdown)
	if !srv.ReadyForConnections(10 * time.Second) {
		t.Fatal("nats-server not ready")
	}
	nc, err := nats.Connect(srv.ClientURL())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	js, _ := jetstream.New(nc)
	kv, err := ensureGroupBucket(t.Context(), js, cfg, partitions)
	if err != nil {
		t.Fatal(err)
	}
	return kv
}

// TestGroupForgetsUnseenMember is the stall the chaos suite found: a member
// whose keys vanished without an expiry marker reaching the watch (a memory
// bucket lost with a NATS restart and declared again) must not keep a share
// of the partitions. Once it has not been seen for a lease, the member
// counts as gone and the live one takes every partition.
func TestGroupForgetsUnseenMember(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	const partitions = 4
	cfg := ConsumerConfig{Stream: "S", Durable: "ghosts", Instance: "live", Lease: time.Second}
	kv := groupBucket(t, cfg, partitions)
	var mu sync.Mutex
	var running []int
	m := newMember(nil, cfg, partitions, func(ctx context.Context, p int) {
		mu.Lock()
		running = append(running, p)
		mu.Unlock()
		<-ctx.Done()
	}, slog.New(slog.NewTextHandler(io.Discard, nil)))
	m.kv, m.ready = kv, true
	t.Cleanup(m.leave)
	// What a watch that missed the ghost's expiry shows: the ghost alive,
	// last seen just over a lease ago, owning every partition (whose keys
	// are in fact gone).
	m.members["live"], m.seen["live"] = Member{Instance: "live"}, time.Now() // its own heartbeat
	m.members["ghost"], m.seen["ghost"] = Member{Instance: "ghost"}, time.Now().Add(-2*cfg.Lease)
	for p := range partitions {
		m.owners[p] = "ghost"
	}

	m.reconcile(ctx)

	if got := slices.Sorted(maps.Keys(m.held)); !slices.Equal(got, []int{0, 1, 2, 3}) {
		t.Fatalf("the live member holds partitions %v, want all of 0..3", got)
	}
	if _, ok := m.members["ghost"]; ok {
		t.Error("the unseen member is still counted")
	}
}

// TestReleaseAfterDropLeavesTheNewLease: a partition released (its
// consumer finishing its batch) and then dropped (its renewal failed), whose
// lease expired and which this member took again, keeps its new lease and
// consumer when the first consumer returns; and leave waits for a dropped
// partition's consumer as for a held one's.
func TestReleaseAfterDropLeavesTheNewLease(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	cfg := ConsumerConfig{Stream: "S", Durable: "dropped", Instance: "me", Lease: time.Second}
	kv := groupBucket(t, cfg, 1)
	type run struct {
		ctx    context.Context
		finish chan struct{}
	}
	runs := make(chan run, 4)
	m := newMember(nil, cfg, 1, func(ctx context.Context, p int) {
		r := run{ctx, make(chan struct{})}
		runs <- r
		<-ctx.Done()
		<-r.finish // the batch in hand
	}, slog.New(slog.NewTextHandler(io.Discard, nil)))
	m.kv, m.ready = kv, true

	if !m.acquire(ctx, 0) {
		t.Fatal("the partition was not taken")
	}
	first := <-runs
	m.release(0)
	m.drop(0)                                              // its lease could not be renewed meanwhile
	if err := kv.Purge(ctx, partitionKey(0)); err != nil { // and expired
		t.Fatal(err)
	}
	if !m.acquire(ctx, 0) {
		t.Fatal("the partition was not taken again")
	}
	second := <-runs
	again := m.held[0]
	close(first.finish)
	m.deleteLease(ctx, <-m.released) // what watch does once the first consumer returned
	if m.held[0] != again {
		t.Error("the partition taken again is no longer held")
	}
	if second.ctx.Err() != nil {
		t.Error("the consumer of the partition taken again was stopped")
	}
	if _, err := kv.Get(ctx, partitionKey(0)); err != nil {
		t.Errorf("the new lease: %v", err)
	}

	m.drop(0) // taken over: its consumer finishes its batch
	go func() {
		time.Sleep(50 * time.Millisecond) // leave is waiting by then, or has returned without waiting
		close(second.finish)
	}()
	m.leave()
	if !finished(again) {
		t.Error("leave returned before a dropped partition's consumer did")
	}
}
