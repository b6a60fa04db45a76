package stack_test

import (
	"context"
	"crypto/tls"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"connectrpc.com/connect"
	"connectrpc.com/grpchealth"
	"github.com/google/uuid"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/shopbus/shopbus/gateway"
	deadletterv1 "github.com/shopbus/shopbus/gen/go/shopbus/deadletter/v1"
	"github.com/shopbus/shopbus/gen/go/shopbus/deadletter/v1/deadletterv1connect"
	inventoryv1 "github.com/shopbus/shopbus/gen/go/shopbus/inventory/v1"
	"github.com/shopbus/shopbus/gen/go/shopbus/inventory/v1/inventoryv1connect"
	messagev1 "github.com/shopbus/shopbus/gen/go/shopbus/message/v1"
	"github.com/shopbus/shopbus/gen/go/shopbus/message/v1/messagev1connect"
	orderv1 "github.com/shopbus/shopbus/gen/go/shopbus/order/v1"
	"github.com/shopbus/shopbus/gen/go/shopbus/order/v1/orderv1connect"
	postv1 "github.com/shopbus/shopbus/gen/go/shopbus/post/v1"
	"github.com/shopbus/shopbus/gen/go/shopbus/post/v1/postv1connect"
	telemetryv1 "github.com/shopbus/shopbus/gen/go/shopbus/telemetry/v1"
	"github.com/shopbus/shopbus/gen/go/shopbus/telemetry/v1/telemetryv1connect"
	"github.com/shopbus/shopbus/internal/auth"
	"github.com/shopbus/shopbus/internal/messaging"
	"github.com/shopbus/shopbus/internal/natsauth"
	"github.com/shopbus/shopbus/internal/natsembed"
	"github.com/shopbus/shopbus/internal/stack"
	"github.com/shopbus/shopbus/internal/testenv"
	"github.com/shopbus/shopbus/services/order"
)

// h2c is an HTTP client speaking cleartext HTTP/2 only, as gRPC clients do.
var h2c = func() *http.Client {
	p := new(http.Protocols)
	p.SetUnencryptedHTTP2(true)
	return &http.Client{Transport: &http.Transport{Protocols: p}}
}()

// TestGatewayProtocols: one port serves Connect, gRPC and gRPC-Web, and gRPC
// health.
func TestGatewayProtocols(t *testing.T) {
	s := startStack(t)
	s.setStock(t, "MUG-001", 7)
	for name, client := range map[string]inventoryv1connect.InventoryServiceClient{
		"connect":  inventoryv1connect.NewInventoryServiceClient(http.DefaultClient, s.URL(), as(t, admin)),
		"grpc":     inventoryv1connect.NewInventoryServiceClient(h2c, s.URL(), connect.WithGRPC(), as(t, admin)),
		"grpc-web": inventoryv1connect.NewInventoryServiceClient(http.DefaultClient, s.URL(), connect.WithGRPCWeb(), as(t, admin)),
	} {
		res, err := client.GetStock(context.Background(), connect.NewRequest(&inventoryv1.GetStockRequest{Sku: "MUG-001"}))
		if err != nil || res.Msg.GetStock().GetOnHand() != 7 {
			t.Errorf("%s: GetStock = %v, %v", name, res, err)
		}
	}
	// Ready once its consumers joined their groups and were sampled.
	health := grpchealth.NewClient(h2c, s.URL(), connect.WithGRPC())
	for _, service := range []string{"", orderv1connect.OrderServiceName, "shopbus.deadletter.v1.DeadLetterService"} {
		testenv.CheckFor(t, 10*time.Second, 20*time.Millisecond, func() error {
			res, err := health.Check(context.Background(), &grpchealth.CheckRequest{Service: service})
			if err != nil || res.Status != grpchealth.StatusServing {
				return fmt.Errorf("health of %q: %v, %v", service, res, err)
			}
			return nil
		})
	}
}

