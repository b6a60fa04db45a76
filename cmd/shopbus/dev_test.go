package main_test

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"connectrpc.com/connect"
	"github.com/jackc/pgx/v5"

	"github.com/shopbus/shopbus/gateway"
	inventoryv1 "github.com/shopbus/shopbus/gen/go/shopbus/inventory/v1"
	"github.com/shopbus/shopbus/gen/go/shopbus/inventory/v1/inventoryv1connect"
	orderv1 "github.com/shopbus/shopbus/gen/go/shopbus/order/v1"
	"github.com/shopbus/shopbus/gen/go/shopbus/order/v1/orderv1connect"
	"github.com/shopbus/shopbus/internal/testenv"
)

// devProcess is `shopbus dev` run as a child process, so the test can kill it.
type devProcess struct {
	bin, dataDir, schema, addr, natsPort string
	cmd                                  *exec.Cmd
	log                                  *os.File
}

var buildOnce = sync.OnceValues(func() (string, error) {
	dir, err := os.MkdirTemp("", "shopbus-bin")
	if err != nil {
		return "", err
	}
	bin := filepath.Join(dir, "shopbus")
	out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput()
	if err != nil {
		return "", fmt.Errorf("go build: %v\n%s", err, out)
	}
	return bin, nil
})

func freePort(t *testing.T) string {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return strconv.Itoa(l.Addr().(*net.TCPAddr).Port)
}

func newDev(t *testing.T) *devProcess {
	if testing.Short() {
		t.Skip("builds and runs the shopbus binary")
	}
	bin, err := buildOnce()
	if err != nil {
		t.Fatal(err)
	}
	d := &devProcess{bin: bin, dataDir: t.TempDir(), schema: testenv.Schema(),
		addr: "127.0.0.1:" + freePort(t), natsPort: freePort(t)}
	t.Cleanup(func() {
		if d.cmd != nil && d.cmd.ProcessState == nil {
			d.cmd.Process.Kill()
			d.cmd.Wait()
		}
		testenv.DropStackSchemas(t, d.schema)
		if t.Failed() && d.log != nil {
			b, _ := os.ReadFile(d.log.Name())
			t.Logf("shopbus dev log:\n%s", b)
		}
	})
	return d
}

