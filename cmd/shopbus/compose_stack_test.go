package main

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"connectrpc.com/connect"
	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/nats-io/nats-server/v2/server"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/shopbus/shopbus/gateway"
	fraudv1 "github.com/shopbus/shopbus/gen/go/shopbus/fraud/v1"
	"github.com/shopbus/shopbus/gen/go/shopbus/fraud/v1/fraudv1connect"
	inventoryv1 "github.com/shopbus/shopbus/gen/go/shopbus/inventory/v1"
	"github.com/shopbus/shopbus/gen/go/shopbus/inventory/v1/inventoryv1connect"
	orderv1 "github.com/shopbus/shopbus/gen/go/shopbus/order/v1"
	"github.com/shopbus/shopbus/gen/go/shopbus/order/v1/orderv1connect"
	"github.com/shopbus/shopbus/internal/testenv"
)

// TestComposeStack runs compose.yaml's shopbus services as compose would,
// as processes instead of containers: the binary the Dockerfile builds,
// each service's command and environment as compose.yaml gives them, with
// the compose hostnames mapped to 127.0.0.1 and every port to a free one
// (never 4222). NATS is an embedded nats-server loaded from the
// configuration file the nats service mounts (its store and ports
// overridden); PostgreSQL is the local server, in a database of the
// test's own. Services start in depends_on order, each once the health
// check compose.yaml gives it passes. Then, with the admin token compose
// configures, the test stocks and prices a SKU, places an order through
// the gateway and sees it CONFIRMED, and reads every Prometheus target.
func TestComposeStack(t *testing.T) {
	if testing.Short() {
		t.Skip("builds shopbus and runs the compose stack's services")
	}
	p := loadCompose(t, nil)
	services := shopbusServices(t, p)
	if t.Failed() {
		t.FailNow()
	}
	bin, err := binary()
	if err != nil {
		t.Fatal(err)
	}

	// NATS, from the nats service's own configuration file.
	opts, _ := natsOptions(t, p)
	natsPort := opts.Port
	opts.StoreDir = t.TempDir()
	opts.Host, opts.Port = "127.0.0.1", freePortNumber(t)
	opts.HTTPHost, opts.HTTPPort = "127.0.0.1", freePortNumber(t)
	opts.NoSigs = true
	ns, err := server.NewServer(opts)
	if err != nil {
		t.Fatal(err)
	}
	go ns.Start()
	t.Cleanup(ns.Shutdown)
	if !ns.ReadyForConnections(30 * time.Second) {
		t.Fatal("nats-server from the compose configuration did not start")
	}

	// Every address compose.yaml names (service:port) → 127.0.0.1:free.
	mapped := map[string]string{"nats:" + strconv.Itoa(natsPort): ns.Addr().String()}
	for _, s := range services {
		for _, a := range []string{s.opts.addr, s.opts.metricsAddr} {
			mapped[s.name+":"+port(t, a)] = "127.0.0.1:" + strconv.Itoa(freePortNumber(t))
		}
	}
	for from, to := range mapped {
		if strings.HasSuffix(to, ":4222") {
			t.Fatalf("%s mapped to %s", from, to)
		}
	}
	database := "compose_" + testenv.Schema()
	t.Cleanup(func() { dropDatabase(t, database) })

	logs := t.TempDir()
	started := map[string]bool{}
	for len(started) < len(services) {
		progress := false
		for _, s := range services {
			if started[s.name] || slices.ContainsFunc(dependencies(s), func(d string) bool { return isShopbus(services, d) && !started[d] }) {
				continue
			}
			startService(t, bin, s, rewriter(s, mapped, database), filepath.Join(logs, s.name+".log"))
			started[s.name], progress = true, true
		}
		if !progress {
			t.Fatalf("compose.yaml's services depend on each other in a cycle: %v", started)
		}
	}

	// Prometheus' view: every target serves metrics in its text format.
	for _, s := range services {
		target := "http://" + mapped[s.name+":"+port(t, s.opts.metricsAddr)] + "/metrics"
		res, err := http.Get(target)
		if err != nil {
			t.Fatal(err)
		}
		parser := expfmt.NewTextParser(model.UTF8Validation)
		families, err := parser.TextToMetricFamilies(res.Body)
		res.Body.Close()
		if err != nil || res.StatusCode != http.StatusOK || len(families) == 0 {
			t.Errorf("service %s: %s: %s, %d families, %v", s.name, target, res.Status, len(families), err)
		}
	}

	// The README's demo: an admin stocks and prices a SKU, and places an
	// order for a customer through the published gateway.
	var gw shopbusService
	for _, s := range services {
		if s.opts.component == "gateway" {
			gw = s
		}
	}
	base := "http://" + mapped["gateway:"+port(t, gw.opts.addr)]
	admin := connect.WithInterceptors(gateway.BearerToken(gw.env["SHOPBUS_ADMIN_TOKEN"]))
	inventory := inventoryv1connect.NewInventoryServiceClient(http.DefaultClient, base, admin)
	orders := orderv1connect.NewOrderServiceClient(http.DefaultClient, base, admin)
	ctx := context.Background()
	sku := "COMPOSE-" + strings.ToUpper(uuid.NewString()[:8])
	if _, err := inventory.SetStock(ctx, connect.NewRequest(&inventoryv1.SetStockRequest{Sku: sku, OnHand: 10})); err != nil {
		t.Fatal(err)
	}
	if _, err := inventory.SetPrice(ctx, connect.NewRequest(&inventoryv1.SetPriceRequest{Sku: sku, UnitPriceMinor: 1250, Currency: "EUR"})); err != nil {
		t.Fatal(err)
	}
	req := &orderv1.CreateOrderRequest{IdempotencyKey: "compose-" + uuid.NewString(), CustomerId: uuid.NewString(), Currency: "EUR",
		Lines: []*orderv1.OrderLine{{Sku: sku, Quantity: 2}}}
	var placed *orderv1.Order
	// The order service learns the price from an inventory.priced event:
	// until then the order is refused with failed_precondition.
	testenv.CheckFor(t, 30*time.Second, 100*time.Millisecond, func() error {
		res, err := orders.CreateOrder(ctx, connect.NewRequest(req))
		if err != nil {
			if connect.CodeOf(err) != connect.CodeFailedPrecondition {
				t.Fatalf("CreateOrder: %v", err)
			}
			return err
		}
		placed = res.Msg.GetOrder()
		return nil
	})
	testenv.CheckFor(t, 30*time.Second, 100*time.Millisecond, func() error {
		res, err := orders.GetOrder(ctx, connect.NewRequest(&orderv1.GetOrderRequest{OrderId: placed.GetOrderId()}))
		if err != nil {
			return err
		}
		if st := res.Msg.GetOrder().GetStatus(); st != orderv1.OrderStatus_ORDER_STATUS_CONFIRMED {
			if st == orderv1.OrderStatus_ORDER_STATUS_REJECTED {
				t.Fatalf("order %s rejected: %v", placed.GetOrderId(), res.Msg.GetOrder())
			}
			return fmt.Errorf("order %s is %v", placed.GetOrderId(), st)
		}
		return nil
	})
	t.Logf("order %s CONFIRMED through the compose stack's services", placed.GetOrderId())

	// The services the gateway relays (--fraud-url …): the order's score
	// through the published gateway.
	scores := fraudv1connect.NewFraudServiceClient(http.DefaultClient, base, admin)
	score, err := scores.GetScore(ctx, connect.NewRequest(&fraudv1.GetScoreRequest{OrderId: placed.GetOrderId()}))
	if err != nil || score.Msg.GetScore().GetOrderId() != placed.GetOrderId() {
		t.Fatalf("GetScore through the gateway: %v, %v", score, err)
	}
}

