package stack_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/nats-io/nats.go"
	"google.golang.org/protobuf/types/known/timestamppb"

	ordereventsv2 "github.com/shopbus/shopbus/gen/go/ecommerce/order/v2"
	"github.com/shopbus/shopbus/internal/event"
	"github.com/shopbus/shopbus/internal/stack"
	"github.com/shopbus/shopbus/internal/testenv"
)

// TestEventPathOwnsItsConnections: with every connection of the services'
// RPC pools taken (a flood of RPCs), the event path still works: an
// order.created reaches the inventory service, which reserves the stock.
func TestEventPathOwnsItsConnections(t *testing.T) {
	t.Parallel()
	// Pools of 4: the test holds every RPC connection of six services, and
	// the server's 100 connections are shared with the tests around it.
	s := startStack(t, func(c *stack.Config) { c.DatabaseURL = testenv.WithPoolSize(c.DatabaseURL, 4) })
	s.setStock(t, "MUG-001", 10)
	ctx := context.Background()
	// The RPC pools are the first of each service's two.
	for i, p := range s.Pools {
		if i%2 == 0 {
			holdAll(t, p)
		}
	}
	created, err := event.New(ctx, &ordereventsv2.OrderCreated{
		OrderId: "0193a5e2-7c1d-7b3e-9f4a-2d6c8e0f1a2e", Customer: &ordereventsv2.Customer{CustomerId: customer},
		Lines:     []*ordereventsv2.OrderLine{{Sku: "MUG-001", Quantity: 3, UnitPrice: &ordereventsv2.Money{Currency: "EUR", AmountMinor: unitPrice}}},
		Total:     &ordereventsv2.Money{Currency: "EUR", AmountMinor: 3 * unitPrice},
		CreatedAt: timestamppb.Now(),
	}, event.WithSource("shopbus/order"))
	if err != nil {
		t.Fatal(err)
	}
	data, _ := event.Encode(created)
	if _, err := s.JS.PublishMsg(ctx, &nats.Msg{Subject: "ecommerce.order.created.v2." + created.GetPartitionKey(), Data: data, Header: event.Headers(created)}); err != nil {
		t.Fatal(err)
	}
	testenv.CheckFor(t, 30*time.Second, 20*time.Millisecond, func() error {
		if n := s.count(t, "inventory", "SELECT on_hand FROM stock WHERE sku = 'MUG-001'"); n != 7 {
			return fmt.Errorf("MUG-001 has %d on hand, want 7", n)
		}
		return nil
	})
}

// holdAll takes every connection of p until the test ends.
func holdAll(t *testing.T, p *pgxpool.Pool) {
	t.Helper()
	for range p.Config().MaxConns {
		c, err := p.Acquire(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(c.Release)
	}
}
