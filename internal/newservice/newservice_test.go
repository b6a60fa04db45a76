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
	if _, err := newservice.Adopt(t.TempDir(), "demo/widget"); !errors.Is(err, newservice.ErrBadName) || !strings.Contains(err.Error(), "event-contracts/demo/widget") {
		t.Errorf("adopting a contract that is not there: %v, want ErrBadName naming it", err)
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
// new service's test, and the tests that check the layering (TestLayers),
// contracts, the gateway's classification of procedures and the compose
// file. Slow (it builds buf):
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
	run("go", "test", "-race", "-count=1", ".", "./services/widget/", "./event-contracts/", "./gateway/", "./internal/event/")
	run("go", "test", "-count=1", "-run", "TestCompose$|TestHelp$", "./cmd/shopbus/")

	// --adopt, on a contract without a service: demo/memo, a copy of
	// chat/message's without its producer. shopbus is run again: the catalog it adopts from is
	// the one built into it.
	copyContract(t, root, "chat/message", "demo/memo", strings.NewReplacer(
		"    producer: \"shopbus/message\"\n", "", // adopting declares the producer
		"chat.message.v1", "demo.memo.v1", "chat/message", "demo/memo", "chat.message", "demo.memo",
		"MessageSent", "MemoSent", "message.sent", "memo.sent", "message_sent", "memo_sent"))
	run("make", "generate")
	run("go", "run", "./cmd/shopbus", "new", "service", "--adopt", "demo/memo")
	run("make", "generate")
	run("make", "lint")
	run("go", "test", "-race", "-count=1", "./services/memo/", "./event-contracts/")
}

// copyContract copies the contract event-contracts/<from> to <to>, its
// names replaced by r, with its catalog import and CHANGELOG entry.
func copyContract(t *testing.T, root, from, to string, r *strings.Replacer) {
	t.Helper()
	src := filepath.Join(root, "event-contracts", from)
	err := filepath.WalkDir(src, func(path string, d os.DirEntry, err error) error {
		if err != nil || d.IsDir() || strings.HasSuffix(path, ".v1.json") && filepath.Dir(path) == src {
			return err // the JSON Schema is generated
		}
		rel, _ := filepath.Rel(src, path)
		data, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		dst := filepath.Join(root, "event-contracts", to, r.Replace(rel))
		if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
			return err
		}
		return os.WriteFile(dst, []byte(r.Replace(string(data))), 0o644)
	})
	if err != nil {
		t.Fatal(err)
	}
	for path, change := range map[string]func(string) string{
		"internal/event/catalog.go": func(s string) string {
			imp := "\t_ \"github.com/shopbus/shopbus/gen/go/" + from + "/v1\"\n"
			return strings.Replace(s, imp, imp+r.Replace(imp), 1)
		},
		"event-contracts/CHANGELOG.md": func(s string) string {
			i := strings.Index(s, "\n## ")
			return s[:i+1] + "## 2026-12-02 — " + to + "\n\n### Added\n\n- `" + r.Replace("message.sent") + ".v1`: a test's copy of " + from + ".\n\n" + s[i+1:]
		},
	} {
		data, err := os.ReadFile(filepath.Join(root, path))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(root, path), []byte(change(string(data))), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}