// dependencies are the services s depends on.
func dependencies(s shopbusService) []string {
	var deps []string
	for d := range s.svc.DependsOn {
		deps = append(deps, d)
	}
	return deps
}

func isShopbus(services []shopbusService, name string) bool {
	return slices.ContainsFunc(services, func(s shopbusService) bool { return s.name == name })
}

// rewriter maps what compose.yaml gives service s to this machine: every
// service:port it names, and its own 0.0.0.0:port and 127.0.0.1:port, to
// the free port chosen for it; the PostgreSQL URL to the local server's
// host and user, in database.
func rewriter(s shopbusService, mapped map[string]string, database string) func(string) string {
	var pairs []string
	for from, to := range mapped {
		pairs = append(pairs, from, to)
		if name, p, _ := strings.Cut(from, ":"); name == s.name {
			pairs = append(pairs, "0.0.0.0:"+p, to, "127.0.0.1:"+p, to)
		}
	}
	r := strings.NewReplacer(pairs...)
	local, _ := url.Parse(testenv.DatabaseURL())
	return func(v string) string {
		if u, err := url.Parse(v); err == nil && (u.Scheme == "postgres" || u.Scheme == "postgresql") {
			u.Host, u.User, u.Path = local.Host, local.User, "/"+database
			return u.String()
		}
		return r.Replace(v)
	}
}

