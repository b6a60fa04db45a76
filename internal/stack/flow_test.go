package stack_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"buf.build/gen/go/bufbuild/protovalidate/protocolbuffers/go/buf/validate"
	"buf.build/go/protovalidate"
	"connectrpc.com/connect"
	"github.com/jackc/pgx/v5"
	"github.com/nats-io/nats.go"
	"google.golang.org/protobuf/proto"

	orderv1 "github.com/shopbus/shopbus/gen/go/shopbus/order/v1"
	"github.com/shopbus/shopbus/internal/event"
	"github.com/shopbus/shopbus/internal/testenv"
)

func TestOrderConfirmed(t *testing.T) {
	s := startStack(t)
	s.setStock(t, "MUG-001", 10)
	s.setStock(t, "TEE-BLK-M", 5)

	o := s.create(t, orderRequest(line("MUG-001", 2), line("TEE-BLK-M", 1)))
	if o.GetStatus() != orderv1.OrderStatus_ORDER_STATUS_PENDING || o.GetTotalMinor() != 3000 {
		t.Errorf("created order: status %v total %d, want PENDING 3000", o.GetStatus(), o.GetTotalMinor())
	}
	if o = s.await(t, o.GetOrderId()); o.GetStatus() != orderv1.OrderStatus_ORDER_STATUS_CONFIRMED {
		t.Fatalf("order %v: %q, want CONFIRMED", o.GetStatus(), o.GetRejectReason())
	}
	for sku, want := range map[string][2]int64{"MUG-001": {8, 2}, "TEE-BLK-M": {4, 1}} {
		if st := s.stock(t, sku); st.GetOnHand() != want[0] || st.GetReserved() != want[1] {
			t.Errorf("%s: on hand %d reserved %d, want %d %d", sku, st.GetOnHand(), st.GetReserved(), want[0], want[1])
		}
	}
}

func TestOrderRejected(t *testing.T) {
	s := startStack(t)
	s.setStock(t, "MUG-001", 10)
	s.setStock(t, "TEE-BLK-M", 1)

	for _, tc := range []struct {
		name   string
		req    *orderv1.CreateOrderRequest
		reason string
	}{
		{"out of stock", orderRequest(line("TEE-BLK-M", 3)), "out of stock: TEE-BLK-M (requested 3, available 1)"},
		{"one line short", orderRequest(line("MUG-001", 2), line("TEE-BLK-M", 2)), "out of stock: TEE-BLK-M (requested 2, available 1)"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			o := s.await(t, s.create(t, tc.req).GetOrderId())
			if o.GetStatus() != orderv1.OrderStatus_ORDER_STATUS_REJECTED || o.GetRejectReason() != tc.reason {
				t.Errorf("order %v %q, want REJECTED %q", o.GetStatus(), o.GetRejectReason(), tc.reason)
			}
			if st := s.stock(t, "MUG-001"); st.GetOnHand() != 10 || st.GetReserved() != 0 {
				t.Errorf("MUG-001 changed: %v", st)
			}
			if st := s.stock(t, "TEE-BLK-M"); st.GetOnHand() != 1 || st.GetReserved() != 0 {
				t.Errorf("TEE-BLK-M changed: %v", st)
			}
		})
	}
}

