package main

import (
	"cmp"
	"context"
	"errors"
	"flag"
	"fmt"
	"net"
	"net/http"
	_ "net/http/pprof" // --debug-addr
	"os"
	"os/signal"
	"path/filepath"
	"syscall"
	"time"

	"github.com/shopbus/shopbus/internal/auth"
	"github.com/shopbus/shopbus/internal/messaging"
	"github.com/shopbus/shopbus/internal/natsauth"
	"github.com/shopbus/shopbus/internal/natsembed"
	"github.com/shopbus/shopbus/internal/postgres"
	"github.com/shopbus/shopbus/internal/stack"
	"github.com/shopbus/shopbus/internal/telemetry"
	"github.com/shopbus/shopbus/services/message"
	"github.com/shopbus/shopbus/services/post"
)

// demoCustomer is the customer of the demo token shopbus dev prints.
const demoCustomer = "6f1c2b3a-4d5e-4f60-8a7b-9c0d1e2f3a4b"

// demoDevice is the device of the demo device token shopbus dev writes (the
// README's IoT example sends its readings).
const demoDevice = "c0ffee00-1234-4abc-8def-0123456789ab"

// devTokens are the issuer and audience of shopbus dev's tokens, and how
// long the tokens it mints at each start stay valid.
var devTokens = auth.Options{Issuer: "shopbus-dev", Audience: "shopbus"}

const devTokenTTL = 7 * 24 * time.Hour

// demoStock is seeded by shopbus dev (only SKUs that do not exist yet).
var demoStock = map[string]int64{"MUG-001": 100, "TEE-BLK-M": 25, "POSTER-A2": 3}

// demoPrices are the demo SKUs' prices in EUR cents, seeded by shopbus dev
// (only SKUs that have no price yet).
var demoPrices = map[string]int64{"MUG-001": 1250, "TEE-BLK-M": 1999, "POSTER-A2": 900}

// devPartitions is dev's partition count per stream, where serve's is
// messaging.DefaultPartitions (8). Partitions spread a key-based group
// over instances, and dev is one process; each partition is a durable
// consumer per group whose state JetStream writes with an fsync up to ten
// times a second. Measured on the dev stack (docs/benchmarks.md, "Partitions
// on the dev stack"): 2 partitions decided 1.7–2× the orders of 8, at half
// the CPU per order.
const devPartitions = 2

