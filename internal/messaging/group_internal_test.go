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

// TestGroupForgetsUnseenMember is the stall the chaos suite found: a member
// whose keys vanished without an expiry marker reaching the watch (a memory
// bucket lost with a NATS restart and declared again) must not keep a share
// of the partitions. Once it has not been seen for a lease, the member
// counts as gone and the live one takes every partition.
func TestGroupForgetsUnseenMember(t *testing.T) {
	t.Parallel()
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
	ctx := t.Context()

	const partitions = 4
	cfg := ConsumerConfig{Stream: "S", Durable: "ghosts", Instance: "live", Lease: time.Second}
	kv, err := ensureGroupBucket(ctx, js, cfg, partitions)
	if err != nil {
		t.Fatal(err)
	}
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
