package stack_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"connectrpc.com/connect"
	orderv1 "github.com/shopbus/shopbus/gen/go/shopbus/order/v1"
	"github.com/shopbus/shopbus/internal/auth"
	"github.com/shopbus/shopbus/internal/stack"
	"github.com/shopbus/shopbus/internal/testenv"
)

// shell runs command with sh in the repository's root and returns what it
// printed on stdout. What it printed on stderr (go's "downloading" lines
// while buf is first built, say) is shown only if it fails.
func shell(t *testing.T, command string) []byte {
	t.Helper()
	cmd := exec.Command("sh", "-c", command)
	cmd.Dir = "../.."
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("%s: %v\n%s%s", command, err, out, stderr.Bytes())
	}
	return out
}

// TestREADMEBufCurl runs the `buf curl` CreateOrder and WatchOrder commands
// exactly as README.md shows them (buf from the project's tool modfile,
// server reflection instead of local protos) against a stack, and checks the
// answers.
func TestREADMEBufCurl(t *testing.T) {
	if testing.Short() {
		t.Skip("runs buf")
	}
	readme, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	command, watch := readmeCommand(t, readme, "CreateOrder"), readmeCommand(t, readme, "WatchOrder")
	const devURL = "http://127.0.0.1:8080"
	// The committed fraud model, as shopbus dev runs it: the README quotes
	// its scores.
	s := startStack(t, func(c *stack.Config) { c.FraudModelFile = "" })
	if !strings.Contains(command, devURL) {
		t.Fatalf("the README command does not target the dev stack at %s: %s", devURL, command)
	}

	const devToken = ".data/auth/customer.jwt"
	if !strings.Contains(command, devToken) || !strings.Contains(watch, devToken) {
		t.Fatalf("the README commands do not send shopbus dev's demo token %s: %s", devToken, command)
	}
	tokenFile := filepath.Join(t.TempDir(), "customer.jwt")
	if err := os.WriteFile(tokenFile, []byte(token(t, auth.Principal{Subject: customer})+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	adminFile := filepath.Join(t.TempDir(), "admin.jwt")
	if err := os.WriteFile(adminFile, []byte(token(t, auth.Principal{Subject: "ops", Admin: true})+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	local := strings.NewReplacer(devURL, s.URL(), devToken, tokenFile, ".data/auth/admin.jwt", adminFile)
	s.setStock(t, "MUG-001", 100) // as shopbus dev seeds it
	out := shell(t, local.Replace(command))
	var res struct {
		Order struct {
			OrderID string `json:"orderId"`
			Status  string `json:"status"`
		} `json:"order"`
	}
	if err := json.Unmarshal(out, &res); err != nil {
		t.Fatalf("buf curl printed %s: %v", out, err)
	}
	if res.Order.OrderID == "" || res.Order.Status != "ORDER_STATUS_PENDING" {
		t.Fatalf("buf curl answered %s", out)
	}
	out = shell(t, strings.ReplaceAll(local.Replace(watch), "<orderId>", res.Order.OrderID))
	// buf curl prints each message of the stream as a JSON object.
	dec := json.NewDecoder(strings.NewReader(string(out)))
	for dec.More() {
		if err := dec.Decode(&res); err != nil {
			t.Fatalf("buf curl printed %s: %v", out, err)
		}
	}
	if res.Order.Status != "ORDER_STATUS_CONFIRMED" {
		t.Errorf("WatchOrder through buf curl ended with %s, want the order CONFIRMED", out)
	}

	// The saga's lines: 40 mugs held for review, an admin rejects it, and
	// the fraud service shows its score.
	run := func(line, orderID string) []byte {
		t.Helper()
		return shell(t, strings.ReplaceAll(local.Replace(line), "<orderId>", orderID))
	}
	out = run(readmeLine(t, readme, `"idempotency_key":"demo-0002"`), "")
	if err := json.Unmarshal(out, &res); err != nil || res.Order.OrderID == "" {
		t.Fatalf("buf curl printed %s: %v", out, err)
	}
	review := res.Order.OrderID
	testenv.CheckFor(t, 30*time.Second, 20*time.Millisecond, func() error {
		res, err := s.orders.GetOrder(context.Background(), connect.NewRequest(&orderv1.GetOrderRequest{OrderId: review}))
		if err != nil {
			return err
		}
		if o := res.Msg.GetOrder(); o.GetStatus() != orderv1.OrderStatus_ORDER_STATUS_REVIEW {
			return fmt.Errorf("the README's 40 mugs: %v (score %v), want ORDER_STATUS_REVIEW as it says", o.GetStatus(), o.GetFraud())
		}
		return nil
	})
	out = run(readmeLine(t, readme, "/shopbus.order.v1.OrderService/ReviewOrder"), review)
	if err := json.Unmarshal(out, &res); err != nil || res.Order.Status != "ORDER_STATUS_REJECTED" {
		t.Errorf("ReviewOrder through buf curl answered %s, want the order REJECTED", out)
	}
	out = run(readmeLine(t, readme, "/shopbus.fraud.v1.FraudService/GetScore"), review)
	if !strings.Contains(string(out), `"decision": "DECISION_REVIEW"`) {
		t.Errorf("GetScore through buf curl answered %s, want the REVIEW decision", out)
	}
	testenv.CheckFor(t, 30*time.Second, 50*time.Millisecond, func() error {
		if st := s.stock(t, "MUG-001"); st.GetReserved() != 2 {
			return fmt.Errorf("MUG-001 %v: want the 40 reserved mugs back on hand (2 reserved)", st)
		}
		return nil
	})
}

// readmeLine returns README.md's `buf curl` command line that contains
// marker.
func readmeLine(t *testing.T, readme []byte, marker string) string {
	t.Helper()
	for _, line := range strings.Split(string(readme), "\n") {
		if line = strings.TrimSpace(line); strings.HasPrefix(line, "go tool -modfile=tools/buf.mod buf curl") && strings.Contains(line, marker) {
			return line
		}
	}
	t.Fatalf("README.md shows no `buf curl` command with %s", marker)
	return ""
}

// readmeCommand returns README.md's `buf curl` command line for the
// OrderService method.
func readmeCommand(t *testing.T, readme []byte, method string) string {
	t.Helper()
	sc := bufio.NewScanner(strings.NewReader(string(readme)))
	for sc.Scan() {
		if line := strings.TrimSpace(sc.Text()); strings.HasPrefix(line, "go tool -modfile=tools/buf.mod buf curl") &&
			strings.Contains(line, "/shopbus.order.v1.OrderService/"+method) {
			return line
		}
	}
	t.Fatalf("README.md shows no `go tool -modfile=tools/buf.mod buf curl … %s` command", method)
	return ""
}
