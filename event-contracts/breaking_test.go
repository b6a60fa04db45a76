package contracts_test

import (
	"errors"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// TestBreakingGateBites runs the gate of .ci/run (buf breaking with the
// rules of buf.yaml) on copies of the real contracts, one change at a time:
// compatible changes pass, breaking ones are reported with the field named.
func TestBreakingGateBites(t *testing.T) {
	if testing.Short() {
		t.Skip("runs buf")
	}
	const file = "ecommerce/order/v1/order_created.proto"
	for _, tc := range []struct {
		name     string
		old, new string
		breaking string // what buf must report; "" for a compatible change
	}{
		{"add a field", "\n}\n\n// LineItem", "\n  string note = 99;\n}\n\n// LineItem", ""},
		{"add a message", "// LineItem is", "message GiftWrap {\n  string message = 1;\n}\n\n// LineItem is", ""},
		{"change a field's type", "int64 total_minor = 5", "string total_minor = 5", "total_minor"},
		{"delete a field, reserving its number and name", "string currency = 4 [", "reserved 4;\n  reserved \"currency\";\n  string currency_code = 40 [", ""},
		{"delete a field", "string currency = 4 [", "string currency_code = 40 [", "currency"},
		{"rename a field (breaks JSON)", "string customer_id = 2", "string buyer_id = 2", "customer_id"},
		{"renumber a field", "repeated LineItem items = 3", "repeated LineItem items = 33", "items"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			base, head := contractTree(t), contractTree(t)
			path := filepath.Join(head, "event-contracts", file)
			src := readFile(t, path)
			if !strings.Contains(src, tc.old) {
				t.Fatalf("%s no longer contains %q: update this test", file, tc.old)
			}
			if err := os.WriteFile(path, []byte(strings.Replace(src, tc.old, tc.new, 1)), 0o644); err != nil {
				t.Fatal(err)
			}
			cmd := exec.Command("go", "tool", "-modfile=tools/buf.mod", "buf", "breaking", head, "--against", base)
			cmd.Dir = ".."
			out, err := cmd.CombinedOutput()
			var exit *exec.ExitError
			switch {
			case tc.breaking == "" && err != nil:
				t.Errorf("a compatible change was reported as breaking: %v\n%s", err, out)
			case tc.breaking != "" && !errors.As(err, &exit):
				t.Errorf("a breaking change passed the gate (err %v)\n%s", err, out)
			case tc.breaking != "" && (exit.ExitCode() != 100 || !strings.Contains(string(out), tc.breaking)):
				t.Errorf("exit %d, want 100 naming %q:\n%s", exit.ExitCode(), tc.breaking, out)
			}
		})
	}
}

// contractTree copies buf.yaml and the proto files of the repository into a
// new directory, with the protovalidate link that scripts/protodeps.sh makes.
func contractTree(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	copyFile(t, "../buf.yaml", filepath.Join(dir, "buf.yaml"))
	for _, root := range []string{"../proto", "."} {
		err := filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
			if err != nil || d.IsDir() || !strings.HasSuffix(path, ".proto") {
				return err
			}
			rel, _ := filepath.Rel(root, path)
			module := "event-contracts"
			if root == "../proto" {
				module = "proto"
			}
			copyFile(t, path, filepath.Join(dir, module, rel))
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	target, err := filepath.EvalSymlinks("../.protodeps/protovalidate")
	if err != nil {
		t.Fatalf("protovalidate's proto is not linked (run make protodeps): %v", err)
	}
	if err := os.MkdirAll(filepath.Join(dir, ".protodeps"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(target, filepath.Join(dir, ".protodeps", "protovalidate")); err != nil {
		t.Fatal(err)
	}
	return dir
}

func copyFile(t *testing.T, from, to string) {
	t.Helper()
	b, err := os.ReadFile(from)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(filepath.Dir(to), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(to, b, 0o644); err != nil {
		t.Fatal(err)
	}
}