// TestNoOversell: 200 concurrent orders of one unit for 50 in stock.
func TestNoOversell(t *testing.T) {
	s := startStack(t)
	s.setStock(t, "HOT-ITEM", 50)
	ids := make([]string, 200)
	var wg sync.WaitGroup
	for i := range ids {
		wg.Go(func() {
			res, err := s.orders.CreateOrder(context.Background(), connect.NewRequest(orderRequest(line("HOT-ITEM", 1))))
			if err != nil {
				t.Error(err)
				return
			}
			ids[i] = res.Msg.GetOrder().GetOrderId()
		})
	}
	wg.Wait()
	if t.Failed() {
		t.FailNow()
	}
	counts := map[orderv1.OrderStatus]int{}
	for _, id := range ids {
		counts[s.await(t, id).GetStatus()]++
	}
	if counts[orderv1.OrderStatus_ORDER_STATUS_CONFIRMED] != 50 || counts[orderv1.OrderStatus_ORDER_STATUS_REJECTED] != 150 {
		t.Errorf("confirmed %d rejected %d, want 50 and 150", counts[orderv1.OrderStatus_ORDER_STATUS_CONFIRMED], counts[orderv1.OrderStatus_ORDER_STATUS_REJECTED])
	}
	if st := s.stock(t, "HOT-ITEM"); st.GetOnHand() != 0 || st.GetReserved() != 50 {
		t.Errorf("stock on hand %d reserved %d, want 0 and 50", st.GetOnHand(), st.GetReserved())
	}
}

func TestCreateOrderIdempotent(t *testing.T) {
	s := startStack(t)
	s.setStock(t, "MUG-001", 100)

	t.Run("sequential", func(t *testing.T) {
		req := orderRequest(line("MUG-001", 1))
		first := s.create(t, req)
		for range 3 {
			res, err := s.orders.CreateOrder(context.Background(), connect.NewRequest(req))
			if err != nil {
				t.Fatal(err)
			}
			if res.Msg.GetOrder().GetOrderId() != first.GetOrderId() || !res.Msg.GetReplayed() {
				t.Errorf("retry returned order %s replayed=%v, want %s replayed", res.Msg.GetOrder().GetOrderId(), res.Msg.GetReplayed(), first.GetOrderId())
			}
		}
		s.assertOneOrderOneEvent(t, req.GetIdempotencyKey())
	})
	t.Run("concurrent", func(t *testing.T) {
		req := orderRequest(line("MUG-001", 1))
		ids := make([]string, 20)
		var wg sync.WaitGroup
		for i := range ids {
			wg.Go(func() {
				res, err := s.orders.CreateOrder(context.Background(), connect.NewRequest(req))
				if err != nil {
					t.Error(err)
					return
				}
				ids[i] = res.Msg.GetOrder().GetOrderId()
			})
		}
		wg.Wait()
		for _, id := range ids {
			if id != ids[0] {
				t.Fatalf("concurrent retries returned different orders: %v", ids)
			}
		}
		s.assertOneOrderOneEvent(t, req.GetIdempotencyKey())
	})
	t.Run("same key, different order", func(t *testing.T) {
		req := orderRequest(line("MUG-001", 1))
		s.create(t, req)
		req.Lines[0].Quantity = 2
		_, err := s.orders.CreateOrder(context.Background(), connect.NewRequest(req))
		if connect.CodeOf(err) != connect.CodeAlreadyExists {
			t.Errorf("reused key with another request: %v, want AlreadyExists", err)
		}
		s.assertOneOrderOneEvent(t, req.GetIdempotencyKey())
	})
}

func (s *testStack) assertOneOrderOneEvent(t *testing.T, key string) {
	t.Helper()
	if n := s.count(t, "order", "SELECT count(*) FROM orders WHERE idempotency_key = $1", key); n != 1 {
		t.Errorf("%d orders for key %s, want 1", n, key)
	}
	if n := s.count(t, "order", `SELECT count(*) FROM outbox WHERE id IN (SELECT o.id FROM outbox o, orders r
		WHERE r.idempotency_key = $1 AND o.created_at >= r.created_at)`, key); n < 1 {
		t.Errorf("no OrderCreated in the outbox for key %s", key)
	}
	if n := s.count(t, "order", "SELECT count(*) FROM outbox") - s.count(t, "order", "SELECT count(*) FROM orders"); n != 0 {
		t.Errorf("outbox rows - orders = %d, want 0 (one event per order)", n)
	}
}

