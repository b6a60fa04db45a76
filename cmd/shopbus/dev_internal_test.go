package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/shopbus/shopbus/internal/auth"
)

// TestDevAuthTokens: shopbus dev writes the demo customer's token (a
// user's, no kind), the demo device's ("kind": "device", its id the
// README's device) and an admin's, each owner-only, and its verifier
// accepts each as what it is.
func TestDevAuthTokens(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	cfg, customerToken, err := devAuth(dir)
	if err != nil {
		t.Fatal(err)
	}
	for file, want := range map[string]auth.Principal{
		customerTokenFile: {Subject: demoCustomer},
		deviceTokenFile:   {Subject: demoDevice, Kind: auth.Device},
		adminTokenFile:    {Subject: "dev-admin", Admin: true},
	} {
		path := filepath.Join(dir, file)
		b, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		if fi, err := os.Stat(path); err != nil || fi.Mode().Perm() != 0o600 {
			t.Errorf("%s: mode %v, %v; want 0600", file, fi.Mode().Perm(), err)
		}
		tok := strings.TrimSpace(string(b))
		if file == customerTokenFile && tok != customerToken {
			t.Errorf("devAuth returned another token than %s's", file)
		}
		p, err := cfg.Verifier.Verify(tok)
		if err != nil || p != want {
			t.Errorf("%s: %+v, %v; want %+v", file, p, err, want)
		}
	}
	readme, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(readme), `"device_id":"`+demoDevice+`"`) {
		t.Errorf("the README's IoT example sends no readings of the demo device %s", demoDevice)
	}
}
