package stack_test

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"connectrpc.com/connect"

	deadletterv1 "github.com/shopbus/shopbus/gen/go/shopbus/deadletter/v1"
	orderv1 "github.com/shopbus/shopbus/gen/go/shopbus/order/v1"
	"github.com/shopbus/shopbus/internal/deadletter"
	"github.com/shopbus/shopbus/internal/stack"
	"github.com/shopbus/shopbus/internal/testenv"
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

// TestUnpublishableRowGoesToTheDLQ: an outbox row larger than NATS takes
// is set aside into the dead-letter queue (consumer outbox-relay, not
// redrivable), and the orders behind it flow.
func TestUnpublishableRowGoesToTheDLQ(t *testing.T) {
	t.Parallel()
	s := startStack(t)
	s.setStock(t, "MUG-001", 10)
	s.exec(t, "order", `INSERT INTO outbox (id, subject, envelope) VALUES (gen_random_uuid(), 'ecommerce.order.created.v2.huge', decode(repeat('00', 3145728), 'hex'))`)
	if o := s.await(t, s.create(t, orderRequest(line("MUG-001", 1))).GetOrderId()); o.GetStatus() != orderv1.OrderStatus_ORDER_STATUS_CONFIRMED {
		t.Fatalf("an order behind the unpublishable row: %v", o.GetStatus())
	}
	var letter *deadletterv1.DeadLetter
	testenv.CheckFor(t, 30*time.Second, 20*time.Millisecond, func() error {
		res, err := s.dlq.ListDeadLetters(context.Background(), connect.NewRequest(&deadletterv1.ListDeadLettersRequest{}))
		if err != nil {
			return err
		}
		for _, l := range res.Msg.GetDeadLetters() {
			if l.GetConsumer() == deadletter.OutboxConsumer {
				letter = l
				return nil
			}
		}
		return fmt.Errorf("no dead letter of the outbox relay in %v", res.Msg.GetDeadLetters())
	})
	if !strings.Contains(letter.GetError(), "max_payload") || letter.GetOriginalStream() != "ECOMMERCE_ORDER" {
		t.Errorf("dead letter %v", letter)
	}
	res, err := s.dlq.RedriveDeadLetters(context.Background(), connect.NewRequest(&deadletterv1.RedriveDeadLettersRequest{Ids: []uint64{letter.GetId()}}))
	if err != nil || res.Msg.GetResults()[0].GetOk() {
		t.Errorf("redrive of an unpublishable row: %v, %v; want refused", res, err)
	}
}
