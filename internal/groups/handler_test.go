package groups_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"
	"time"

	"connectrpc.com/connect"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/shopbus/shopbus/gateway"
	groupv1 "github.com/shopbus/shopbus/gen/go/shopbus/group/v1"
	"github.com/shopbus/shopbus/gen/go/shopbus/group/v1/groupv1connect"
	"github.com/shopbus/shopbus/internal/auth"
	"github.com/shopbus/shopbus/internal/groups"
	"github.com/shopbus/shopbus/internal/messaging"
	"github.com/shopbus/shopbus/internal/testenv"
)

var quiet = slog.New(slog.DiscardHandler)

// consume runs messaging.Consume for cfg until the returned stop is called
// (or the test ends); stop waits for it to return.
func consume(t *testing.T, js jetstream.JetStream, cfg messaging.ConsumerConfig) (stop func()) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- messaging.Consume(ctx, js, cfg, func(context.Context, *messaging.Delivery) error { return nil }, quiet)
	}()
	var stopped bool
	stop = func() {
		if stopped {
			return
		}
		stopped = true
		cancel()
		if err := <-done; err != nil && !errors.Is(err, context.Canceled) {
			t.Errorf("Consume %s/%s: %v", cfg.Durable, cfg.Instance, err)
		}
	}
	t.Cleanup(stop)
	return stop
}

// serve mounts h on a gateway (validation included) and returns a client.
func serve(t *testing.T, h groupv1connect.GroupServiceHandler) groupv1connect.GroupServiceClient {
	t.Helper()
	srv := httptest.NewServer(gateway.Handler(gateway.Config{Groups: h, Auth: auth.Config{Insecure: true}}))
	t.Cleanup(srv.Close)
	return groupv1connect.NewGroupServiceClient(srv.Client(), srv.URL)
}

func find(gs []*groupv1.Group, name string) *groupv1.Group {
	for _, g := range gs {
		if g.GetName() == name {
			return g
		}
	}
	return nil
}

// TestListGroups: two members of a key-based group share its four
// partitions, a round-robin group shows its shared consumer, and the RPC
// says so: members with host and since, partitions with their owner, and
// the backlog of a group whose members stopped.
func TestListGroups(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	_, js := testenv.NATSWith(t, messaging.StreamOptions{Partitions: 4})
	if err := messaging.EnsureStreams(ctx, js, messaging.StreamOptions{Partitions: 4}); err != nil {
		t.Fatal(err)
	}
	keyBased := messaging.ConsumerConfig{Stream: "ECOMMERCE_ORDER", Durable: "test-group", Subjects: []string{"ecommerce.order.created"},
		Strategy: messaging.KeyBased, Instance: "a"}
	consume(t, js, keyBased)
	keyBased.Instance = "b"
	consume(t, js, keyBased)
	stopRR := consume(t, js, messaging.ConsumerConfig{Stream: "ECOMMERCE_INVENTORY", Durable: "test-rr",
		Subjects: []string{"ecommerce.inventory.adjusted"}, Strategy: messaging.RoundRobin, Instance: "c"})
	client := serve(t, groups.NewHandler(js, quiet))

	// Both members in, every partition owned, two each.
	testenv.CheckFor(t, 30*time.Second, 50*time.Millisecond, func() error {
		gs, err := messaging.ListGroups(ctx, js)
		if err != nil {
			return err
		}
		i := slices.IndexFunc(gs, func(g messaging.Group) bool { return g.Name == "test-group" })
		if i < 0 {
			return errors.New("test-group not listed")
		}
		owned := map[string]int{}
		for _, p := range gs[i].Partitions {
			owned[p.Owner]++
		}
		if len(gs[i].Members) != 2 || len(gs[i].Partitions) != 4 || owned["a"] != 2 || owned["b"] != 2 {
			return fmt.Errorf("test-group: %d members, owners %v", len(gs[i].Members), owned)
		}
		if j := slices.IndexFunc(gs, func(g messaging.Group) bool { return g.Name == "test-rr" }); j < 0 || len(gs[j].Members) != 1 {
			return errors.New("test-rr: not listed with its member")
		}
		return nil
	})

	res, err := client.ListGroups(ctx, connect.NewRequest(&groupv1.ListGroupsRequest{}))
	if err != nil {
		t.Fatal(err)
	}
	if names := groupNames(res.Msg.GetGroups()); !slices.Equal(names, []string{"test-group", "test-rr"}) {
		t.Fatalf("groups %v, want [test-group test-rr]", names)
	}
	g := find(res.Msg.GetGroups(), "test-group")
	if g.GetStream() != "ECOMMERCE_ORDER" || g.GetStrategy() != groupv1.Strategy_STRATEGY_KEY_BASED {
		t.Errorf("test-group: stream %q, strategy %v", g.GetStream(), g.GetStrategy())
	}
	var instances []string
	for _, m := range g.GetMembers() {
		instances = append(instances, m.GetInstance())
		if m.GetHost() == "" || m.GetPid() == 0 || m.GetSince() == nil || time.Since(m.GetSince().AsTime()) > time.Minute {
			t.Errorf("member %v: want host, pid and a recent since", m)
		}
	}
	if !slices.Equal(instances, []string{"a", "b"}) {
		t.Errorf("members %v, want [a b]", instances)
	}
	for i, p := range g.GetPartitions() {
		if p.GetPartition() != int32(i) || p.GetConsumer() != messaging.PartitionDurable("test-group", i) || p.GetMissing() {
			t.Errorf("partition %d: %v", i, p)
		}
		if (p.GetOwner() != "a" && p.GetOwner() != "b") || p.GetOwnerSince() == nil {
			t.Errorf("partition %d: owner %q since %v", i, p.GetOwner(), p.GetOwnerSince())
		}
		if p.GetPending() != 0 || p.GetAckPending() != 0 || p.GetRedelivered() != 0 {
			t.Errorf("partition %d: backlog %v", i, p)
		}
	}
	rr := find(res.Msg.GetGroups(), "test-rr")
	if rr.GetStream() != "ECOMMERCE_INVENTORY" || rr.GetStrategy() != groupv1.Strategy_STRATEGY_ROUND_ROBIN ||
		len(rr.GetMembers()) != 1 || rr.GetMembers()[0].GetInstance() != "c" {
		t.Errorf("test-rr: %v", rr)
	}
	if ps := rr.GetPartitions(); len(ps) != 1 || ps[0].GetPartition() != -1 || ps[0].GetConsumer() != "test-rr" ||
		ps[0].GetOwner() != "" || ps[0].GetOwnerSince() != nil {
		t.Errorf("test-rr partitions: %v", ps)
	}

	// With its member gone, the round-robin group stays listed, and its
	// durable consumer shows the events waiting for it.
	stopRR()
	for i := range 3 {
		if _, err := js.Publish(ctx, fmt.Sprintf("ecommerce.inventory.adjusted.v1.k%d", i), []byte("waiting")); err != nil {
			t.Fatal(err)
		}
	}
	testenv.CheckFor(t, 10*time.Second, 50*time.Millisecond, func() error {
		res, err := client.ListGroups(ctx, connect.NewRequest(&groupv1.ListGroupsRequest{Name: "test-rr"}))
		if err != nil {
			return err
		}
		gs := res.Msg.GetGroups()
		if len(gs) != 1 || gs[0].GetName() != "test-rr" || len(gs[0].GetPartitions()) != 1 {
			return fmt.Errorf("ListGroups test-rr: %v", gs)
		}
		if n, p := len(gs[0].GetMembers()), gs[0].GetPartitions()[0].GetPending(); n != 0 || p != 3 {
			return fmt.Errorf("test-rr: %d members, %d pending; want 0 and 3", n, p)
		}
		return nil
	})
}