func dev(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("dev", flag.ContinueOnError)
	addr := fs.String("addr", "127.0.0.1:8080", "gateway listen address (env SHOPBUS_ADDR)")
	dataDir := fs.String("data-dir", ".data", "embedded NATS store (env SHOPBUS_DATA_DIR); a restart on it continues")
	natsPort := fs.Int("nats-port", 14222, "embedded NATS client port, never 4222 (env SHOPBUS_NATS_PORT)")
	natsMonitorPort := fs.Int("nats-monitor-port", 18222, "embedded NATS HTTP monitoring port on 127.0.0.1 (/varz, /jsz …), 0 for none (env SHOPBUS_NATS_MONITOR_PORT)")
	metricsAddr := metricsAddrFlag(fs, "127.0.0.1:9464")
	dbURL := secretFlag(fs, "database-url", postgres.DefaultURL, "PostgreSQL `URL` (env DATABASE_URL); the database is created if missing")
	schema := fs.String("schema", "shopbus", "prefix of the services' PostgreSQL schemas (env SHOPBUS_SCHEMA)")
	adminTokenOf := adminTokenFlags(fs)
	limitsOf := limitsFlags(fs)
	userLimitsOf := userLimitsFlags(fs)
	sagaOf := sagaFlags(fs)
	seed := fs.Bool("seed", true, "seed demo stock (SKUs that do not exist yet) and prices (SKUs that have none)")
	unsafeNoSync := fs.Bool("unsafe-nats-no-sync", false, "do not fsync before NATS acknowledges a publish (measuring only: acknowledged events can be lost on power failure)")
	logLevel := fs.String("log-level", "info", "debug, info, warn or error (env SHOPBUS_LOG_LEVEL)")
	debugAddr := fs.String("debug-addr", "", "serve /debug/pprof on this loopback address (env SHOPBUS_DEBUG_ADDR); off when empty")
	allowedOrigins := originsFlag(fs)
	tlsCert := fs.String("tls-cert", "", "serve the gateway over TLS (HTTP/2 and HTTP/1.1) with this certificate `file` (env SHOPBUS_TLS_CERT)")
	tlsKey := fs.String("tls-key", "", "the TLS certificate's key `file` (env SHOPBUS_TLS_KEY)")
	partitions := fs.Int("partitions", devPartitions, fmt.Sprintf("partitions of each event stream, 1 to %d, fixed when the stream is created (env SHOPBUS_STREAM_PARTITIONS)", messaging.MaxPartitions))
	insecure := fs.Bool("insecure", false, "no authentication: every caller is an admin and may act for any customer (measuring only; warned at start)")
	if err := parse(fs, args); err != nil {
		return err
	}
	watchdog, fraudModel, err := sagaOf()
	if err != nil {
		return err
	}
	limits, err := limitsOf()
	var messageLimits message.Limits
	var postLimits post.Limits
	if err == nil {
		messageLimits, postLimits, err = userLimitsOf()
	}
	if err == nil {
		err = checkDev(*addr, *metricsAddr, *natsPort, *natsMonitorPort, *logLevel)
	}
	if err == nil && (*partitions < 1 || *partitions > messaging.MaxPartitions) {
		err = fmt.Errorf("--partitions %d: want 1 to %d", *partitions, messaging.MaxPartitions)
	}
	if err != nil {
		return &usageError{cmd: fs.Name(), err: fmt.Errorf("%s: %w", fs.Name(), err)}
	}
	adminToken, err := adminTokenOf()
	if err != nil {
		return err
	}
	origins, err := parseOrigins(*allowedOrigins)
	if err != nil {
		return err
	}
	if err := serveDebug(*debugAddr); err != nil {
		return err
	}
	log, err := newLogger(*logLevel)
	if err != nil {
		return err
	}
	telemetry.LogErrors(log)
	authDir := filepath.Join(*dataDir, "auth")
	authCfg, demoToken, err := devAuth(authDir)
	if err != nil {
		return err
	}
	authCfg.AdminToken = adminToken
	if *insecure {
		authCfg = auth.Config{Insecure: true}
		log.Warn("--insecure: no authentication; anyone who reaches " + *addr + " may place and read any customer's orders and call the admin procedures")
	}
	s, err := stack.Start(ctx, stack.Config{
		TLSCertFile: *tlsCert, TLSKeyFile: *tlsKey,
		DataDir: *dataDir, NATSKeysDir: filepath.Join(*dataDir, "nats-keys"), NATSPort: *natsPort, NATSMonitorPort: *natsMonitorPort, MetricsAddr: *metricsAddr, NATSNoSync: *unsafeNoSync, DatabaseURL: *dbURL, Schema: *schema, Addr: *addr,
		Streams: messaging.StreamOptions{Replicas: 1, Partitions: *partitions}, AllowedOrigins: origins, Auth: authCfg, OrderLimits: limits, MessageLimits: messageLimits, PostLimits: postLimits, Watchdog: watchdog, FraudModelFile: fraudModel, Log: log,
	})
	if err != nil {
		return err
	}
	defer s.Close()
	if *seed {
		if err := s.Inventory.SeedStock(ctx, demoStock); err != nil {
			return err
		}
		if err := s.Inventory.SeedPrices(ctx, "EUR", demoPrices); err != nil {
			return err
		}
	}
	fmt.Fprintf(os.Stdout, `shopbus dev is running
  gateway  %[1]s  (Connect, gRPC and gRPC-Web; reflection; /healthz, /readyz)
  NATS     %[2]s  (embedded JetStream, store %[3]s; each service its own nkey identity, seeds in %[6]s)
  NATS monitoring %[4]s  (nats CLI, Prometheus NATS exporter)
  metrics  %[5]s  (Prometheus text format)
  stock    MUG-001 12.50 EUR, TEE-BLK-M 19.99 EUR, POSTER-A2 9.00 EUR (stock and prices seeded if missing)

Look at it:
  SHOPBUS_ADMIN_TOKEN_FILE=%[10]s shopbus lag --watch    consumer lag and status
  nats --server %[2]s --nkey %[7]s stream ls               streams (the nats CLI)
  nats --server %[2]s --nkey %[7]s consumer report ECOMMERCE_ORDER

Call it as the demo customer %[8]s with this bearer token (in %[9]s;
an admin's is in %[10]s, for SHOPBUS_ADMIN_TOKEN_FILE):
  %[11]s

Place an order:
  go tool -modfile=tools/buf.mod buf curl -H "Authorization: Bearer $(cat %[9]s)" --data '{"idempotency_key":"demo-0001","currency":"EUR","lines":[{"sku":"MUG-001","quantity":2}]}' %[1]s/shopbus.order.v1.OrderService/CreateOrder
  (the server prices it from the catalog; an admin sets prices with InventoryService/SetPrice)
Then wait for its outcome (WatchOrder with the orderId it printed) and read the stock:
  go tool -modfile=tools/buf.mod buf curl -H "Authorization: Bearer $(cat %[9]s)" --data '{"order_id":"<orderId>"}' %[1]s/shopbus.order.v1.OrderService/WatchOrder
  go tool -modfile=tools/buf.mod buf curl -H "Authorization: Bearer $(cat %[9]s)" --data '{"sku":"MUG-001"}' %[1]s/shopbus.inventory.v1.InventoryService/GetStock

Send readings as the demo device %[12]s with its token (in %[13]s;
a device's token ingests its own readings only, and calls nothing else):
  go tool -modfile=tools/buf.mod buf curl -H "Authorization: Bearer $(cat %[13]s)" --data '{"batches":[{"device_id":"%[12]s","sequence":1,"measured_at":"2026-11-27T10:14:59Z","readings":[{"metric":"temperature","value":21.5,"unit":"Cel"}]}]}' %[1]s/shopbus.telemetry.v1.TelemetryService/IngestBatch

Stop with Ctrl-C.
`, s.URL(), s.NATS.ClientURL(), *dataDir, cmp.Or(natsembed.MonitorURL(s.NATS), "off"), cmp.Or(s.MetricsURL(), "off"),
		filepath.Join(*dataDir, "nats-keys"), s.Keys.SeedFile(natsauth.Platform),
		demoCustomer, filepath.Join(authDir, customerTokenFile), filepath.Join(authDir, adminTokenFile), demoToken,
		demoDevice, filepath.Join(authDir, deviceTokenFile))
	return runUntilStopped(ctx, s)
}

