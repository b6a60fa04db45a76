package stack_test

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"errors"
	"net/http"
	"strings"
	"testing"
	"time"

	"connectrpc.com/connect"
	"github.com/golang-jwt/jwt/v5"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/protobuf/types/known/timestamppb"

	inventoryeventsv1 "github.com/shopbus/shopbus/gen/go/ecommerce/inventory/v1"
	ordereventsv2 "github.com/shopbus/shopbus/gen/go/ecommerce/order/v2"
	deadletterv1 "github.com/shopbus/shopbus/gen/go/shopbus/deadletter/v1"
	eventv1 "github.com/shopbus/shopbus/gen/go/shopbus/event/v1"
	inventoryv1 "github.com/shopbus/shopbus/gen/go/shopbus/inventory/v1"
	"github.com/shopbus/shopbus/gen/go/shopbus/inventory/v1/inventoryv1connect"
	orderv1 "github.com/shopbus/shopbus/gen/go/shopbus/order/v1"
	"github.com/shopbus/shopbus/gen/go/shopbus/order/v1/orderv1connect"
	"github.com/shopbus/shopbus/internal/auth"
	"github.com/shopbus/shopbus/internal/deadletter"
	"github.com/shopbus/shopbus/internal/event"
	"github.com/shopbus/shopbus/internal/messaging"
	"github.com/shopbus/shopbus/internal/natsauth"
	"github.com/shopbus/shopbus/internal/stack"
	"github.com/shopbus/shopbus/internal/testenv"
	"github.com/shopbus/shopbus/services/inventory"
	"github.com/shopbus/shopbus/services/order"
)

