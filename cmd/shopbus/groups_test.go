package main

import (
	"bytes"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/types/known/timestamppb"

	groupv1 "github.com/shopbus/shopbus/gen/go/shopbus/group/v1"
)

// TestPrintGroups: the groups table names each group with its stream,
// strategy and member count, lists its members, and gives one row per
// partition with owner and counts; unowned, shared and missing consumers
// say so.
func TestPrintGroups(t *testing.T) {
	now := time.Date(2026, 5, 1, 12, 0, 0, 0, time.UTC)
	ago := func(d time.Duration) *timestamppb.Timestamp { return timestamppb.New(now.Add(-d)) }
	gs := []*groupv1.Group{
		{
			Name: "inventory-reserve-stock", Stream: "ECOMMERCE_ORDER", Strategy: groupv1.Strategy_STRATEGY_KEY_BASED,
			Members: []*groupv1.Member{
				{Instance: "a", Host: "host-1", Pid: 101, Since: ago(90 * time.Second)},
				{Instance: "b", Host: "host-2", Pid: 202, Since: ago(30 * time.Second)},
			},
			Partitions: []*groupv1.Partition{
				{Partition: 0, Consumer: "inventory-reserve-stock-p0", Owner: "a", OwnerSince: ago(90 * time.Second), Pending: 12, AckPending: 1, Redelivered: 1},
				{Partition: 1, Consumer: "inventory-reserve-stock-p1"},
				{Partition: 2, Consumer: "inventory-reserve-stock-p2", Missing: true},
			},
		},
		{
			Name: "audit", Stream: "ECOMMERCE_INVENTORY", Strategy: groupv1.Strategy_STRATEGY_ROUND_ROBIN,
			Partitions: []*groupv1.Partition{{Partition: -1, Consumer: "audit", Pending: 3}},
		},
	}
	var out bytes.Buffer
	if err := printGroups(&out, gs, now); err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSuffix(out.String(), "\n"), "\n")
	for i, want := range [][]string{
		{"GROUP inventory-reserve-stock", "stream ECOMMERCE_ORDER", "key-based", "2 members"},
		{"INSTANCE", "HOST", "PID", "SINCE"},
		{"a", "host-1", "101", "(1m30s ago)"},
		{"b", "host-2", "202", "(30s ago)"},
		{"PARTITION", "CONSUMER", "OWNER", "OWNER SINCE", "PENDING", "ACK PENDING", "REDELIVERED"},
		{"0", "inventory-reserve-stock-p0", "a", "(1m30s ago)", "12", "1", "1"},
		{"1", "inventory-reserve-stock-p1", "(none)", "-", "0", "0", "0"},
		{"2", "inventory-reserve-stock-p2 (missing)", "(none)"},
		{},
		{"GROUP audit", "stream ECOMMERCE_INVENTORY", "round-robin", "0 members"},
		{"PARTITION", "CONSUMER"},
		{"shared", "audit", "(any)", "-", "3", "0", "0"},
	} {
		if i >= len(lines) {
			t.Fatalf("output has %d lines, want more:\n%s", len(lines), out.String())
		}
		for _, w := range want {
			if !strings.Contains(lines[i], w) {
				t.Errorf("line %d %q: no %q", i, lines[i], w)
			}
		}
		if strings.HasSuffix(lines[i], " ") {
			t.Errorf("line %d %q ends with spaces", i, lines[i])
		}
	}
	if len(lines) != 12 {
		t.Errorf("output has %d lines, want 12:\n%s", len(lines), out.String())
	}

	out.Reset()
	if err := printGroups(&out, nil, now); err != nil || out.String() != "no consumer groups\n" {
		t.Errorf("no groups: %q, %v", out.String(), err)
	}
}