// TestDistributed: `shopbus serve order|inventory|gateway` as three
// components sharing only NATS and PostgreSQL; the gateway reaches the
// services through their generated Connect clients.
func TestDistributed(t *testing.T) {
	srv, _ := testenv.NATS(t)
	schema := testenv.Schema()
	t.Cleanup(func() { testenv.DropStackSchemas(t, schema) })
	start := func(component string, cfg stack.Config) *stack.Stack {
		cfg.Components, cfg.Schema, cfg.DatabaseURL, cfg.NATSURL, cfg.Addr = []string{component}, schema, testenv.StackDatabaseURL(), srv.ClientURL(), "127.0.0.1:0"
		cfg.FraudModelFile = testFraudModel
		return runStack(t, cfg)
	}
	orders := start("order", stack.Config{})
	inventory := start("inventory", stack.Config{})
	start("fraud", stack.Config{})
	chat := start("message", stack.Config{})
	devices := start("telemetry", stack.Config{})
	gw := start("gateway", stack.Config{OrderURL: orders.URL(), InventoryURL: inventory.URL(),
		ServiceURLs: map[string]string{"message": chat.URL(), "telemetry": devices.URL()}})
	if gw.Orders != nil || gw.Inventory != nil || orders.Inventory != nil {
		t.Fatal("a component runs a service it was not asked to")
	}
	// The other services' APIs are relayed as they come: a Connect call,
	// and a gRPC client stream over h2c.
	ctx := context.Background()
	sent, err := messagev1connect.NewMessageServiceClient(http.DefaultClient, gw.URL(), as(t, auth.Principal{Subject: customer})).
		SendMessage(ctx, connect.NewRequest(&messagev1.SendMessageRequest{MessageId: uuid.NewString(), ConversationId: uuid.NewString(), Body: "hello"}))
	if err != nil || sent.Msg.GetMessage().GetSenderId() != customer {
		t.Fatalf("SendMessage through the gateway: %v, %v", sent, err)
	}
	h2c := new(http.Protocols)
	h2c.SetUnencryptedHTTP2(true)
	device := uuid.NewString()
	stream := telemetryv1connect.NewTelemetryServiceClient(&http.Client{Transport: &http.Transport{Protocols: h2c}}, gw.URL(),
		connect.WithGRPC(), as(t, auth.Principal{Subject: device, Kind: auth.Device})).IngestReadings(ctx)
	for seq := range uint64(2) {
		if err := stream.Send(&telemetryv1.IngestReadingsRequest{Batch: &telemetryv1.ReadingBatch{DeviceId: device, Sequence: seq,
			MeasuredAt: timestamppb.Now(), Readings: []*telemetryv1.Reading{{Metric: "m", Value: 1, Unit: "u"}}}}); err != nil {
			t.Fatal(err)
		}
	}
	if res, err := stream.CloseAndReceive(); err != nil || res.Msg.GetAccepted() != 2 {
		t.Fatalf("IngestReadings (gRPC, a client stream) through the gateway: %v, %v; want 2 accepted", res, err)
	}
	// No URL, no route: the post service is not served here.
	_, err = postv1connect.NewPostServiceClient(http.DefaultClient, gw.URL(), as(t, auth.Principal{Subject: customer})).
		FollowUser(ctx, connect.NewRequest(&postv1.FollowUserRequest{UserId: uuid.NewString()}))
	if connect.CodeOf(err) != connect.CodeUnimplemented {
		t.Errorf("a service the gateway has no URL for: %v, want Unimplemented", err)
	}

	s := clientsOf(t, gw, schema, http.DefaultClient)
	s.setStock(t, "MUG-001", 3)
	o := s.await(t, s.create(t, orderRequest(line("MUG-001", 2))).GetOrderId())
	if o.GetStatus() != orderv1.OrderStatus_ORDER_STATUS_CONFIRMED {
		t.Errorf("order %v, want CONFIRMED", o.GetStatus())
	}
	if st := s.stock(t, "MUG-001"); st.GetOnHand() != 1 {
		t.Errorf("stock %v, want 1 on hand", st)
	}
	// A caller's compressed request is relayed as a call of the
	// gateway's own (its Content-Encoding is not the relayed body's).
	gzipped := inventoryv1connect.NewInventoryServiceClient(http.DefaultClient, gw.URL(), connect.WithSendGzip(), as(t, admin))
	if _, err := gzipped.GetStock(context.Background(), connect.NewRequest(&inventoryv1.GetStockRequest{Sku: "MUG-001"})); err != nil {
		t.Errorf("a gzipped GetStock through the gateway: %v", err)
	}
	// Validation happens at the gateway as well as in the service.
	_, err = s.orders.CreateOrder(context.Background(), connect.NewRequest(orderRequest(line("MUG-001", 0))))
	if connect.CodeOf(err) != connect.CodeInvalidArgument {
		t.Errorf("invalid request through the gateway: %v", err)
	}
}

