package stack_test

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"connectrpc.com/connect"
	"github.com/jackc/pgx/v5"
	"github.com/nats-io/nats.go"

	deadletterv1 "github.com/shopbus/shopbus/gen/go/shopbus/deadletter/v1"
	orderv1 "github.com/shopbus/shopbus/gen/go/shopbus/order/v1"
	"github.com/shopbus/shopbus/internal/messaging"
	"github.com/shopbus/shopbus/internal/stack"
	"github.com/shopbus/shopbus/internal/testenv"
)

// fastRetry makes retries run out in well under a second.
func fastRetry(c *stack.Config) {
	c.Retry = messaging.RetryPolicy{MaxDeliver: 3, Base: 20 * time.Millisecond, Cap: 100 * time.Millisecond}
}

// awaitDeadLetters lists the DLQ until it holds n dead letters.
func (s *testStack) awaitDeadLetters(t *testing.T, n int) []*deadletterv1.DeadLetter {
	t.Helper()
	var got []*deadletterv1.DeadLetter
	testenv.CheckFor(t, 30*time.Second, 20*time.Millisecond, func() error {
		res, err := s.dlq.ListDeadLetters(context.Background(), connect.NewRequest(&deadletterv1.ListDeadLettersRequest{PageSize: 500}))
		if err != nil {
			t.Fatal(err)
		}
		if got = res.Msg.GetDeadLetters(); len(got) < n {
			return fmt.Errorf("%d dead letters, want %d", len(got), n)
		}
		if len(got) > n {
			t.Fatalf("%d dead letters, want %d: %v", len(got), n, got)
		}
		if res.Msg.GetStats().GetMessages() != uint64(n) || res.Msg.GetStats().GetMaxBytes() <= 0 {
			t.Errorf("stats %v, want %d messages and a size limit", res.Msg.GetStats(), n)
		}
		return nil
	})
	return got
}

func (s *testStack) exec(t *testing.T, service, sql string) {
	t.Helper()
	conn, err := pgx.Connect(context.Background(), testenv.DatabaseURL())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(context.Background())
	if _, err := conn.Exec(context.Background(), "SET search_path TO "+pgx.Identifier{s.schema + "_" + service}.Sanitize()+"; "+sql); err != nil {
		t.Fatalf("%s: %v", sql, err)
	}
}

// TestPoisonGoesToDLQ: an undecodable message on order.created is not
// retried: it is terminated at once and lands in the DLQ with where it came
// from and why, once for each consumer of order.created (inventory's and
// fraud's: each gave up on it).
func TestPoisonGoesToDLQ(t *testing.T) {
	s := startStack(t, fastRetry)
	ack, err := s.JS.PublishMsg(context.Background(), &nats.Msg{Subject: "ecommerce.order.created.v2.k1", Data: []byte("not an envelope")})
	if err != nil {
		t.Fatal(err)
	}
	dls := s.awaitDeadLetters(t, 2)
	slices.SortFunc(dls, func(a, b *deadletterv1.DeadLetter) int { return strings.Compare(a.GetConsumer(), b.GetConsumer()) })
	if !strings.HasPrefix(dls[0].GetConsumer(), "fraud-score-order-p") {
		t.Errorf("the other dead letter is %s's, want the fraud service's", dls[0].GetConsumer())
	}
	dl := dls[1]
	if dl.GetReason() != deadletterv1.Reason_REASON_TERMINATED || dl.GetDeliveries() != 1 ||
		dl.GetOriginalStream() != "ECOMMERCE_ORDER" || dl.GetOriginalSequence() != ack.Sequence ||
		messaging.PublishedSubject(dl.GetOriginalSubject()) != "ecommerce.order.created.v2.k1" || !strings.HasPrefix(dl.GetConsumer(), "inventory-reserve-stock-p") ||
		!strings.Contains(dl.GetError(), "malformed event") || dl.GetFailedAt() == nil || dl.GetFirstFailureAt() == nil {
		t.Errorf("dead letter %v", dl)
	}
	// Bytes that are no event cannot be classified: withheld unless an
	// admin (the test stack's client) asks for them.
	got, err := s.dlq.GetDeadLetter(context.Background(), connect.NewRequest(&deadletterv1.GetDeadLetterRequest{Id: dl.GetId()}))
	if err != nil || len(got.Msg.GetDeadLetter().GetData()) != 0 || !got.Msg.GetDeadLetter().GetDataWithheld() {
		t.Errorf("GetDeadLetter: %v %v; want the data withheld", got, err)
	}
	got, err = s.dlq.GetDeadLetter(context.Background(), connect.NewRequest(&deadletterv1.GetDeadLetterRequest{Id: dl.GetId(), RevealPersonal: true}))
	if err != nil || string(got.Msg.GetDeadLetter().GetData()) != "not an envelope" {
		t.Errorf("GetDeadLetter with reveal_personal: %v %v", got, err)
	}
}

