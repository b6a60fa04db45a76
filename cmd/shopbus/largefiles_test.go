package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// TestLargeFileGuard: scripts/check-large-files.sh, which .ci/run runs,
// fails on a tracked file over 2 MB and names it, and lets one under gen/
// through.
func TestLargeFileGuard(t *testing.T) {
	t.Parallel()
	script, err := os.ReadFile("../../scripts/check-large-files.sh")
	if err != nil {
		t.Fatal(err)
	}
	repo := t.TempDir()
	write := func(path string, data []byte, mode os.FileMode) {
		t.Helper()
		full := filepath.Join(repo, path)
		if err := os.MkdirAll(filepath.Dir(full), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(full, data, mode); err != nil {
			t.Fatal(err)
		}
	}
	git := func(args ...string) {
		t.Helper()
		cmd := exec.Command("git", append([]string{"-C", repo}, args...)...)
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("git %v: %v\n%s", args, err, out)
		}
	}
	check := func() (string, error) {
		out, err := exec.Command("bash", filepath.Join(repo, "scripts/check-large-files.sh")).CombinedOutput()
		return string(out), err
	}
	git("init", "-q")
	write("scripts/check-large-files.sh", script, 0o755)
	write("gen/go/big.pb.go", make([]byte, 3<<20), 0o644) // generated: exempt
	write("small.txt", []byte("fine"), 0o644)
	git("add", ".")
	if out, err := check(); err != nil {
		t.Fatalf("with generated code only: %v\n%s", err, out)
	}
	write("shopbus", make([]byte, 3<<20), 0o755) // a build output, tracked by mistake
	git("add", "shopbus")
	out, err := check()
	if err == nil || !strings.Contains(out, "shopbus is 3145728 bytes") {
		t.Errorf("with a 3 MB binary tracked: %v\n%s; want a failure naming it", err, out)
	}
}
