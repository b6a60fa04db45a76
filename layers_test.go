package shopbus_test

import (
	"bufio"
	"bytes"
	"os/exec"
	"strings"
	"testing"
)

const module = "github.com/shopbus/shopbus/"

// testOnly are the packages that exist for tests: production code never
// imports them.
var testOnly = []string{"internal/testenv", "internal/stack/stacktest", "internal/telemetry/telemetrytest", "internal/chaos", "internal/cluster"}

// rule forbids the packages under from (a path relative to the module, or a
// prefix of one ending in "/") to import the packages under any of to.
type rule struct {
	from string
	to   []string
	why  string
}

// rules are the import directions of docs/architecture.md: cmd → gateway
// and services → the messaging runtime → generated code. (gen/ importing
// nothing of shopbus is event-contracts' TestGeneratedCodeIsALeaf.)
var rules = []rule{
	{"internal/event", []string{"internal/messaging", "internal/servicekit", "services", "gateway", "internal/stack", "cmd"},
		"the event contracts' runtime is the bottom layer: it knows no transport and no service"},
	{"internal/messaging", []string{"internal/servicekit", "services", "gateway", "internal/stack", "cmd"},
		"the messaging runtime knows no service and no wiring"},
	{"internal/servicekit", []string{"services", "gateway", "internal/stack", "cmd"},
		"the service kit is what every service builds on: it knows none of them"},
	{"services/", []string{"gateway", "internal/stack", "cmd"},
		"a service is built on the service kit and reached through its own API; the wiring sits above it"},
	{"gateway", []string{"services", "internal/stack", "cmd"},
		"the gateway mounts what the wiring hands it and knows no service's code"},
}

// TestLayers checks the import rules on the module's packages, test files
// left out: services never import each other, production code never
// imports a test-only package, and each layer imports only those below it.
func TestLayers(t *testing.T) {
	out, err := exec.Command("go", "list", "-f", `{{.ImportPath}}{{range .Imports}} {{.}}{{end}}`, "./...").Output()
	if err != nil {
		t.Fatalf("go list: %v", err)
	}
	packages := 0
	sc := bufio.NewScanner(bytes.NewReader(out))
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		pkg, ok := strings.CutPrefix(fields[0], module)
		if !ok {
			continue
		}
		packages++
		for _, imp := range fields[1:] {
			dep, ok := strings.CutPrefix(imp, module)
			if !ok {
				continue
			}
			if err := check(pkg, dep); err != "" {
				t.Errorf("%s imports %s: %s", pkg, dep, err)
			}
		}
	}
	if packages < 20 {
		t.Fatalf("go list named %d packages of the module; is the test run from the module's root?", packages)
	}
}

// TestLayersCatch: each kind of rule refuses what it is meant to.
func TestLayersCatch(t *testing.T) {
	for _, tc := range []struct {
		pkg, dep string
		refused  bool
	}{
		{"services/order", "services/inventory", true},
		{"services/order", "services", false},
		{"services/order", "internal/servicekit", false},
		{"services/order", "internal/stack", true},
		{"internal/messaging", "internal/testenv", true},
		{"internal/testenv", "internal/messaging", false},
		{"internal/stack/stacktest", "internal/testenv", false},
		{"internal/messaging", "services/order", true},
		{"internal/messaging", "internal/event", false},
		{"internal/event", "internal/messaging", true},
		{"gateway", "services/order", true},
		{"internal/stack", "services/order", false},
		{"cmd/shopbus", "internal/stack", false},
	} {
		if got := check(tc.pkg, tc.dep) != ""; got != tc.refused {
			t.Errorf("%s importing %s: refused %v, want %v", tc.pkg, tc.dep, got, tc.refused)
		}
	}
}

// check returns why pkg may not import dep, or "" when it may.
func check(pkg, dep string) string {
	if isTestOnly(dep) && !isTestOnly(pkg) {
		return "a test-only package; production code never imports one"
	}
	if a, b := service(pkg), service(dep); a != "" && b != "" && a != b {
		return "services never import each other; they talk through events"
	}
	for _, r := range rules {
		if !under(pkg, r.from) {
			continue
		}
		for _, to := range r.to {
			if under(dep, to) {
				return r.why
			}
		}
	}
	return ""
}

// service returns the service a package belongs to ("order" for
// services/order and below), or "".
func service(pkg string) string {
	rest, ok := strings.CutPrefix(pkg, "services/")
	if !ok {
		return ""
	}
	name, _, _ := strings.Cut(rest, "/")
	return name
}

func isTestOnly(pkg string) bool {
	for _, p := range testOnly {
		if under(pkg, p) {
			return true
		}
	}
	return false
}

// under reports whether pkg is prefix or a package below it; a prefix
// ending in "/" matches below it only.
func under(pkg, prefix string) bool {
	if strings.HasSuffix(prefix, "/") {
		return strings.HasPrefix(pkg, prefix)
	}
	return pkg == prefix || strings.HasPrefix(pkg, prefix+"/")
}