// TestRetriesExhaustedThenRedrive: the inventory database fails for longer
// than the retry budget, the order.created lands in the DLQ with its last
// error; after recovery, a redrive completes the order exactly once, and a
// second redrive changes nothing.
func TestRetriesExhaustedThenRedrive(t *testing.T) {
	s := startStack(t, fastRetry)
	s.setStock(t, "MUG-001", 10)
	s.exec(t, "inventory", "ALTER TABLE stock RENAME TO stock_down") // the dependency fails

	o := s.create(t, orderRequest(line("MUG-001", 2)))
	dl := s.awaitDeadLetters(t, 1)[0]
	if dl.GetReason() != deadletterv1.Reason_REASON_MAX_DELIVERIES || dl.GetDeliveries() != 3 ||
		!strings.Contains(dl.GetError(), `relation "stock" does not exist`) || dl.GetEventType() != "order.created" {
		t.Errorf("dead letter %v", dl)
	}
	if st := s.orderStatus(t, o.GetOrderId()); st != orderv1.OrderStatus_ORDER_STATUS_PENDING {
		t.Fatalf("order %v before the redrive, want PENDING", st)
	}

	s.exec(t, "inventory", "ALTER TABLE stock_down RENAME TO stock") // recovered
	res, err := s.dlq.RedriveDeadLetters(context.Background(), connect.NewRequest(&deadletterv1.RedriveDeadLettersRequest{Ids: []uint64{dl.GetId()}}))
	if err != nil || !res.Msg.GetResults()[0].GetOk() {
		t.Fatalf("redrive: %v %v", res, err)
	}
	if o = s.await(t, o.GetOrderId()); o.GetStatus() != orderv1.OrderStatus_ORDER_STATUS_CONFIRMED {
		t.Fatalf("order %v after the redrive, want CONFIRMED", o.GetStatus())
	}

	// A second redrive: the dead letter is gone; and the same event
	// published once more is absorbed by processed_events.
	res, err = s.dlq.RedriveDeadLetters(context.Background(), connect.NewRequest(&deadletterv1.RedriveDeadLettersRequest{Ids: []uint64{dl.GetId()}}))
	if err != nil || res.Msg.GetResults()[0].GetOk() || !strings.Contains(res.Msg.GetResults()[0].GetError(), "not found") {
		t.Errorf("second redrive: %v %v, want not found", res, err)
	}
	s.awaitConsumed(t, "ECOMMERCE_ORDER", "inventory-reserve-stock")
	if st := s.stock(t, "MUG-001"); st.GetOnHand() != 8 || st.GetReserved() != 2 {
		t.Errorf("stock on hand %d reserved %d, want 8 and 2 (reserved once)", st.GetOnHand(), st.GetReserved())
	}
	if n := s.count(t, "inventory", outcomesSQL); n != 1 {
		t.Errorf("%d inventory outcomes, want 1", n)
	}
}

// TestDLQNeverRedrivesIntoItself: a dead letter whose original subject is
// the DLQ's own is refused.
func TestDLQNeverRedrivesIntoItself(t *testing.T) {
	s := startStack(t)
	h := nats.Header{}
	h.Set("Shopbus-Dlq-Original-Subject", "shopbus.dlq.SHOPBUS_DLQ.x.1")
	h.Set("Shopbus-Dlq-Original-Stream", "SHOPBUS_DLQ")
	ack, err := s.JS.PublishMsg(context.Background(), &nats.Msg{Subject: "shopbus.dlq.SHOPBUS_DLQ.x.1", Data: []byte("x"), Header: h})
	if err != nil {
		t.Fatal(err)
	}
	res, err := s.dlq.RedriveDeadLetters(context.Background(), connect.NewRequest(&deadletterv1.RedriveDeadLettersRequest{Ids: []uint64{ack.Sequence}}))
	if err != nil || res.Msg.GetResults()[0].GetOk() || !strings.Contains(res.Msg.GetResults()[0].GetError(), "dead-letter queue itself") {
		t.Errorf("redrive into the DLQ: %v %v, want refused", res, err)
	}
}

func (s *testStack) orderStatus(t *testing.T, id string) orderv1.OrderStatus {
	t.Helper()
	res, err := s.orders.GetOrder(context.Background(), connect.NewRequest(&orderv1.GetOrderRequest{OrderId: id}))
	if err != nil {
		t.Fatal(err)
	}
	return res.Msg.GetOrder().GetStatus()
}