// Files of shopbus dev's tokens, in <data-dir>/auth.
const (
	customerTokenFile = "customer.jwt"
	deviceTokenFile   = "device.jwt"
	adminTokenFile    = "admin.jwt"
)

// checkDev reports a setting of shopbus dev that cannot work, naming its
// flag.
func checkDev(addr, metricsAddr string, natsPort, natsMonitorPort int, logLevel string) error {
	switch {
	case natsPort < 0 || natsPort > 65535 || natsPort == 4222:
		return fmt.Errorf("--nats-port %d: want 0 (any free port) to 65535, never 4222 (a real NATS server's)", natsPort)
	case natsMonitorPort < -1 || natsMonitorPort > 65535:
		return fmt.Errorf("--nats-monitor-port %d: want -1 (any free port), 0 (none) or a port", natsMonitorPort)
	}
	if err := checkAddr("addr", addr); err != nil {
		return err
	}
	if metricsAddr != "" {
		if err := checkAddr("metrics-addr", metricsAddr); err != nil {
			return err
		}
	}
	return checkLogLevel(logLevel)
}

// devTokenPrincipals are the callers of shopbus dev's tokens, by file: the
// demo customer, the demo device ("kind": "device") and an admin.
var devTokenPrincipals = map[string]auth.Principal{
	customerTokenFile: {Subject: demoCustomer},
	deviceTokenFile:   {Subject: demoDevice, Kind: auth.Device},
	adminTokenFile:    {Subject: "dev-admin", Admin: true},
}

// devAuth makes (or reuses) shopbus dev's signing key in dir, mints the
// demo customer's token, the demo device's and an admin's, valid
// devTokenTTL, and writes them to dir; it returns the verifier of the key
// and the customer's token.
func devAuth(dir string) (cfg auth.Config, customerToken string, err error) {
	signer, err := auth.KeyPair(dir, devTokens)
	if err != nil {
		return cfg, "", err
	}
	if cfg.Verifier, err = signer.Verifier(); err != nil {
		return cfg, "", err
	}
	for file, p := range devTokenPrincipals {
		t, err := signer.Token(p, devTokenTTL)
		if err != nil {
			return cfg, "", err
		}
		if err := os.WriteFile(filepath.Join(dir, file), []byte(t+"\n"), 0o600); err != nil {
			return cfg, "", fmt.Errorf("auth: %w", err)
		}
		if file == customerTokenFile {
			customerToken = t
		}
	}
	return cfg, customerToken, nil
}

// runUntilStopped runs s until ctx is cancelled (SIGINT, SIGTERM), then gives
// it stopTimeout to finish the work in hand. Past that, or on a second
// signal, the process exits at once: work in hand stays unacked and is
// redelivered.
func runUntilStopped(ctx context.Context, s *stack.Stack) error {
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()
	select {
	case err := <-done:
		return err
	case <-ctx.Done():
	}
	second := make(chan os.Signal, 1)
	signal.Notify(second, os.Interrupt, syscall.SIGTERM)
	select {
	case err := <-done:
		if errors.Is(err, context.Canceled) {
			return nil
		}
		return err
	case <-second:
		fmt.Fprintln(os.Stderr, "shopbus: second signal; exiting now (work in hand will be redelivered)")
	case <-time.After(stopTimeout):
		fmt.Fprintf(os.Stderr, "shopbus: did not stop within %s; exiting now (work in hand will be redelivered)\n", stopTimeout)
	}
	os.Exit(1) // without closing pools that may wait on stuck connections
	return nil
}

// serveDebug serves Go's profiler on addr, when set.
func serveDebug(addr string) error {
	if addr == "" {
		return nil
	}
	// The profiler has no authentication: it never leaves the machine.
	if err := checkLoopback(addr); err != nil {
		return fmt.Errorf("--debug-addr: %w", err)
	}
	l, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("--debug-addr: %w", err)
	}
	go http.Serve(l, http.DefaultServeMux) //nolint:errcheck // lives as long as the process
	return nil
}

// stopTimeout bounds a graceful stop.
const stopTimeout = 25 * time.Second
