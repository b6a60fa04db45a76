package stack_test

import (
	"context"
	"testing"
	"time"

	orderv1 "github.com/shopbus/shopbus/gen/go/shopbus/order/v1"
	"github.com/shopbus/shopbus/internal/stack"
)

// TestStreamDeletedAtRunTime: an event stream deleted while the stack runs
// (an operator's mistake) is declared again by the platform without a
// restart, its consumers come back, and orders placed afterwards are
// decided.
func TestStreamDeletedAtRunTime(t *testing.T) {
	t.Parallel()
	s := startStack(t, func(c *stack.Config) { c.TopologyEvery = 100 * time.Millisecond })
	s.setStock(t, "MUG-001", 10)
	if o := s.await(t, s.create(t, orderRequest(line("MUG-001", 1))).GetOrderId()); o.GetStatus() != orderv1.OrderStatus_ORDER_STATUS_CONFIRMED {
		t.Fatalf("order before: %v", o.GetStatus())
	}
	for _, name := range []string{"ECOMMERCE_ORDER", "ECOMMERCE_INVENTORY"} {
		if err := s.JS.DeleteStream(context.Background(), name); err != nil {
			t.Fatal(err)
		}
	}
	for i := range 3 {
		if o := s.await(t, s.create(t, orderRequest(line("MUG-001", 1))).GetOrderId()); o.GetStatus() != orderv1.OrderStatus_ORDER_STATUS_CONFIRMED {
			t.Errorf("order %d after the streams were deleted: %v", i, o.GetStatus())
		}
	}
}