// TestRepublishUnderAnotherMsgID: the same OrderCreated envelope published a
// second time with a different Nats-Msg-Id (so JetStream's duplicate window
// does not catch it) adjusts stock once.
func TestRepublishUnderAnotherMsgID(t *testing.T) {
	s := startStack(t)
	s.setStock(t, "MUG-001", 10)
	o := s.await(t, s.create(t, orderRequest(line("MUG-001", 3))).GetOrderId())
	if o.GetStatus() != orderv1.OrderStatus_ORDER_STATUS_CONFIRMED {
		t.Fatalf("order %v", o.GetStatus())
	}

	var subject string
	var data []byte
	conn, err := pgx.Connect(context.Background(), testenv.DatabaseURL())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(context.Background())
	if err := conn.QueryRow(context.Background(), "SELECT subject, envelope FROM "+pgx.Identifier{s.schema + "_order", "outbox"}.Sanitize()+" LIMIT 1").Scan(&subject, &data); err != nil {
		t.Fatal(err)
	}
	env, err := event.Decode(data)
	if err != nil {
		t.Fatal(err)
	}
	h := event.Headers(env)
	h.Set(nats.MsgIdHdr, "another-"+env.GetId())
	ack, err := s.JS.PublishMsg(context.Background(), &nats.Msg{Subject: subject, Data: data, Header: h})
	if err != nil || ack.Duplicate {
		t.Fatalf("republish: %v duplicate=%v", err, ack != nil && ack.Duplicate)
	}
	s.awaitConsumed(t, "ECOMMERCE_ORDER", "inventory-reserve-stock")

	if st := s.stock(t, "MUG-001"); st.GetOnHand() != 7 || st.GetReserved() != 3 {
		t.Errorf("stock on hand %d reserved %d, want 7 and 3", st.GetOnHand(), st.GetReserved())
	}
	if n := s.count(t, "inventory", outcomesSQL); n != 1 {
		t.Errorf("%d inventory outcomes, want 1", n)
	}
}

// awaitConsumed waits until the consumer group durable (its shared durable,
// or every partition's) has acked everything in its stream.
func (s *testStack) awaitConsumed(t *testing.T, stream, durable string) {
	t.Helper()
	ctx := context.Background()
	testenv.CheckFor(t, 30*time.Second, 20*time.Millisecond, func() error {
		st, err := s.JS.Stream(ctx, stream)
		if err != nil {
			return err
		}
		names := st.ConsumerNames(ctx)
		found := false
		for name := range names.Name() {
			if name != durable && !strings.HasPrefix(name, durable+"-p") {
				continue
			}
			found = true
			c, err := st.Consumer(ctx, name)
			if err != nil {
				return err
			}
			info, err := c.Info(ctx)
			if err != nil {
				return err
			}
			if info.NumPending != 0 || info.NumAckPending != 0 {
				return fmt.Errorf("consumer %s: %d pending, %d unacked", name, info.NumPending, info.NumAckPending)
			}
		}
		if !found {
			return fmt.Errorf("no consumer of group %s on %s", durable, stream)
		}
		return names.Err()
	})
}

