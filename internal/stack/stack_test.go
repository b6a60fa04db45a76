package stack_test

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/x509"
	"encoding/hex"
	"encoding/pem"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"connectrpc.com/connect"
	"github.com/jackc/pgx/v5"
	"google.golang.org/protobuf/proto"

	"github.com/shopbus/shopbus/gateway"
	"github.com/shopbus/shopbus/gen/go/shopbus/deadletter/v1/deadletterv1connect"
	inventoryv1 "github.com/shopbus/shopbus/gen/go/shopbus/inventory/v1"
	"github.com/shopbus/shopbus/gen/go/shopbus/inventory/v1/inventoryv1connect"
	orderv1 "github.com/shopbus/shopbus/gen/go/shopbus/order/v1"
	"github.com/shopbus/shopbus/gen/go/shopbus/order/v1/orderv1connect"
	"github.com/shopbus/shopbus/internal/auth"
	"github.com/shopbus/shopbus/internal/stack"
	"github.com/shopbus/shopbus/internal/stack/stacktest"
	"github.com/shopbus/shopbus/internal/testenv"
	"github.com/shopbus/shopbus/services/order"
)

// testStack is a running stack for one test: an embedded nats-server with
// its own store, schemas of its own in the local PostgreSQL, and the gateway
// on a free port, driven through the generated Go Connect clients.
type testStack struct {
	*stack.Stack
	orders    orderv1connect.OrderServiceClient
	inventory inventoryv1connect.InventoryServiceClient
	dlq       deadletterv1connect.DeadLetterServiceClient
	schema    string
}

func startStack(t *testing.T, opts ...func(*stack.Config)) *testStack {
	t.Helper()
	schema := testenv.Schema()
	t.Cleanup(func() { testenv.DropStackSchemas(t, schema) })
	dataDir := t.TempDir()
	cfg := stack.Config{
		DataDir: dataDir,
		// Closed to all but shopbus's identities, as shopbus dev runs it.
		NATSKeysDir: filepath.Join(dataDir, "nats-keys"),
		DatabaseURL: testenv.StackDatabaseURL(),
		Schema:      schema,
		Addr:        "127.0.0.1:0",
		Log:         slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelError + 4})),
		Auth:        testAuth(t),
		// The committed model without the customer's history: a test's
		// one customer places many orders (saga_test.go uses the real one).
		FraudModelFile: testFraudModel,
	}
	for _, opt := range opts {
		opt(&cfg)
	}
	return clientsOf(t, runStack(t, cfg), schema, http.DefaultClient)
}

// clientsOf returns the test stack of s (whose gateway client reaches):
// its OrderService client calls as the test's customer, its
// InventoryService and DeadLetterService clients as an admin.
func clientsOf(t *testing.T, s *stack.Stack, schema string, client connect.HTTPClient) *testStack {
	t.Helper()
	return &testStack{
		Stack:     s,
		orders:    orderv1connect.NewOrderServiceClient(client, s.URL(), as(t, auth.Principal{Subject: customer})),
		inventory: inventoryv1connect.NewInventoryServiceClient(client, s.URL(), as(t, admin)),
		dlq:       deadletterv1connect.NewDeadLetterServiceClient(client, s.URL(), as(t, admin)),
		schema:    schema,
	}
}

// admin is the test's admin caller.
var admin = auth.Principal{Subject: "test-admin", Admin: true}

// testSigning is the key of the test stacks' tokens (runStack verifies
// them): a Signer, and the key itself for forging tokens it would not mint.
var testSigning = sync.OnceValues(func() (signingKey, error) {
	dir, err := os.MkdirTemp("", "shopbus-auth")
	if err != nil {
		return signingKey{}, err
	}
	defer os.RemoveAll(dir)
	signer, err := auth.KeyPair(dir, auth.Options{Issuer: "shopbus-test", Audience: "shopbus"})
	if err != nil {
		return signingKey{}, err
	}
	b, err := os.ReadFile(filepath.Join(dir, auth.SigningKeyFile))
	if err != nil {
		return signingKey{}, err
	}
	block, _ := pem.Decode(b)
	k, err := x509.ParsePKCS8PrivateKey(block.Bytes)
	if err != nil {
		return signingKey{}, err
	}
	return signingKey{signer, k.(ed25519.PrivateKey)}, nil
})

type signingKey struct {
	signer *auth.Signer
	key    ed25519.PrivateKey
}

