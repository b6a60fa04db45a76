package stack_test

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/shopbus/shopbus/internal/auth"
	"github.com/shopbus/shopbus/internal/testenv"
)

// readmeDevice is the demo device of the README's IoT example (shopbus
// dev's .data/auth/device.jwt).
const readmeDevice = "c0ffee00-1234-4abc-8def-0123456789ab"

// TestREADMETelemetry runs the README's IoT `buf curl` lines against a
// stack (the telemetry service under its own NATS identity, behind the
// gateway): IngestBatch, with the demo device's token, accepts the batch,
// the same line again is a duplicate, and GetDeviceStats (admin) shows
// each reading counted once.
func TestREADMETelemetry(t *testing.T) {
	if testing.Short() {
		t.Skip("runs buf")
	}
	t.Parallel()
	readme, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	ingest := readmeLine(t, readme, "/shopbus.telemetry.v1.TelemetryService/IngestBatch")
	stats := readmeLine(t, readme, "/shopbus.telemetry.v1.TelemetryService/GetDeviceStats")
	s := startStack(t)
	dir := t.TempDir()
	adminFile, deviceFile := filepath.Join(dir, "admin.jwt"), filepath.Join(dir, "device.jwt")
	if err := os.WriteFile(adminFile, []byte(token(t, auth.Principal{Subject: "ops", Admin: true})+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(deviceFile, []byte(token(t, auth.Principal{Subject: readmeDevice, Kind: auth.Device})+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(ingest, ".data/auth/device.jwt") {
		t.Errorf("the README ingests with another token than the demo device's (.data/auth/device.jwt): %s", ingest)
	}
	local := strings.NewReplacer("http://127.0.0.1:8080", s.URL(), ".data/auth/admin.jwt", adminFile, ".data/auth/device.jwt", deviceFile)
	run := func(line string) string {
		t.Helper()
		cmd := exec.Command("sh", "-c", local.Replace(line))
		cmd.Dir = "../.."
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("%s: %v\n%s", line, err, out)
		}
		return strings.Join(strings.Fields(string(out)), " ")
	}
	if out := run(ingest); out != `{ "accepted": "1", "readings": "2" }` {
		t.Errorf("IngestBatch answered %s, want 1 batch of 2 readings accepted", out)
	}
	if out := run(ingest); out != `{ "duplicates": "1" }` {
		t.Errorf("IngestBatch again answered %s, want 1 duplicate", out)
	}
	testenv.CheckFor(t, 30*time.Second, 50*time.Millisecond, func() error {
		out := run(stats)
		for _, want := range []string{`"metric": "humidity", "unit": "%", "count": "1", "min": 48, "max": 48, "mean": 48`,
			`"metric": "temperature", "unit": "Cel", "count": "1", "min": 21.5, "max": 21.5, "mean": 21.5`} {
			if !strings.Contains(out, want) {
				return fmt.Errorf("GetDeviceStats answered %s, want %s", out, want)
			}
		}
		return nil
	})
}