func TestInvalidRequests(t *testing.T) {
	s := startStack(t)
	many := make([]*orderv1.OrderLine, 101)
	for i := range many {
		many[i] = line("SKU-"+strings.Repeat("A", 3)+string(rune('A'+i%26))+string(rune('A'+i/26)), 1)
	}
	for _, tc := range []struct {
		name  string
		req   *orderv1.CreateOrderRequest
		field string
	}{
		{"missing lines", &orderv1.CreateOrderRequest{IdempotencyKey: newKey(), CustomerId: customer, Currency: "EUR"}, "lines"},
		{"quantity 0", orderRequest(line("MUG-001", 0)), "lines[0].quantity"},
		{"malformed customer id", &orderv1.CreateOrderRequest{IdempotencyKey: newKey(), CustomerId: "cust-1", Currency: "EUR", Lines: []*orderv1.OrderLine{line("MUG-001", 1)}}, "customer_id"},
		{"malformed SKU", orderRequest(line("mug 1", 1)), "lines[0].sku"},
		{"oversized list", orderRequest(many...), "lines"},
		{"duplicate SKU", orderRequest(line("MUG-001", 1), line("MUG-001", 2)), ""},
		{"missing idempotency key", &orderv1.CreateOrderRequest{CustomerId: customer, Currency: "EUR", Lines: []*orderv1.OrderLine{line("MUG-001", 1)}}, "idempotency_key"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := s.orders.CreateOrder(context.Background(), connect.NewRequest(tc.req))
			if connect.CodeOf(err) != connect.CodeInvalidArgument {
				t.Fatalf("error %v, want InvalidArgument", err)
			}
			if fields := violationFields(t, err); tc.field != "" && !slices.Contains(fields, tc.field) {
				t.Errorf("violations name %v, want %q", fields, tc.field)
			}
		})
	}
	if n := s.count(t, "order", "SELECT count(*) FROM orders"); n != 0 {
		t.Errorf("%d orders written by invalid requests", n)
	}
	if n := s.count(t, "order", "SELECT count(*) FROM outbox"); n != 0 {
		t.Errorf("%d events written by invalid requests", n)
	}
	_, err := s.orders.GetOrder(context.Background(), connect.NewRequest(&orderv1.GetOrderRequest{OrderId: "0193a5e2-7c1d-7b3e-9f4a-2d6c8e0f1a2b"}))
	if connect.CodeOf(err) != connect.CodeNotFound {
		t.Errorf("GetOrder of an unknown order: %v, want NotFound", err)
	}
	watch, err := s.orders.WatchOrder(context.Background(), connect.NewRequest(&orderv1.WatchOrderRequest{OrderId: "0193a5e2-7c1d-7b3e-9f4a-2d6c8e0f1a2b"}))
	if err == nil {
		for watch.Receive() {
			t.Errorf("WatchOrder of an unknown order sent %v", watch.Msg())
		}
		err = watch.Err()
		watch.Close()
	}
	if connect.CodeOf(err) != connect.CodeNotFound {
		t.Errorf("WatchOrder of an unknown order: %v, want NotFound", err)
	}
}

func violationFields(t *testing.T, err error) []string {
	t.Helper()
	var cerr *connect.Error
	if !errors.As(err, &cerr) {
		t.Fatalf("not a connect error: %v", err)
	}
	var fields []string
	for _, d := range cerr.Details() {
		v, err := d.Value()
		if err != nil {
			t.Fatal(err)
		}
		if vs, ok := v.(*validate.Violations); ok {
			for _, v := range vs.GetViolations() {
				fields = append(fields, protovalidate.FieldPathString(v.GetField()))
			}
		}
	}
	if len(fields) == 0 {
		t.Fatalf("no field violations in %v", err)
	}
	return fields
}

// TestCreateOrderReturnsWhatIsStored: the order CreateOrder returns (built
// without reading it back) is the order GetOrder reads, a customer id in
// capitals and the times at PostgreSQL's precision included.
func TestCreateOrderReturnsWhatIsStored(t *testing.T) {
	t.Parallel()
	s := startStack(t)
	s.setPrice(t, "MUG-001", unitPrice, "EUR") // priced, not stocked
	s.setPrice(t, "TEE-BLK-M", unitPrice, "EUR")
	req := orderRequest(line("MUG-001", 2), line("TEE-BLK-M", 1))
	req.CustomerId = strings.ToUpper(req.GetCustomerId())
	req.CouponCode = "WELCOME10"
	created := s.create(t, req)
	res, err := s.orders.GetOrder(context.Background(), connect.NewRequest(&orderv1.GetOrderRequest{OrderId: created.GetOrderId()}))
	if err != nil {
		t.Fatal(err)
	}
	stored := res.Msg.GetOrder()
	created.Status, stored.Status = 0, 0 // the consumers may have decided it meanwhile
	created.UpdatedAt, stored.UpdatedAt, stored.RejectReason = nil, nil, ""
	if !proto.Equal(created, stored) {
		t.Errorf("CreateOrder returned\n%v\nGetOrder reads\n%v", created, stored)
	}
}