// TestDistributedWithIdentities: the three components against a NATS
// server closed to shopbus's identities and serving TLS only, each
// connecting with its own nkey seed file and trusting the server's
// certificate (shopbus serve --nats-nkey, --nats-ca), the services serving
// TLS to the gateway (--tls-cert, --service-ca): orders flow, and a client
// that does not trust the certificate cannot connect.
func TestDistributedWithIdentities(t *testing.T) {
	keys, err := natsauth.LoadOrCreate(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	users, err := stack.NATSUsers(keys)
	if err != nil {
		t.Fatal(err)
	}
	// The services serve TLS and the gateway trusts their certificate;
	// NATS serves TLS with the same one, and everyone trusts it.
	cert, key, _ := selfSigned(t)
	pair, err := tls.LoadX509KeyPair(cert, key)
	if err != nil {
		t.Fatal(err)
	}
	srv, err := natsembed.Start(natsembed.Options{StoreDir: t.TempDir(), Users: users,
		TLS: &tls.Config{Certificates: []tls.Certificate{pair}, MinVersion: tls.VersionTLS12}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Shutdown(); srv.WaitForShutdown() })
	schema := testenv.Schema()
	t.Cleanup(func() { testenv.DropStackSchemas(t, schema) })
	start := func(component string, id natsauth.Identity, cfg stack.Config) *stack.Stack {
		opts, err := stack.NATSCredentials("", keys.SeedFile(id), cert, "", "")
		if err != nil {
			t.Fatal(err)
		}
		cfg.Components, cfg.Schema, cfg.DatabaseURL, cfg.NATSURL, cfg.NATSOptions, cfg.Addr = []string{component}, schema, testenv.StackDatabaseURL(), srv.ClientURL(), opts, "127.0.0.1:0"
		cfg.FraudModelFile = testFraudModel
		return runStack(t, cfg)
	}
	if nc, err := nats.Connect(srv.ClientURL(), nats.Secure(&tls.Config{MinVersion: tls.VersionTLS12})); err == nil {
		nc.Close()
		t.Error("a client that does not trust the NATS server's certificate connected")
	}
	// A service's identity may not declare streams: the platform
	// declares the topology first (as the gateway does at its start).
	platform, err := stack.NATSCredentials("", keys.SeedFile(natsauth.Platform), cert, "", "")
	if err != nil {
		t.Fatal(err)
	}
	nc, err := nats.Connect(srv.ClientURL(), platform...)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, _ := jetstream.New(nc)
	if err := stack.DeclareTopology(context.Background(), js, messaging.StreamOptions{}); err != nil {
		t.Fatal(err)
	}
	orders := start("order", natsauth.Order, stack.Config{TLSCertFile: cert, TLSKeyFile: key})
	inventory := start("inventory", natsauth.Inventory, stack.Config{TLSCertFile: cert, TLSKeyFile: key})
	start("fraud", natsauth.Identity("fraud"), stack.Config{TLSCertFile: cert, TLSKeyFile: key})
	gw := start("gateway", natsauth.Platform, stack.Config{OrderURL: orders.URL(), InventoryURL: inventory.URL(), ServiceCAFile: cert,
		TopologyEvery: 100 * time.Millisecond})
	if !strings.HasPrefix(orders.URL(), "https://") {
		t.Fatalf("the order service serves %s, want https", orders.URL())
	}
	s := clientsOf(t, gw, schema, http.DefaultClient)
	s.setStock(t, "MUG-001", 3)
	if o := s.await(t, s.create(t, orderRequest(line("MUG-001", 2))).GetOrderId()); o.GetStatus() != orderv1.OrderStatus_ORDER_STATUS_CONFIRMED {
		t.Errorf("order %v, want CONFIRMED", o.GetStatus())
	}
	// A group bucket lost (as a NATS restart loses a memory bucket) comes
	// back: the gateway, as the platform, declares it again; the services
	// may not, and carry on once it is there.
	bucket := messaging.GroupBucket(order.InventoryOutcomeConsumer().Durable)
	if err := js.DeleteKeyValue(context.Background(), bucket); err != nil {
		t.Fatal(err)
	}
	testenv.CheckFor(t, 30*time.Second, 50*time.Millisecond, func() error {
		_, err := js.KeyValue(context.Background(), bucket)
		return err
	})
	if o := s.await(t, s.create(t, orderRequest(line("MUG-001", 1))).GetOrderId()); o.GetStatus() != orderv1.OrderStatus_ORDER_STATUS_CONFIRMED {
		t.Errorf("order after the bucket came back: %v, want CONFIRMED", o.GetStatus())
	}
}

// TestAdminToken: with an admin token, SetStock, SetPrice, Restock and the
// DeadLetterService need it; the rest of the API does not.
func TestAdminToken(t *testing.T) {
	s := startStack(t, func(c *stack.Config) { c.Auth.AdminToken = "s3cret" })
	ctx := context.Background()
	anonymous := inventoryv1connect.NewInventoryServiceClient(http.DefaultClient, s.URL())
	_, err := anonymous.SetStock(ctx, connect.NewRequest(&inventoryv1.SetStockRequest{Sku: "MUG-001", OnHand: 1}))
	if connect.CodeOf(err) != connect.CodeUnauthenticated {
		t.Errorf("SetStock without the token: %v, want Unauthenticated", err)
	}
	_, err = deadletterv1connect.NewDeadLetterServiceClient(http.DefaultClient, s.URL()).ListDeadLetters(ctx, connect.NewRequest(&deadletterv1.ListDeadLettersRequest{}))
	if connect.CodeOf(err) != connect.CodeUnauthenticated {
		t.Errorf("ListDeadLetters without the token: %v, want Unauthenticated", err)
	}
	wrong := inventoryv1connect.NewInventoryServiceClient(http.DefaultClient, s.URL(), connect.WithInterceptors(gateway.BearerToken("guess")))
	if _, err := wrong.SetStock(ctx, connect.NewRequest(&inventoryv1.SetStockRequest{Sku: "MUG-001", OnHand: 1})); connect.CodeOf(err) != connect.CodeUnauthenticated {
		t.Errorf("SetStock with a wrong token: %v, want Unauthenticated", err)
	}
	admin := inventoryv1connect.NewInventoryServiceClient(http.DefaultClient, s.URL(), connect.WithInterceptors(gateway.BearerToken("s3cret")))
	if _, err := admin.SetStock(ctx, connect.NewRequest(&inventoryv1.SetStockRequest{Sku: "MUG-001", OnHand: 1})); err != nil {
		t.Errorf("SetStock with the token: %v", err)
	}
	_, err = anonymous.SetPrice(ctx, connect.NewRequest(&inventoryv1.SetPriceRequest{Sku: "MUG-001", UnitPriceMinor: unitPrice, Currency: "EUR"}))
	if connect.CodeOf(err) != connect.CodeUnauthenticated {
		t.Errorf("SetPrice without the token: %v, want Unauthenticated", err)
	}
	s.setPrice(t, "MUG-001", unitPrice, "EUR") // as the admin
	if st := s.stock(t, "MUG-001"); st.GetOnHand() != 1 {
		t.Errorf("stock %v", st)
	}
	if o := s.await(t, s.create(t, orderRequest(line("MUG-001", 1))).GetOrderId()); o.GetStatus() != orderv1.OrderStatus_ORDER_STATUS_CONFIRMED {
		t.Errorf("order %v", o.GetStatus())
	}
}
