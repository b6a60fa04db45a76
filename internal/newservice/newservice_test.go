package newservice_test

import (
	"errors"
	"flag"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/shopbus/shopbus/internal/newservice"
)

var full = flag.Bool("newservice.full", false, "generate a service into a scratch copy of the repository and run make generate, make lint and its tests there (make template-test; minutes)")

// repoRoot is the repository this test runs in.
const repoRoot = "../.."

// copyRepo copies the files git knows (tracked, and untracked but not
// ignored) into a new directory, with node_modules linked if present.
func copyRepo(t *testing.T) string {
	t.Helper()
	out, err := exec.Command("git", "-C", repoRoot, "ls-files", "-co", "--exclude-standard", "-z").Output()
	if err != nil {
		t.Fatalf("git ls-files: %v", err)
	}
	dst := t.TempDir()
	for _, f := range strings.Split(strings.TrimRight(string(out), "\x00"), "\x00") {
		data, err := os.ReadFile(filepath.Join(repoRoot, f))
		if errors.Is(err, os.ErrNotExist) {
			continue // deleted in the working tree
		}
		if err != nil {
			t.Fatal(err)
		}
		info, _ := os.Stat(filepath.Join(repoRoot, f))
		if err := os.MkdirAll(filepath.Join(dst, filepath.Dir(f)), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dst, f), data, info.Mode().Perm()); err != nil {
			t.Fatal(err)
		}
	}
	if abs, err := filepath.Abs(filepath.Join(repoRoot, "node_modules")); err == nil {
		if _, err := os.Stat(abs); err == nil {
			_ = os.Symlink(abs, filepath.Join(dst, "node_modules"))
		}
	}
	return dst
}

// TestRefusals: a bad name, a service that exists, or a file without its
// marker is an error naming it, and nothing is written.
func TestRefusals(t *testing.T) {
	for _, spec := range []string{"widget", "Demo/widget", "demo/w", "demo/order", "demo/wid-get", "demo/type"} {
		if _, err := newservice.Generate(t.TempDir(), spec); !errors.Is(err, newservice.ErrBadName) || !strings.Contains(err.Error(), spec) {
			t.Errorf("%q: %v, want ErrBadName naming it", spec, err)
		}
	}
	if testing.Short() {
		return
	}
	root := copyRepo(t)
	if _, err := newservice.Generate(root, "chat/message"); err == nil || !strings.Contains(err.Error(), "event-contracts/chat/message") {
		t.Errorf("a context that exists: %v, want it named", err)
	}
	// A marker gone: nothing at all is written.
	compose := filepath.Join(root, "compose.yaml")
	data, _ := os.ReadFile(compose)
	if err := os.WriteFile(compose, []byte(strings.ReplaceAll(string(data), "# shopbus new service", "# someone edited this")), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := newservice.Generate(root, "demo/widget"); err == nil || !strings.Contains(err.Error(), "compose.yaml") {
		t.Errorf("a marker missing: %v, want compose.yaml named", err)
	}
	for _, p := range []string{"services/widget", "event-contracts/demo", "proto/shopbus/widget"} {
		if _, err := os.Stat(filepath.Join(root, p)); err == nil {
			t.Errorf("%s was written although the generation failed", p)
		}
	}
	if b, _ := os.ReadFile(filepath.Join(root, "internal/event/catalog.go")); strings.Contains(string(b), "demo/widget") {
		t.Error("catalog.go was edited although the generation failed")
	}
}

// TestGenerate generates demo/widget into a scratch copy of the repository
// and runs there what a developer would: `make generate`, `make lint`, the
// new service's test, and the tests that check contracts, the gateway's
// classification of procedures and the compose file. Slow (it builds buf):
// `make template-test`, which CI runs.
func TestGenerate(t *testing.T) {
	if !*full {
		t.Skip("-newservice.full (make template-test)")
	}
	root := copyRepo(t)
	run := func(name string, args ...string) {
		t.Helper()
		cmd := exec.Command(name, args...)
		cmd.Dir = root
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
		}
	}
	run("go", "run", "./cmd/shopbus", "new", "service", "demo/widget")
	run("make", "generate")
	run("make", "lint")
	run("go", "test", "-race", "-count=1", "./services/widget/", "./event-contracts/", "./gateway/", "./internal/event/")
	run("go", "test", "-count=1", "-run", "TestCompose$|TestHelp$", "./cmd/shopbus/")
}
