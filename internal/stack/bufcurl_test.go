package stack_test

import (
	"bufio"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/shopbus/shopbus/internal/auth"
)

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
	s := startStack(t)
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
	local := strings.NewReplacer(devURL, s.URL(), devToken, tokenFile)
	s.setStock(t, "MUG-001", 10)
	cmd := exec.Command("sh", "-c", local.Replace(command))
	cmd.Dir = "../.."
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("%s: %v\n%s", command, err, out)
	}
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
	cmd = exec.Command("sh", "-c", strings.ReplaceAll(local.Replace(watch), "<orderId>", res.Order.OrderID))
	cmd.Dir = "../.."
	if out, err = cmd.CombinedOutput(); err != nil {
		t.Fatalf("%s: %v\n%s", watch, err, out)
	}
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