// startService runs service s as compose would: the binary, its command and
// only its environment, rewritten; it returns once the service's health
// check (rewritten too) passes, and stops it (SIGTERM) at cleanup.
func startService(t *testing.T, bin string, s shopbusService, rewrite func(string) string, logFile string) {
	t.Helper()
	var args, env []string
	for _, a := range s.svc.Command {
		args = append(args, rewrite(a))
	}
	for k, v := range s.env {
		env = append(env, k+"="+rewrite(v))
	}
	log, err := os.Create(logFile)
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, args...)
	cmd.Env, cmd.Stdout, cmd.Stderr = env, log, log
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	t.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-exited:
		case <-time.After(stopTimeout + 5*time.Second):
			_ = cmd.Process.Kill()
			<-exited
		}
		log.Close()
		if t.Failed() {
			b, _ := os.ReadFile(logFile)
			t.Logf("service %s (%s):\n%s", s.name, strings.Join(args, " "), b)
		}
	})
	check := s.svc.HealthCheck.Test[1:] // after CMD
	var hcArgs []string
	for _, a := range check[1:] {
		hcArgs = append(hcArgs, rewrite(a))
	}
	testenv.CheckFor(t, 60*time.Second, 200*time.Millisecond, func() error {
		select {
		case err := <-exited:
			exited <- err
			t.Fatalf("service %s exited: %v", s.name, err)
		default:
		}
		out, err := exec.Command(bin, hcArgs...).CombinedOutput()
		if err != nil {
			return fmt.Errorf("service %s: health check: %v: %s", s.name, err, out)
		}
		return nil
	})
}

// freePortNumber is a port free on 127.0.0.1 when it returns.
func freePortNumber(t *testing.T) int {
	t.Helper()
	// Below Linux's ephemeral range (32768 and up): the kernel never hands
	// such a port to another socket (a client's connection, a test's ":0"
	// listener) between this check and the service binding it, which a
	// port it chose itself it did (CI saw "address already in use").
	for range 200 {
		port := 20000 + rand.IntN(12000)
		if _, taken := pickedPorts.LoadOrStore(port, true); taken {
			continue // given out already
		}
		l, err := net.Listen("tcp", "127.0.0.1:"+strconv.Itoa(port))
		if err != nil {
			continue
		}
		l.Close()
		return port
	}
	t.Fatal("no free port between 20000 and 32000")
	return 0
}

// pickedPorts are the ports freePortNumber gave out in this process.
var pickedPorts sync.Map

// dropDatabase drops a database of the test's own, closing its connections.
func dropDatabase(t *testing.T, name string) {
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, testenv.AdminURL())
	if err != nil {
		t.Errorf("drop database %s: %v", name, err)
		return
	}
	defer conn.Close(ctx)
	if _, err := conn.Exec(ctx, "DROP DATABASE IF EXISTS "+pgx.Identifier{name}.Sanitize()+" WITH (FORCE)"); err != nil && !errors.Is(err, context.Canceled) {
		t.Errorf("drop database %s: %v", name, err)
	}
}