// testKey is the private key of the test stacks' tokens.
func testKey(t testing.TB) ed25519.PrivateKey {
	t.Helper()
	k, err := testSigning()
	if err != nil {
		t.Fatal(err)
	}
	return k.key
}

// testSigner mints the tokens of the test stacks.
func testSigner() (*auth.Signer, error) {
	k, err := testSigning()
	return k.signer, err
}

// token returns a bearer token for p, valid for the test.
func token(t testing.TB, p auth.Principal) string {
	t.Helper()
	signer, err := testSigner()
	if err != nil {
		t.Fatal(err)
	}
	tok, err := signer.Token(p, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

// as makes a client call as p.
func as(t testing.TB, p auth.Principal) connect.ClientOption {
	return connect.WithInterceptors(gateway.BearerToken(token(t, p)))
}

// testAuth verifies testSigner's tokens.
func testAuth(t testing.TB) auth.Config {
	t.Helper()
	signer, err := testSigner()
	if err != nil {
		t.Fatal(err)
	}
	v, err := signer.Verifier()
	if err != nil {
		t.Fatal(err)
	}
	return auth.Config{Verifier: v}
}

// withTestDefaults: a stack that does not say how it authenticates
// verifies testSigner's tokens, and one without order limits lets the test
// customer place orders as fast as the test does (TestHostileClients
// checks the limits).
func withTestDefaults(t testing.TB, cfg stack.Config) stack.Config {
	if !cfg.Auth.Enabled() {
		cfg.Auth = testAuth(t)
	}
	if cfg.OrderLimits == (order.Limits{}) {
		cfg.OrderLimits = order.Limits{OrdersPerSecond: 1e6, Burst: 1e6}
	}
	return cfg
}

// runStack starts a stack and runs it until the test ends (see
// withTestDefaults).
func runStack(t *testing.T, cfg stack.Config) *stack.Stack {
	t.Helper()
	return stacktest.Run(t, withTestDefaults(t, cfg))
}

// count runs a query in one of the stack's schemas ("order", "inventory")
// and returns the single int64 it selects.
func (s *testStack) count(t *testing.T, service, sql string, args ...any) int64 {
	t.Helper()
	conn, err := pgx.Connect(context.Background(), testenv.DatabaseURL())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(context.Background())
	if _, err := conn.Exec(context.Background(), "SET search_path TO "+pgx.Identifier{s.schema + "_" + service}.Sanitize()); err != nil {
		t.Fatal(err)
	}
	var n int64
	if err := conn.QueryRow(context.Background(), sql, args...).Scan(&n); err != nil {
		t.Fatalf("%s: %v", sql, err)
	}
	return n
}

// outcomesSQL counts the inventory service's outcome events in its outbox
// (inventory.adjusted and inventory.rejected; not the inventory.priced that
// setStock causes).
const outcomesSQL = `SELECT count(*) FROM outbox WHERE subject LIKE 'ecommerce.inventory.adjusted.%' OR subject LIKE 'ecommerce.inventory.rejected.%'`

// unitPrice is the price, in EUR cents, that setStock gives every SKU it
// stocks and that line states.
const unitPrice = 1000

// setStock sets the units on hand of sku and prices it unitPrice EUR
// (setPrice): orders for it can be placed once it returns.
func (s *testStack) setStock(t *testing.T, sku string, n int64) {
	t.Helper()
	if _, err := s.inventory.SetStock(context.Background(), connect.NewRequest(&inventoryv1.SetStockRequest{Sku: sku, OnHand: n})); err != nil {
		t.Fatal(err)
	}
	s.setPrice(t, sku, unitPrice, "EUR")
}

// setPrice sets the price of sku (SetPrice) and waits until the order
// service knows it: until the revision SetPrice made is in the order
// schema's prices table, so the orders placed next are priced with it.
func (s *testStack) setPrice(t *testing.T, sku string, minor int64, currency string) {
	t.Helper()
	res, err := s.inventory.SetPrice(context.Background(), connect.NewRequest(&inventoryv1.SetPriceRequest{Sku: sku, UnitPriceMinor: minor, Currency: currency}))
	if err != nil {
		t.Fatal(err)
	}
	s.awaitPrice(t, sku, res.Msg.GetStock().GetPrice().GetRevision())
}

// awaitPrice waits until the order service has revision (or a later one)
// of sku's price.
func (s *testStack) awaitPrice(t *testing.T, sku string, revision int64) {
	t.Helper()
	testenv.CheckFor(t, 30*time.Second, 10*time.Millisecond, func() error {
		if s.count(t, "order", "SELECT count(*) FROM prices WHERE sku = $1 AND revision >= $2", sku, revision) == 0 {
			return fmt.Errorf("the order service does not know revision %d of %s's price yet", revision, sku)
		}
		return nil
	})
}

func (s *testStack) stock(t *testing.T, sku string) *inventoryv1.Stock {
	t.Helper()
	res, err := s.inventory.GetStock(context.Background(), connect.NewRequest(&inventoryv1.GetStockRequest{Sku: sku}))
	if err != nil {
		t.Fatal(err)
	}
	return res.Msg.GetStock()
}

const customer = "6f1c2b3a-4d5e-4f60-8a7b-9c0d1e2f3a4b"

// testFraudModel is the fraud model of the stacks the tests start: the
// committed coefficients without the customer's history.
const testFraudModel = "../../services/fraud/testdata/no-history.json"

func newKey() string {
	b := make([]byte, 12)
	_, _ = rand.Read(b)
	return "key-" + hex.EncodeToString(b)
}

// orderRequest is an order of the test's customer.
func orderRequest(lines ...*orderv1.OrderLine) *orderv1.CreateOrderRequest {
	return orderRequestFor(customer, lines...)
}

// orderRequestFor is an order naming customer ("": the caller).
func orderRequestFor(customer string, lines ...*orderv1.OrderLine) *orderv1.CreateOrderRequest {
	return &orderv1.CreateOrderRequest{IdempotencyKey: newKey(), CustomerId: customer, Currency: "EUR", Lines: lines}
}

// line is an order line that states the price setStock gave (the client
// may also send 0: the current price).
func line(sku string, qty uint32) *orderv1.OrderLine {
	return &orderv1.OrderLine{Sku: sku, Quantity: qty, UnitPriceMinor: unitPrice}
}

func (s *testStack) create(t *testing.T, req *orderv1.CreateOrderRequest) *orderv1.Order {
	t.Helper()
	res, err := s.orders.CreateOrder(context.Background(), connect.NewRequest(req))
	if err != nil {
		t.Fatal(err)
	}
	return res.Msg.GetOrder()
}

// await watches the order (WatchOrder) until its stream ends, and checks
// that the stream sent the order only when its status changed and ended
// with an outcome.
func (s *testStack) await(t *testing.T, id string) *orderv1.Order {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	stream, err := s.orders.WatchOrder(ctx, connect.NewRequest(&orderv1.WatchOrderRequest{OrderId: id}))
	if err != nil {
		t.Fatal(err)
	}
	defer stream.Close()
	var last *orderv1.Order
	for stream.Receive() {
		o := stream.Msg().GetOrder()
		if last != nil && o.GetStatus() == last.GetStatus() {
			t.Errorf("WatchOrder sent order %s twice as %v", id, o.GetStatus())
		}
		last = o
	}
	if err := stream.Err(); err != nil {
		t.Fatalf("WatchOrder %s: %v (last seen %v)", id, err, last.GetStatus())
	}
	if last.GetStatus() == orderv1.OrderStatus_ORDER_STATUS_PENDING || last.GetStatus() == orderv1.OrderStatus_ORDER_STATUS_UNSPECIFIED {
		t.Fatalf("WatchOrder %s ended at %v, want an outcome", id, last.GetStatus())
	}
	// The stream's last message is the order as GetOrder reads it: its
	// score and reason came with the notification. A rejected order may
	// still change after (a late score, its stock released): only its
	// status and reason are final.
	res, err := s.orders.GetOrder(ctx, connect.NewRequest(&orderv1.GetOrderRequest{OrderId: id}))
	if err != nil {
		t.Fatal(err)
	}
	got := res.Msg.GetOrder()
	if last.GetStatus() == orderv1.OrderStatus_ORDER_STATUS_REJECTED {
		if got.GetStatus() != last.GetStatus() || got.GetRejectReason() != last.GetRejectReason() {
			t.Errorf("WatchOrder %s ended %v (%q); GetOrder reads %v (%q)", id, last.GetStatus(), last.GetRejectReason(), got.GetStatus(), got.GetRejectReason())
		}
	} else if !proto.Equal(got, last) {
		t.Errorf("WatchOrder %s ended with %v; GetOrder reads %v", id, last, got)
	}
	return last
}