func groupNames(gs []*groupv1.Group) []string {
	var names []string
	for _, g := range gs {
		names = append(names, g.GetName())
	}
	return names
}

// TestListGroupsErrors: an unknown group is NotFound, a malformed name
// InvalidArgument, and no groups at all an empty list.
func TestListGroupsErrors(t *testing.T) {
	t.Parallel()
	_, js := testenv.NATS(t)
	client := serve(t, groups.NewHandler(js, quiet))
	ctx := context.Background()
	res, err := client.ListGroups(ctx, connect.NewRequest(&groupv1.ListGroupsRequest{}))
	if err != nil || len(res.Msg.GetGroups()) != 0 {
		t.Errorf("ListGroups with no groups: %v, %v", res, err)
	}
	for name, want := range map[string]connect.Code{
		"no-such-group":           connect.CodeNotFound,
		"bad.name":                connect.CodeInvalidArgument,
		strings.Repeat("x", 129):  connect.CodeInvalidArgument,
		"spaces are not allowed ": connect.CodeInvalidArgument,
	} {
		_, err := client.ListGroups(ctx, connect.NewRequest(&groupv1.ListGroupsRequest{Name: name}))
		if connect.CodeOf(err) != want {
			t.Errorf("ListGroups %q: %v, want %v", name, err, want)
		}
	}
}

// TestListGroupsNATSDown: with NATS gone, ListGroups is Unavailable, and
// what the NATS client said stays out of the message.
func TestListGroupsNATSDown(t *testing.T) {
	t.Parallel()
	srv, js := testenv.NATS(t)
	client := serve(t, groups.NewHandler(js, quiet))
	srv.Shutdown()
	srv.WaitForShutdown()
	_, err := client.ListGroups(context.Background(), connect.NewRequest(&groupv1.ListGroupsRequest{}))
	if connect.CodeOf(err) != connect.CodeUnavailable {
		t.Fatalf("ListGroups with NATS down: %v, want Unavailable", err)
	}
	if msg := err.(*connect.Error).Message(); strings.Contains(msg, "nats:") || strings.Contains(msg, "jetstream") {
		t.Errorf("message %q carries the NATS client's text", msg)
	}
}
