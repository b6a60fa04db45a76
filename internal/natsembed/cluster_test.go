package natsembed_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/shopbus/shopbus/internal/natsembed"
	"github.com/shopbus/shopbus/internal/testenv"
)

// TestCluster: a 3-node cluster keeps an R3 stream through the stop of its
// leader (another node leads, publishes go on) and takes the node back on
// its store, where it catches up.
func TestCluster(t *testing.T) {
	t.Parallel()
	c, err := natsembed.StartCluster(natsembed.ClusterOptions{Dir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Shutdown)
	if c.Len() != 3 {
		t.Fatalf("%d nodes, want 3", c.Len())
	}
	nc, err := nats.Connect(c.URLs(), nats.MaxReconnects(-1), nats.ReconnectWait(50*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	if nc.MaxPayload() != natsembed.MaxPayload {
		t.Errorf("max_payload %d, want %d", nc.MaxPayload(), natsembed.MaxPayload)
	}
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if _, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: "T", Subjects: []string{"t.>"}, Replicas: 3}); err != nil {
		t.Fatal(err)
	}
	publish := func(n int) {
		t.Helper()
		testenv.CheckFor(t, 30*time.Second, 50*time.Millisecond, func() error {
			_, err := js.Publish(ctx, "t.x", []byte("x"), jetstream.WithMsgID(fmt.Sprint(n)))
			return err
		})
	}
	publish(1)
	var leader int
	testenv.CheckFor(t, 30*time.Second, 20*time.Millisecond, func() error {
		if leader = c.StreamLeader("T"); leader < 0 {
			return fmt.Errorf("stream T has no leader")
		}
		return nil
	})
	c.Stop(leader)
	if c.Server(leader) != nil {
		t.Fatal("a stopped node still has a server")
	}
	publish(2)
	if now := c.StreamLeader("T"); now == leader || now < 0 {
		t.Errorf("after stopping node %d the leader is %d", leader, now)
	}
	if err := c.Restart(leader); err != nil {
		t.Fatal(err)
	}
	publish(3)
	testenv.CheckFor(t, 30*time.Second, 20*time.Millisecond, func() error {
		if !c.Server(leader).JetStreamIsStreamCurrent("$G", "T") {
			return fmt.Errorf("node %d has not caught up with stream T", leader)
		}
		info, err := js.Stream(ctx, "T")
		if err != nil {
			return err
		}
		if n := info.CachedInfo().State.Msgs; n != 3 {
			return fmt.Errorf("stream T holds %d messages, want 3", n)
		}
		return nil
	})
}