// TestHostileClients replays, against a running stack (its NATS closed to
// the identities natsauth generates, as shopbus dev runs it, and the real
// PostgreSQL), what an attacker did before shopbus was closed (issue 11):
// each attempt is now refused, with the Connect code or the NATS permission
// error that says why, and writes nothing. TLS is TestGatewayTLS's and
// TestDistributedWithIdentities'; secrets in -h and pprof's address are
// cmd/shopbus's TestNoSecretInHelp and TestCheckLoopback.
func TestHostileClients(t *testing.T) {
	t.Parallel() // a refused NATS request waits out its deadline
	var keysDir string
	limits := order.Limits{OrdersPerSecond: 0.01, Burst: 3, MaxUnitsPerLine: 50, MaxUnitsPerOrder: 60}
	s := startStack(t, func(c *stack.Config) {
		keysDir, c.OrderLimits, c.AllowedOrigins = c.NATSKeysDir, limits, []string{"https://shop.example"}
	})
	keys, err := natsauth.LoadOrCreate(keysDir)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	s.setStock(t, "HOSTILE-1", 10)
	mine := s.await(t, s.create(t, orderRequest(line("HOSTILE-1", 2))).GetOrderId())
	if mine.GetStatus() != orderv1.OrderStatus_ORDER_STATUS_CONFIRMED {
		t.Fatalf("the customer's own order: %v, want CONFIRMED", mine.GetStatus())
	}
	const other = "0b5e3f4a-1c2d-4e3f-8a9b-0c1d2e3f4a5b"
	mallory := orderv1connect.NewOrderServiceClient(http.DefaultClient, s.URL(), as(t, auth.Principal{Subject: other}))
	anonymous := orderv1connect.NewOrderServiceClient(http.DefaultClient, s.URL())
	// written counts what an attempt could have written.
	written := func() [3]int64 {
		return [3]int64{
			s.count(t, "order", "SELECT count(*) FROM orders"),
			s.count(t, "inventory", "SELECT count(*) FROM processed_events"),
			s.stock(t, "HOSTILE-1").GetOnHand(),
		}
	}
	before := written()

	t.Run("NATS: a client without credentials cannot connect", func(t *testing.T) {
		nc, err := nats.Connect(s.NATS.ClientURL())
		if err == nil {
			nc.Close()
			t.Fatal("an anonymous client connected")
		}
		if !errors.Is(err, nats.ErrAuthorization) {
			t.Errorf("connect: %v, want an authorization violation", err)
		}
	})

	t.Run("NATS: a service cannot publish another's events", func(t *testing.T) {
		js := jetstreamAs(t, s, keys, natsauth.Order)
		streamBefore := streamMsgs(t, s.JS, "ECOMMERCE_INVENTORY")
		forged, data := forgedAdjustment(t, "0193a5e2-7c1d-7b3e-9f4a-2d6c8e0f1a2b", "NOPE-404")
		pctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		defer cancel()
		_, err = js.PublishMsg(pctx, &nats.Msg{Subject: "ecommerce.inventory.adjusted.v1." + forged.GetPartitionKey(), Data: data, Header: event.Headers(forged)})
		if err == nil {
			t.Fatal("the order service's identity published an inventory event")
		}
		if after := streamMsgs(t, s.JS, "ECOMMERCE_INVENTORY"); after != streamBefore {
			t.Errorf("ECOMMERCE_INVENTORY went from %d to %d messages", streamBefore, after)
		}
	})

	t.Run("NATS: a service cannot create, change, delete or purge a stream, nor delete a consumer", func(t *testing.T) {
		js := jetstreamAs(t, s, keys, natsauth.Order)
		msgs := streamMsgs(t, s.JS, "ECOMMERCE_INVENTORY")
		// A refused request gets no answer: each waits out its deadline.
		tctx := func() context.Context {
			c, cancel := context.WithTimeout(ctx, 2*time.Second)
			t.Cleanup(cancel)
			return c
		}
		st, err := js.Stream(tctx(), "ECOMMERCE_INVENTORY")
		if err != nil {
			t.Fatalf("stream info, which a service may read: %v", err)
		}
		// A stream's configuration can bring messages in from elsewhere
		// (sources, transforms, republish): a way around the publish
		// permissions, and a way to cut a stream short.
		changed := st.CachedInfo().Config
		changed.MaxMsgs = 1
		if _, err := js.UpdateStream(tctx(), changed); err == nil {
			t.Error("the order service's identity changed ECOMMERCE_INVENTORY")
		}
		if _, err := js.CreateStream(tctx(), jetstream.StreamConfig{Name: "EVIL", Subjects: []string{"ecommerce.order.evil.>"},
			RePublish: &jetstream.RePublish{Source: ">", Destination: "ecommerce.inventory.adjusted.v1.0.{{wildcard(1)}}"}}); err == nil {
			t.Error("the order service's identity created a stream")
		}
		if err := js.DeleteStream(tctx(), "ECOMMERCE_INVENTORY"); err == nil {
			t.Error("the order service's identity deleted ECOMMERCE_INVENTORY")
		}
		if err := st.Purge(tctx()); err == nil {
			t.Error("the order service's identity purged ECOMMERCE_INVENTORY")
		}
		durable := messaging.PartitionDurable(inventory.ReserveStockConsumer().Durable, 0)
		if err := js.DeleteConsumer(tctx(), "ECOMMERCE_ORDER", durable); err == nil {
			t.Error("the order service's identity deleted the inventory's consumer")
		}
		if _, err := s.JS.Consumer(ctx, "ECOMMERCE_ORDER", durable); err != nil {
			t.Errorf("the inventory's consumer %s: %v", durable, err)
		}
		if after := streamMsgs(t, s.JS, "ECOMMERCE_INVENTORY"); after != msgs {
			t.Errorf("ECOMMERCE_INVENTORY went from %d to %d messages", msgs, after)
		}
	})

	t.Run("NATS: a service reads no other's deliveries and settles no other's messages", func(t *testing.T) {
		opt, err := keys.Option(natsauth.Order)
		if err != nil {
			t.Fatal(err)
		}
		refused := make(chan error, 8)
		nc, err := nats.Connect(s.NATS.ClientURL(), opt, nats.ErrorHandler(func(_ *nats.Conn, _ *nats.Subscription, err error) {
			refused <- err
		}))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(nc.Close)
		wantRefused := func(what, subject string) {
			t.Helper()
			select {
			case err := <-refused:
				if !errors.Is(err, nats.ErrPermissionViolation) || !strings.Contains(err.Error(), subject) {
					t.Errorf("%s: %v, want a permissions violation on %s", what, err, subject)
				}
			case <-time.After(5 * time.Second):
				t.Errorf("%s: no permissions violation", what)
			}
		}
		// Every identity's inboxes: JetStream's deliveries and API
		// replies to the others.
		if _, err := nc.SubscribeSync("_INBOX.>"); err != nil {
			t.Fatal(err)
		}
		wantRefused("subscribing to every inbox", "_INBOX.>")
		// An ack of a consumer on a stream it does not consume.
		if err := nc.Publish("$JS.ACK.SOCIAL_POST.post-fan-out.1.1.1.0.0", []byte("+TERM")); err != nil {
			t.Fatal(err)
		}
		wantRefused("terminating another service's delivery", "$JS.ACK.SOCIAL_POST")
		// Its own inboxes, which its JetStream requests use, it may.
		if _, err := nc.SubscribeSync(natsauth.InboxPrefix(natsauth.Order) + ".>"); err != nil {
			t.Fatal(err)
		}
		if err := nc.Flush(); err != nil {
			t.Fatal(err)
		}
		select {
		case err := <-refused:
			t.Errorf("its own inboxes: %v", err)
		default:
		}
	})

	t.Run("NATS: a push consumer delivers nothing into another service's stream", func(t *testing.T) {
		// A push consumer's deliver subject is in the body of its create
		// request, which subject permissions do not see, and the server
		// publishes its deliveries there itself. An event forged in the
		// service's own bucket and delivered onto another service's
		// subject would reach that service's stream, were a stream's
		// capture a subscriber. It is not: JetStream delivers a push
		// consumer only to subscribers, and a service may subscribe to its
		// own inboxes alone (docs/security.md).
		js := jetstreamAs(t, s, keys, natsauth.Order)
		nc := js.Conn()
		bucket := messaging.GroupBucket(order.InventoryOutcomeConsumer().Durable)
		forged, data := forgedAdjustment(t, "0193a5e2-7c1d-7b3e-9f4a-2d6c8e0f1a2d", "NOPE-404")
		streamBefore := streamMsgs(t, s.JS, "ECOMMERCE_INVENTORY")
		entry := "$KV." + bucket + ".forged"
		if _, err := js.Publish(ctx, entry, data); err != nil {
			t.Fatalf("writing its own bucket: %v", err)
		}
		// Two push consumers of the entry: one delivering to the
		// service's own inbox, where it listens, and one onto the
		// inventory service's subject.
		own := nc.NewInbox() // not under the request mux, which took a delivery there for an API reply (CI)
		sub, err := nc.SubscribeSync(own)
		if err != nil {
			t.Fatal(err)
		}
		create := func(deliver string) jetstream.PushConsumer {
			t.Helper()
			c, err := js.CreatePushConsumer(ctx, "KV_"+bucket, jetstream.ConsumerConfig{
				DeliverSubject: deliver, FilterSubject: entry, AckPolicy: jetstream.AckNonePolicy})
			if err != nil {
				t.Fatalf("creating a push consumer of its bucket: %v", err)
			}
			return c
		}
		// The one onto the inventory subject first: by the time the other
		// delivered, it has had as long.
		evil := create("ecommerce.inventory.adjusted.v1." + forged.GetPartitionKey())
		create(own)
		if msg, err := sub.NextMsg(10 * time.Second); err != nil || !bytes.Equal(msg.Data, data) {
			t.Fatalf("the delivery to its own inbox: %v", err)
		}
		info, err := evil.Info(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if got := info.Delivered.Consumer; got != 0 {
			t.Errorf("the consumer onto the inventory subject delivered %d messages", got)
		}
		if after := streamMsgs(t, s.JS, "ECOMMERCE_INVENTORY"); after != streamBefore {
			t.Errorf("ECOMMERCE_INVENTORY went from %d to %d messages", streamBefore, after)
		}
	})

	t.Run("NATS: a service launders a forged event through the dead-letter queue", func(t *testing.T) {
		js := jetstreamAs(t, s, keys, natsauth.Order)
		forged, data := forgedAdjustment(t, "0193a5e2-7c1d-7b3e-9f4a-2d6c8e0f1a2d", "HOSTILE-1")
		letter := func(subject string) *nats.Msg {
			h := event.Headers(forged)
			h.Set(deadletter.HeaderOriginalStream, "ECOMMERCE_INVENTORY")
			h.Set(deadletter.HeaderOriginalSubject, "ecommerce.inventory.adjusted.v1.0."+forged.GetPartitionKey())
			h.Set(deadletter.HeaderOriginalSequence, "1")
			h.Set(deadletter.HeaderOriginalMsgID, forged.GetId())
			return &nats.Msg{Subject: subject, Data: data, Header: h}
		}
		pctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		defer cancel()
		// Only the dead letters of the streams it consumes or owns...
		if _, err := js.PublishMsg(pctx, letter("shopbus.dlq.CHAT_MESSAGE.chat-consumer.999")); err == nil {
			t.Error("the order service's identity filed a dead letter of a stream it neither consumes nor owns")
		}
		// ...and a redrive publishes the original, read back from its
		// stream, never the letter's copy.
		ack, err := js.PublishMsg(ctx, letter("shopbus.dlq.ECOMMERCE_INVENTORY.order-apply-inventory-outcome-p0.999"))
		if err != nil {
			t.Fatal(err)
		}
		inventoryMsgs := streamMsgs(t, s.JS, "ECOMMERCE_INVENTORY")
		res, err := s.dlq.RedriveDeadLetters(ctx, connect.NewRequest(&deadletterv1.RedriveDeadLettersRequest{Ids: []uint64{ack.Sequence}}))
		if err != nil {
			t.Fatal(err)
		}
		if r := res.Msg.GetResults()[0]; r.GetOk() || !strings.Contains(r.GetError(), "cannot be redriven") {
			t.Errorf("redrive of a forged dead letter: %v", r)
		}
		if after := streamMsgs(t, s.JS, "ECOMMERCE_INVENTORY"); after != inventoryMsgs {
			t.Errorf("ECOMMERCE_INVENTORY went from %d to %d messages", inventoryMsgs, after)
		}
	})

	t.Run("NATS: an event from another source than its producer is dead-lettered, not applied", func(t *testing.T) {
		// The platform identity (the gateway's, the operators') may
		// publish anywhere; the consumer still checks the source.
		js := jetstreamAs(t, s, keys, natsauth.Platform)
		forged, err := event.New(ctx, &ordereventsv2.OrderCreated{
			OrderId: "0193a5e2-7c1d-7b3e-9f4a-2d6c8e0f1a2c", Customer: &ordereventsv2.Customer{CustomerId: other},
			Lines:     []*ordereventsv2.OrderLine{{Sku: "HOSTILE-1", Quantity: 5, UnitPrice: &ordereventsv2.Money{Currency: "EUR", AmountMinor: 0}}},
			Total:     &ordereventsv2.Money{Currency: "EUR", AmountMinor: 0},
			CreatedAt: timestamppb.Now(),
		}, event.WithSource("mallory"))
		if err != nil {
			t.Fatal(err)
		}
		data, _ := event.Encode(forged)
		if _, err := js.PublishMsg(ctx, &nats.Msg{Subject: "ecommerce.order.created.v2." + forged.GetPartitionKey(), Data: data, Header: event.Headers(forged)}); err != nil {
			t.Fatal(err)
		}
		testenv.CheckFor(t, 30*time.Second, 20*time.Millisecond, func() error {
			res, err := s.dlq.ListDeadLetters(ctx, connect.NewRequest(&deadletterv1.ListDeadLettersRequest{}))
			if err != nil {
				return err
			}
			for _, l := range res.Msg.GetDeadLetters() {
				if l.GetEventId() == forged.GetId() {
					return nil
				}
			}
			return errors.New("the forged order.created is not in the dead-letter queue")
		})
	})

	t.Run("RPC: no token, a forged token, an expired token", func(t *testing.T) {
		_, otherKey, _ := ed25519.GenerateKey(rand.Reader)
		expired, err := jwt.NewWithClaims(jwt.SigningMethodEdDSA, jwt.MapClaims{"sub": customer, "iss": "shopbus-test", "aud": "shopbus",
			"exp": time.Now().Add(-time.Hour).Unix()}).SignedString(testKey(t))
		if err != nil {
			t.Fatal(err)
		}
		forged, err := jwt.NewWithClaims(jwt.SigningMethodEdDSA, jwt.MapClaims{"sub": customer, "iss": "shopbus-test", "aud": "shopbus",
			"exp": time.Now().Add(time.Hour).Unix(), "roles": []string{"admin"}}).SignedString(otherKey)
		if err != nil {
			t.Fatal(err)
		}
		for name, client := range map[string]orderv1connect.OrderServiceClient{
			"no token": anonymous,
			"expired":  orderv1connect.NewOrderServiceClient(http.DefaultClient, s.URL(), bearer(expired)),
			"forged":   orderv1connect.NewOrderServiceClient(http.DefaultClient, s.URL(), bearer(forged)),
			"garbage":  orderv1connect.NewOrderServiceClient(http.DefaultClient, s.URL(), bearer("hello")),
		} {
			_, err := client.ListOrders(ctx, connect.NewRequest(&orderv1.ListOrdersRequest{}))
			wantCode(t, name+": ListOrders", err, connect.CodeUnauthenticated)
			_, err = client.CreateOrder(ctx, connect.NewRequest(orderRequest(line("HOSTILE-1", 1))))
			wantCode(t, name+": CreateOrder", err, connect.CodeUnauthenticated)
		}
	})

	t.Run("RPC: a customer reads another customer's orders", func(t *testing.T) {
		res, err := mallory.ListOrders(ctx, connect.NewRequest(&orderv1.ListOrdersRequest{}))
		if err != nil {
			t.Fatal(err)
		}
		for _, o := range res.Msg.GetOrders() {
			t.Errorf("ListOrders {} as another customer returned order %s of %s", o.GetOrderId(), o.GetCustomerId())
		}
		_, err = mallory.ListOrders(ctx, connect.NewRequest(&orderv1.ListOrdersRequest{CustomerId: customer}))
		wantCode(t, "ListOrders of another customer", err, connect.CodePermissionDenied)
		_, err = mallory.GetOrder(ctx, connect.NewRequest(&orderv1.GetOrderRequest{OrderId: mine.GetOrderId()}))
		wantCode(t, "GetOrder of another's order", err, connect.CodeNotFound)
		stream, err := mallory.WatchOrder(ctx, connect.NewRequest(&orderv1.WatchOrderRequest{OrderId: mine.GetOrderId()}))
		if err == nil {
			for stream.Receive() {
				t.Errorf("WatchOrder of another's order sent %v", stream.Msg().GetOrder())
			}
			err = stream.Err()
		}
		wantCode(t, "WatchOrder of another's order", err, connect.CodeNotFound)
	})

	t.Run("RPC: a customer orders as another customer", func(t *testing.T) {
		_, err := mallory.CreateOrder(ctx, connect.NewRequest(orderRequest(line("HOSTILE-1", 1)))) // names customer
		wantCode(t, "CreateOrder for another customer", err, connect.CodePermissionDenied)
	})

	t.Run("RPC: admin procedures from a browser on another origin, anonymous or as a customer", func(t *testing.T) {
		req, _ := http.NewRequest(http.MethodOptions, s.URL()+inventoryv1connect.InventoryServiceSetStockProcedure, nil)
		req.Header.Set("Origin", "https://evil.example")
		req.Header.Set("Access-Control-Request-Method", "POST")
		res, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		res.Body.Close()
		if got := res.Header.Get("Access-Control-Allow-Origin"); got != "" {
			t.Errorf("CORS preflight from https://evil.example: Access-Control-Allow-Origin %q", got)
		}
		req.Header.Set("Origin", "https://shop.example") // the allowed one, to show the check can fail
		if res, err = http.DefaultClient.Do(req); err != nil {
			t.Fatal(err)
		}
		res.Body.Close()
		if got := res.Header.Get("Access-Control-Allow-Origin"); got != "https://shop.example" {
			t.Errorf("CORS preflight from the allowed https://shop.example: Access-Control-Allow-Origin %q", got)
		}
		origin := connect.WithInterceptors(header{"Origin": "https://evil.example"})
		for name, tc := range map[string]struct {
			opts []connect.ClientOption
			want connect.Code
		}{
			"anonymous":  {[]connect.ClientOption{origin}, connect.CodeUnauthenticated},
			"a customer": {[]connect.ClientOption{origin, as(t, auth.Principal{Subject: other})}, connect.CodePermissionDenied},
		} {
			client := inventoryv1connect.NewInventoryServiceClient(http.DefaultClient, s.URL(), tc.opts...)
			_, err := client.SetStock(ctx, connect.NewRequest(&inventoryv1.SetStockRequest{Sku: "HOSTILE-1", OnHand: 0}))
			wantCode(t, name+": SetStock", err, tc.want)
			_, err = client.Restock(ctx, connect.NewRequest(&inventoryv1.RestockRequest{Sku: "HOSTILE-1", Quantity: 1}))
			wantCode(t, name+": Restock", err, tc.want)
			_, err = client.SetPrice(ctx, connect.NewRequest(&inventoryv1.SetPriceRequest{Sku: "HOSTILE-1", UnitPriceMinor: 0, Currency: "EUR"}))
			wantCode(t, name+": SetPrice", err, tc.want)
		}
	})

	t.Run("RPC: a customer sets its own price", func(t *testing.T) {
		cheap := &orderv1.OrderLine{Sku: "HOSTILE-1", Quantity: 5, UnitPriceMinor: 1}
		_, err := s.orders.CreateOrder(ctx, connect.NewRequest(orderRequest(cheap)))
		wantCode(t, "CreateOrder at 1 cent", err, connect.CodeFailedPrecondition)
		// Price 0 means "the catalog's price": the order is priced by the
		// server (checked after the written-nothing check below).
	})

	t.Run("RPC: more units than a line or an order may hold", func(t *testing.T) {
		_, err := s.orders.CreateOrder(ctx, connect.NewRequest(orderRequest(line("HOSTILE-1", limits.MaxUnitsPerLine+1))))
		wantCode(t, "a line over the limit", err, connect.CodeInvalidArgument)
		_, err = s.orders.CreateOrder(ctx, connect.NewRequest(orderRequest(line("HOSTILE-1", 40), line("HOSTILE-2", 30))))
		wantCode(t, "an order over the limit", err, connect.CodeInvalidArgument)
	})

	if after := written(); after != before {
		t.Errorf("the attempts above changed orders, processed events, stock from %v to %v", before, after)
	}

	t.Run("RPC: an order at price 0 is priced by the server", func(t *testing.T) {
		res, err := s.orders.CreateOrder(ctx, connect.NewRequest(orderRequest(&orderv1.OrderLine{Sku: "HOSTILE-1", Quantity: 5})))
		if err != nil {
			t.Fatal(err)
		}
		if o := res.Msg.GetOrder(); o.GetTotalMinor() != 5*unitPrice || o.GetLines()[0].GetUnitPriceMinor() != unitPrice {
			t.Errorf("an order of 5 at price 0: total %d, line price %d; want %d at %d", o.GetTotalMinor(), o.GetLines()[0].GetUnitPriceMinor(), 5*unitPrice, unitPrice)
		}
	})

	t.Run("RPC: a customer places orders faster than its limit", func(t *testing.T) {
		const flooder = "7d2e4f6a-8b0c-4d1e-9f2a-3b4c5d6e7f80"
		client := orderv1connect.NewOrderServiceClient(http.DefaultClient, s.URL(), as(t, auth.Principal{Subject: flooder}))
		ordersBefore := s.count(t, "order", "SELECT count(*) FROM orders")
		for i := range limits.Burst {
			if _, err := client.CreateOrder(ctx, connect.NewRequest(orderRequestFor("", line("HOSTILE-1", 1)))); err != nil {
				t.Fatalf("order %d of a burst of %d: %v", i+1, limits.Burst, err)
			}
		}
		_, err := client.CreateOrder(ctx, connect.NewRequest(orderRequestFor("", line("HOSTILE-1", 1))))
		wantCode(t, "an order past the burst", err, connect.CodeResourceExhausted)
		var ce *connect.Error
		if !errors.As(err, &ce) {
			t.Fatal(err)
		}
		var hint *errdetails.RetryInfo
		for _, d := range ce.Details() {
			if v, err := d.Value(); err == nil {
				if ri, ok := v.(*errdetails.RetryInfo); ok {
					hint = ri
				}
			}
		}
		if hint == nil || hint.GetRetryDelay().AsDuration() <= 0 || ce.Meta().Get("Retry-After") == "" {
			t.Errorf("no retry hint: details %v, Retry-After %q", ce.Details(), ce.Meta().Get("Retry-After"))
		}
		if n := s.count(t, "order", "SELECT count(*) FROM orders") - ordersBefore; n != int64(limits.Burst) {
			t.Errorf("%d orders written, want the burst's %d", n, limits.Burst)
		}
		// Another customer is not held back by this one.
		if _, err := mallory.CreateOrder(ctx, connect.NewRequest(orderRequestFor("", line("HOSTILE-1", 1)))); err != nil {
			t.Errorf("another customer's order: %v", err)
		}
	})
}

// jetstreamAs connects to the stack's NATS as identity id.
func jetstreamAs(t *testing.T, s *testStack, keys *natsauth.Keys, id natsauth.Identity) jetstream.JetStream {
	t.Helper()
	opt, err := keys.Option(id)
	if err != nil {
		t.Fatal(err)
	}
	nc, err := nats.Connect(s.NATS.ClientURL(), opt)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	return js
}

func wantCode(t *testing.T, what string, err error, want connect.Code) {
	t.Helper()
	if connect.CodeOf(err) != want {
		t.Errorf("%s: %v, want %v", what, err, want)
	}
}

// bearer sends token as it is.
func bearer(token string) connect.ClientOption {
	return connect.WithInterceptors(header{"Authorization": "Bearer " + token})
}

// header is a client interceptor setting request headers.
type header map[string]string

func (h header) WrapUnary(next connect.UnaryFunc) connect.UnaryFunc {
	return func(ctx context.Context, req connect.AnyRequest) (connect.AnyResponse, error) {
		for k, v := range h {
			req.Header().Set(k, v)
		}
		return next(ctx, req)
	}
}

func (h header) WrapStreamingClient(next connect.StreamingClientFunc) connect.StreamingClientFunc {
	return next
}

func (h header) WrapStreamingHandler(next connect.StreamingHandlerFunc) connect.StreamingHandlerFunc {
	return next
}

// forgedAdjustment is an inventory.adjusted of orderID reserving one unit
// of sku, in the inventory service's name (the right one: only a NATS
// identity can give a forgery away), and its encoding.
func forgedAdjustment(t *testing.T, orderID, sku string) (*eventv1.Envelope, []byte) {
	t.Helper()
	forged, err := event.New(context.Background(), &inventoryeventsv1.InventoryAdjusted{
		OrderId: orderID, AdjustedAt: timestamppb.Now(),
		Reservations: []*inventoryeventsv1.Reservation{{Sku: sku, Quantity: 1}},
	}, event.WithSource("shopbus/inventory"))
	if err != nil {
		t.Fatal(err)
	}
	data, err := event.Encode(forged)
	if err != nil {
		t.Fatal(err)
	}
	return forged, data
}

// streamMsgs is how many messages stream name holds.
func streamMsgs(t *testing.T, js jetstream.JetStream, name string) uint64 {
	t.Helper()
	st, err := js.Stream(context.Background(), name)
	if err != nil {
		t.Fatal(err)
	}
	info, err := st.Info(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return info.State.Msgs
}
