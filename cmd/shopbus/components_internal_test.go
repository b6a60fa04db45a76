package main

import (
	"slices"
	"testing"

	"github.com/shopbus/shopbus/internal/stack"
)

// TestServeKnowsEveryComponent: `shopbus serve` (its ports and summaries)
// and the stack's component registry (what runs) name the same services,
// so a service added to one and not the other fails here rather than at a
// user's `shopbus serve <name>`.
func TestServeKnowsEveryComponent(t *testing.T) {
	var served []string
	for _, c := range components {
		served = append(served, c.name)
	}
	if want := append([]string{"gateway"}, stack.Components()...); !slices.Equal(served, want) {
		t.Errorf("serve knows %v; the stack runs %v", served, want)
	}
}
