package stack_test

import (
	"bytes"
	"cmp"
	"context"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"connectrpc.com/connect"
	"github.com/nats-io/nats.go"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	inventoryeventsv1 "github.com/shopbus/shopbus/gen/go/ecommerce/inventory/v1"
	ordereventsv2 "github.com/shopbus/shopbus/gen/go/ecommerce/order/v2"
	deadletterv1 "github.com/shopbus/shopbus/gen/go/shopbus/deadletter/v1"
	inventoryv1 "github.com/shopbus/shopbus/gen/go/shopbus/inventory/v1"
	orderv1 "github.com/shopbus/shopbus/gen/go/shopbus/order/v1"
	"github.com/shopbus/shopbus/internal/event"
	"github.com/shopbus/shopbus/internal/testenv"
)

// The tests of docs/bad-inputs.md, one per row.

// TestBadRPCRequests: malformed and oversized requests, and orders at a
// price that is not the catalog's, get the right Connect code and write
// nothing.
func TestBadRPCRequests(t *testing.T) {
	s := startStack(t)
	s.setStock(t, "MUG-001", 5) // and its price, unitPrice EUR
	s.setPrice(t, "DEAR-001", 10_000_000_000, "EUR")
	ctx := context.Background()
	post := func(path, contentType string, body []byte) (int, string) {
		res, err := http.Post(s.URL()+path, contentType, bytes.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		defer res.Body.Close()
		var b bytes.Buffer
		_, _ = b.ReadFrom(res.Body)
		return res.StatusCode, b.String()
	}
	for _, tc := range []struct {
		name     string
		call     func() error
		code     connect.Code
		mentions string
	}{
		{"GetOrder with a malformed id", func() error {
			_, err := s.orders.GetOrder(ctx, connect.NewRequest(&orderv1.GetOrderRequest{OrderId: "42"}))
			return err
		}, connect.CodeInvalidArgument, "order_id"},
		{"ListOrders with a forged page token", func() error {
			_, err := s.orders.ListOrders(ctx, connect.NewRequest(&orderv1.ListOrdersRequest{PageToken: "bm90LWEtdG9rZW4"}))
			return err
		}, connect.CodeInvalidArgument, "page token"},
		{"SetStock negative", func() error {
			_, err := s.inventory.SetStock(ctx, connect.NewRequest(&inventoryv1.SetStockRequest{Sku: "MUG-001", OnHand: -1}))
			return err
		}, connect.CodeInvalidArgument, "on_hand"},
		{"Restock an unknown SKU", func() error {
			_, err := s.inventory.Restock(ctx, connect.NewRequest(&inventoryv1.RestockRequest{Sku: "NOPE-404", Quantity: 1}))
			return err
		}, connect.CodeNotFound, "NOPE-404"},
		{"order total above the contract's limit", func() error {
			_, err := s.orders.CreateOrder(ctx, connect.NewRequest(orderRequest(&orderv1.OrderLine{Sku: "DEAR-001", Quantity: 200})))
			return err
		}, connect.CodeInvalidArgument, "exceeds"},
		{"CreateOrder at a price that is not the current one", func() error {
			_, err := s.orders.CreateOrder(ctx, connect.NewRequest(orderRequest(&orderv1.OrderLine{Sku: "MUG-001", Quantity: 50, UnitPriceMinor: 1})))
			return err
		}, connect.CodeFailedPrecondition, "MUG-001 costs 1000 EUR per unit, the request says 1"},
		{"CreateOrder in another currency than the SKU's", func() error {
			req := orderRequest(line("MUG-001", 1))
			req.Currency = "USD"
			_, err := s.orders.CreateOrder(ctx, connect.NewRequest(req))
			return err
		}, connect.CodeFailedPrecondition, "MUG-001 is priced in EUR, the order is in USD"},
		{"CreateOrder for a SKU without a price", func() error {
			_, err := s.orders.CreateOrder(ctx, connect.NewRequest(orderRequest(line("MUG-001", 1), &orderv1.OrderLine{Sku: "NOPE-404", Quantity: 1})))
			return err
		}, connect.CodeFailedPrecondition, "no price for SKU: NOPE-404"},
		{"SetPrice negative", func() error {
			_, err := s.inventory.SetPrice(ctx, connect.NewRequest(&inventoryv1.SetPriceRequest{Sku: "MUG-001", UnitPriceMinor: -1, Currency: "EUR"}))
			return err
		}, connect.CodeInvalidArgument, "unit_price_minor"},
		{"SetPrice with a currency that is not ISO 4217", func() error {
			_, err := s.inventory.SetPrice(ctx, connect.NewRequest(&inventoryv1.SetPriceRequest{Sku: "MUG-001", UnitPriceMinor: 1, Currency: "eur"}))
			return err
		}, connect.CodeInvalidArgument, "currency"},
		{"oversized request (2 MiB)", func() error {
			req := orderRequest(line("MUG-001", 1))
			req.CouponCode = strings.Repeat("A", 2<<20)
			_, err := s.orders.CreateOrder(ctx, connect.NewRequest(req))
			return err
		}, connect.CodeResourceExhausted, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.call()
			if connect.CodeOf(err) != tc.code || !strings.Contains(err.Error(), tc.mentions) {
				t.Errorf("error %v, want %v mentioning %q", err, tc.code, tc.mentions)
			}
		})
	}
	t.Run("malformed JSON body", func(t *testing.T) {
		status, body := post("/shopbus.order.v1.OrderService/CreateOrder", "application/json", []byte(`{"customer_id": `))
		if status != http.StatusBadRequest || !strings.Contains(body, "invalid_argument") {
			t.Errorf("status %d body %s, want 400 invalid_argument", status, body)
		}
	})
	t.Run("wrong field type in JSON", func(t *testing.T) {
		status, body := post("/shopbus.order.v1.OrderService/CreateOrder", "application/json", []byte(`{"lines": "many"}`))
		if status != http.StatusBadRequest || !strings.Contains(body, `unexpected token \"many\"`) {
			t.Errorf("status %d body %s, want 400 naming the bad token", status, body)
		}
	})
	if n := s.count(t, "order", "SELECT count(*) FROM orders"); n != 0 {
		t.Errorf("%d orders written by bad requests", n)
	}
	if n := s.count(t, "order", "SELECT count(*) FROM outbox"); n != 0 {
		t.Errorf("%d events written by bad requests", n)
	}
	if st := s.stock(t, "MUG-001"); st.GetOnHand() != 5 || st.GetPrice().GetUnitPriceMinor() != unitPrice || st.GetPrice().GetRevision() != 1 {
		t.Errorf("stock or price changed by bad requests: %v", st)
	}
}