func (d *devProcess) start(t *testing.T) {
	t.Helper()
	var err error
	d.log, err = os.OpenFile(filepath.Join(d.dataDir, "dev.log"), os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	d.cmd = exec.Command(d.bin, "dev", "--addr", d.addr, "--nats-port", d.natsPort, "--data-dir", d.dataDir,
		"--schema", d.schema, "--seed=false", "--log-level", "warn",
		"--orders-per-second", "1000000", "--order-burst", "1000000", // the load is one customer's,
		"--fraud-model", "../../services/fraud/testdata/no-history.json") // which the committed model would decline
	d.cmd.Env = append(os.Environ(), "DATABASE_URL="+testenv.StackDatabaseURL())
	d.cmd.Stdout, d.cmd.Stderr = d.log, d.log
	if err := d.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	testenv.CheckFor(t, 60*time.Second, 50*time.Millisecond, func() error {
		_, err := d.inventory().ListStock(context.Background(), connect.NewRequest(&inventoryv1.ListStockRequest{}))
		if err != nil {
			return fmt.Errorf("shopbus dev does not answer: %w", err)
		}
		return nil
	})
}

// orders calls as the demo customer, with the token shopbus dev wrote.
func (d *devProcess) orders() orderv1connect.OrderServiceClient {
	return orderv1connect.NewOrderServiceClient(http.DefaultClient, "http://"+d.addr, d.token("customer.jwt"))
}

// inventory calls as an admin, with the token shopbus dev wrote.
func (d *devProcess) inventory() inventoryv1connect.InventoryServiceClient {
	return inventoryv1connect.NewInventoryServiceClient(http.DefaultClient, "http://"+d.addr, d.token("admin.jwt"))
}

// token sends the token in <data-dir>/auth/file (none before dev wrote it).
func (d *devProcess) token(file string) connect.ClientOption {
	b, _ := os.ReadFile(filepath.Join(d.dataDir, "auth", file))
	return connect.WithInterceptors(gateway.BearerToken(strings.TrimSpace(string(b))))
}

// setPrice prices sku at minor EUR cents and waits until the order service
// knows the price (its schema's prices table has it), so orders for sku
// can be placed.
func (d *devProcess) setPrice(t *testing.T, sku string, minor int64) {
	t.Helper()
	if _, err := d.inventory().SetPrice(context.Background(), connect.NewRequest(&inventoryv1.SetPriceRequest{Sku: sku, UnitPriceMinor: minor, Currency: "EUR"})); err != nil {
		t.Fatal(err)
	}
	conn, err := pgx.Connect(context.Background(), testenv.DatabaseURL())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(context.Background())
	testenv.CheckFor(t, 30*time.Second, 10*time.Millisecond, func() error {
		var known int64
		err := conn.QueryRow(context.Background(), `SELECT count(*) FROM `+pgx.Identifier{d.schema + "_order", "prices"}.Sanitize()+
			` WHERE sku = $1 AND unit_price_minor = $2`, sku, minor).Scan(&known)
		if err == nil && known == 0 {
			err = fmt.Errorf("the order service does not know %s's price yet", sku)
		}
		return err
	})
}

// load places orders of 1 to 3 units from 8 clients until stop is closed and
// returns the ids of the orders the service accepted.
func (d *devProcess) load(stop <-chan struct{}) []string {
	var mu sync.Mutex
	var accepted []string
	var wg sync.WaitGroup
	for c := range 8 {
		wg.Go(func() {
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				req := &orderv1.CreateOrderRequest{
					IdempotencyKey: fmt.Sprintf("load-%d-%d-%d", c, i, time.Now().UnixNano()),
					CustomerId:     "6f1c2b3a-4d5e-4f60-8a7b-9c0d1e2f3a4b", Currency: "EUR",
					Lines: []*orderv1.OrderLine{{Sku: "LOAD-1", Quantity: uint32(1 + i%3), UnitPriceMinor: 100}},
				}
				ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
				res, err := d.orders().CreateOrder(ctx, connect.NewRequest(req))
				cancel()
				if err != nil {
					time.Sleep(20 * time.Millisecond) // the process is down: not accepted
					continue
				}
				mu.Lock()
				accepted = append(accepted, res.Msg.GetOrder().GetOrderId())
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	return accepted
}

// checkInvariants waits until every order is decided, then checks that
// nothing was lost or doubled and stock is conserved.
func (d *devProcess) checkInvariants(t *testing.T, accepted []string, initial int64) {
	t.Helper()
	next := 0 // accepted[:next] are decided
	testenv.CheckFor(t, 90*time.Second, 20*time.Millisecond, func() error {
		for ; next < len(accepted); next++ {
			id := accepted[next]
			res, err := d.orders().GetOrder(context.Background(), connect.NewRequest(&orderv1.GetOrderRequest{OrderId: id}))
			if err != nil {
				t.Fatalf("accepted order %s: %v", id, err)
			}
			if res.Msg.GetOrder().GetStatus() == orderv1.OrderStatus_ORDER_STATUS_PENDING {
				return fmt.Errorf("accepted order %s still PENDING", id)
			}
		}
		return nil
	})
	conn, err := pgx.Connect(context.Background(), testenv.DatabaseURL())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(context.Background())
	o, inv := pgx.Identifier{d.schema + "_order"}.Sanitize(), pgx.Identifier{d.schema + "_inventory"}.Sanitize()
	var orders, pending, confirmedUnits, reservedUnits, onHand, reserved, decisions, outcomes, reservations int64
	err = conn.QueryRow(context.Background(), `SELECT
		(SELECT count(*) FROM `+o+`.orders),
		(SELECT count(*) FROM `+o+`.orders WHERE status = 'PENDING'),
		(SELECT coalesce(sum(l.quantity), 0) FROM `+o+`.orders r JOIN `+o+`.order_lines l ON l.order_id = r.id WHERE r.status = 'CONFIRMED'),
		(SELECT coalesce(sum(quantity), 0) FROM `+inv+`.reservations),
		(SELECT on_hand FROM `+inv+`.stock WHERE sku = 'LOAD-1'),
		(SELECT reserved FROM `+inv+`.stock WHERE sku = 'LOAD-1'),
		(SELECT count(*) FROM `+inv+`.decisions),
		(SELECT count(*) FROM `+inv+`.outbox WHERE subject LIKE 'ecommerce.inventory.adjusted.%' OR subject LIKE 'ecommerce.inventory.rejected.%'),
		(SELECT count(DISTINCT order_id) FROM `+inv+`.reservations)`).
		Scan(&orders, &pending, &confirmedUnits, &reservedUnits, &onHand, &reserved, &decisions, &outcomes, &reservations)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("accepted=%d orders=%d decisions=%d outcomes=%d confirmed_units=%d on_hand=%d reserved=%d",
		len(accepted), orders, decisions, outcomes, confirmedUnits, onHand, reserved)
	if pending != 0 {
		t.Errorf("%d orders still PENDING (some accepted only by the database before a crash)", pending)
	}
	if int64(len(accepted)) > orders {
		t.Errorf("lost orders: %d accepted, %d stored", len(accepted), orders)
	}
	if decisions != orders || outcomes != orders {
		t.Errorf("orders %d, inventory decisions %d, outcome events %d: want one each", orders, decisions, outcomes)
	}
	if onHand+reserved != initial || reserved != confirmedUnits || reservedUnits != confirmedUnits {
		t.Errorf("stock not conserved: on hand %d + reserved %d != %d, or reserved != units of confirmed orders %d (reservations %d)",
			onHand, reserved, initial, confirmedUnits, reservedUnits)
	}
}

func (d *devProcess) run(t *testing.T, sig syscall.Signal) {
	const initial = 400
	d.start(t)
	if _, err := d.inventory().SetStock(context.Background(), connect.NewRequest(&inventoryv1.SetStockRequest{Sku: "LOAD-1", OnHand: initial})); err != nil {
		t.Fatal(err)
	}
	d.setPrice(t, "LOAD-1", 100)
	stop := make(chan struct{})
	accepted := make(chan []string, 1)
	go func() { accepted <- d.load(stop) }()

	time.Sleep(1500 * time.Millisecond) // mid-flow: orders in every stage
	signalled := time.Now()
	if err := d.cmd.Process.Signal(sig); err != nil {
		t.Fatal(err)
	}
	err := d.cmd.Wait()
	t.Logf("%v: exited after %v: %v", sig, time.Since(signalled).Round(time.Millisecond), err)
	if sig == syscall.SIGTERM {
		if err != nil {
			t.Errorf("graceful stop: %v", err)
		}
		if took := time.Since(signalled); took > 30*time.Second {
			t.Errorf("graceful stop took %v, want within 30s", took)
		}
	}
	time.Sleep(300 * time.Millisecond) // the load sees the process down
	d.start(t)                         // same data dir, same schemas
	time.Sleep(500 * time.Millisecond)
	close(stop)
	d.checkInvariants(t, <-accepted, initial)
}

// TestDevSurvivesSIGKILL: shopbus dev killed mid-flow and restarted on the
// same data dir: every accepted order reaches CONFIRMED or REJECTED, nothing
// is lost or doubled, stock is conserved.
func TestDevSurvivesSIGKILL(t *testing.T) {
	newDev(t).run(t, syscall.SIGKILL)
}

// TestDevStopsGracefully: SIGTERM under load exits within a bounded time and
// leaves nothing half-done: after a restart the same invariants hold.
func TestDevStopsGracefully(t *testing.T) {
	newDev(t).run(t, syscall.SIGTERM)
}