// TestBadEvents: events published straight onto a stream that can never be
// handled go to the DLQ at once (one delivery), with a reason that says
// what is wrong, and change nothing.
func TestBadEvents(t *testing.T) {
	s := startStack(t)
	s.setStock(t, "MUG-001", 5)
	ctx := context.Background()
	valid := &ordereventsv2.OrderCreated{
		OrderId:   "0193a5e2-7c1d-7b3e-9f4a-2d6c8e0f1a2b",
		Customer:  &ordereventsv2.Customer{CustomerId: "6f1c2b3a-4d5e-4f60-8a7b-9c0d1e2f3a4b"},
		Lines:     []*ordereventsv2.OrderLine{{Sku: "MUG-001", Quantity: 1, UnitPrice: &ordereventsv2.Money{Currency: "EUR", AmountMinor: 100}}},
		Total:     &ordereventsv2.Money{Currency: "EUR", AmountMinor: 100},
		CreatedAt: timestamppb.Now(),
	}
	envelope := func(msg proto.Message, mutate func(*nats.Header, []byte) []byte) (nats.Header, []byte) {
		spec, _ := event.SpecOf(msg)
		env, err := event.New(ctx, msg, event.WithSource(spec.Producer)) // refused for its defect, not its source
		if err != nil {
			t.Fatal(err)
		}
		b, _ := event.Encode(env)
		h := event.Headers(env)
		return h, mutate(&h, b)
	}
	reencode := func(f func(*ordereventsv2.OrderCreated)) func(*nats.Header, []byte) []byte {
		return func(h *nats.Header, b []byte) []byte {
			env, _ := event.Decode(b)
			m := proto.CloneOf(valid)
			f(m)
			env.Payload, _ = proto.Marshal(m)
			out, _ := proto.Marshal(env)
			return out
		}
	}
	same := func(_ *nats.Header, b []byte) []byte { return b }
	for _, tc := range []struct {
		name     string
		subject  string
		build    func() (nats.Header, []byte)
		mentions string
	}{
		{"undecodable bytes", "ecommerce.order.created.v2", func() (nats.Header, []byte) { return nil, []byte{0xff, 0xfe, 0x00} }, "malformed event"},
		{"oversized field in the envelope", "ecommerce.order.created.v2", func() (nats.Header, []byte) {
			return envelope(valid, func(h *nats.Header, b []byte) []byte {
				env, _ := event.Decode(b)
				env.Source = strings.Repeat("s", 500)
				out, _ := proto.Marshal(env)
				return out
			})
		}, "source"},
		{"invalid payload", "ecommerce.order.created.v2", func() (nats.Header, []byte) {
			return envelope(valid, reencode(func(m *ordereventsv2.OrderCreated) { m.Lines[0].Quantity = 0 }))
		}, "lines[0].quantity"},
		{"unknown type", "ecommerce.order.created.v2", func() (nats.Header, []byte) {
			return envelope(valid, func(h *nats.Header, b []byte) []byte {
				env, _ := event.Decode(b)
				env.Type = "order.teleported"
				h.Set(event.HeaderType, "order.teleported")
				out, _ := proto.Marshal(env)
				return out
			})
		}, "unknown event type"},
		{"unknown version", "ecommerce.order.created.v2", func() (nats.Header, []byte) {
			return envelope(valid, func(h *nats.Header, b []byte) []byte {
				env, _ := event.Decode(b)
				env.Version = 9
				h.Set(event.HeaderVersion, "9")
				out, _ := proto.Marshal(env)
				return out
			})
		}, "version 9"},
		{"type header disagrees with the payload", "ecommerce.order.created.v2", func() (nats.Header, []byte) {
			h, b := envelope(valid, same)
			h.Set(event.HeaderType, "inventory.adjusted")
			return h, b
		}, "header Shopbus-Type"},
		{"an event of another type on this subject", "ecommerce.order.created.v2", func() (nats.Header, []byte) {
			h, b := envelope(&inventoryeventsv1.InventoryRejected{
				OrderId: valid.GetOrderId(), Reason: inventoryeventsv1.RejectionReason_REJECTION_REASON_OUT_OF_STOCK,
				Shortages: []*inventoryeventsv1.Shortage{{Sku: "MUG-001", Requested: 1}}, RejectedAt: timestamppb.Now(),
			}, same)
			return h, b
		}, "unexpected event inventory.rejected.v1"},
		{"an event from a service that does not produce it", "ecommerce.order.created.v2", func() (nats.Header, []byte) {
			return envelope(valid, func(h *nats.Header, b []byte) []byte {
				env, _ := event.Decode(b)
				env.Source = "shopbus/inventory"
				out, _ := proto.Marshal(env)
				return out
			})
		}, `its producer is "shopbus/order"`},
		{"a subject whose key is not the envelope's", "ecommerce.order.created.v2.another-key", func() (nats.Header, []byte) {
			return envelope(valid, same)
		}, "does not end in the envelope's partition key"},
		{"an outcome for an order that does not exist", "ecommerce.inventory.adjusted.v1", func() (nats.Header, []byte) {
			h, b := envelope(&inventoryeventsv1.InventoryAdjusted{
				OrderId: "0193a5e2-0000-7000-8000-000000000000", AdjustedAt: timestamppb.Now(),
				Reservations: []*inventoryeventsv1.Reservation{{Sku: "MUG-001", Quantity: 1}},
			}, same)
			return h, b
		}, "unknown order"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h, data := tc.build()
			// Published on its key, unless the case names another.
			subject := tc.subject + "." + cmp.Or(h.Get(event.HeaderPartitionKey), "k1")
			if strings.Count(tc.subject, ".") == 4 {
				subject = tc.subject
			}
			ack, err := s.JS.PublishMsg(ctx, &nats.Msg{Subject: subject, Data: data, Header: h})
			if err != nil {
				t.Fatal(err)
			}
			dl := s.awaitDeadLetterOf(t, ack.Stream, ack.Sequence)
			if dl.GetReason() != deadletterv1.Reason_REASON_TERMINATED || dl.GetDeliveries() != 1 || !strings.Contains(dl.GetError(), tc.mentions) {
				t.Errorf("dead letter: reason %v deliveries %d error %q; want terminated at once, mentioning %q",
					dl.GetReason(), dl.GetDeliveries(), dl.GetError(), tc.mentions)
			}
		})
	}
	if st := s.stock(t, "MUG-001"); st.GetOnHand() != 5 || st.GetReserved() != 0 {
		t.Errorf("stock changed by bad events: %v", st)
	}
	if n := s.count(t, "inventory", outcomesSQL); n != 0 {
		t.Errorf("%d outcomes written for bad events", n)
	}
}

func (s *testStack) awaitDeadLetterOf(t *testing.T, stream string, seq uint64) *deadletterv1.DeadLetter {
	t.Helper()
	var found *deadletterv1.DeadLetter
	testenv.CheckFor(t, 20*time.Second, 20*time.Millisecond, func() error {
		res, err := s.dlq.ListDeadLetters(context.Background(), connect.NewRequest(&deadletterv1.ListDeadLettersRequest{OriginalStream: stream, PageSize: 500}))
		if err != nil {
			t.Fatal(err)
		}
		for _, dl := range res.Msg.GetDeadLetters() {
			if dl.GetOriginalSequence() == seq {
				found = dl
				return nil
			}
		}
		return fmt.Errorf("no dead letter for %s #%d", stream, seq)
	})
	return found
}
