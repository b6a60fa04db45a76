// Command shopbus runs shopbus.
//
//	shopbus dev                          everything in one process: embedded NATS, services, gateway
//	shopbus serve order|inventory|gateway one component against external NATS and PostgreSQL
//	shopbus bench                        place orders against a running gateway and print latency and throughput
//	shopbus dlq list|show|redrive|discard the dead-letter queue, through a running gateway
//	shopbus groups [--watch] [NAME]      the consumer groups, their members and partitions, through a running gateway
//	shopbus lag [--watch] [GROUP]        consumer lag in events and seconds, and Burrow-style status, through a running gateway
//
// Every flag has an environment fallback, shown in -h.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"time"

	"connectrpc.com/connect"

	"github.com/shopbus/shopbus/gateway"
	"github.com/shopbus/shopbus/internal/auth"
	"github.com/shopbus/shopbus/internal/postgres"
	"github.com/shopbus/shopbus/services/order"
)

func main() {
	if len(os.Args) < 2 {
		usage()
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	var err error
	switch cmd, args := os.Args[1], os.Args[2:]; cmd {
	case "dev":
		err = dev(ctx, args)
	case "serve":
		err = serve(ctx, args)
	case "bench":
		err = bench(ctx, args)
	case "dlq":
		err = dlq(ctx, args)
	case "groups":
		err = groups(ctx, args)
	case "lag":
		err = lagCmd(ctx, args)
	case "-h", "--help", "help":
		usage()
		return
	default:
		fmt.Fprintf(os.Stderr, "shopbus: unknown command %q\n\n", cmd)
		usage()
		os.Exit(2)
	}
	if err != nil {
		if errors.Is(err, postgres.ErrUnavailable) {
			fmt.Fprintf(os.Stderr, "shopbus: %v\n\nPostgreSQL is not reachable. Start it, or point shopbus at one with\n"+
				"DATABASE_URL (or --database-url), for example\n  DATABASE_URL=postgres://user:password@host:5432/shopbus shopbus dev\n", err)
		} else {
			fmt.Fprintf(os.Stderr, "shopbus: %v\n", err)
		}
		os.Exit(1)
	}
}

func usage() {
	fmt.Fprint(os.Stderr, `usage:
  shopbus dev [flags]                           run everything in one process (quick start)
  shopbus serve order|inventory|gateway [flags] run one component against external NATS and PostgreSQL
  shopbus bench [flags]                         measure CreateOrder → CONFIRMED against a running gateway
  shopbus dlq list|show|redrive|discard [flags] the dead-letter queue, through a running gateway
  shopbus groups [--watch] [NAME]               the consumer groups: members, partition owners, backlog
  shopbus lag [--watch] [GROUP]                 consumer lag in events and seconds, and Burrow-style status

Run "shopbus <command> -h" for the flags of a command.
`)
}

// env returns the environment variable name, or def when it is unset.
func env(name, def string) string {
	if v, ok := os.LookupEnv(name); ok {
		return v
	}
	return def
}

func envInt(name string, def int) int {
	if v, ok := os.LookupEnv(name); ok {
		if n, err := strconv.Atoi(v); err == nil {
			return n
		}
	}
	return def
}

func envDuration(name string, def time.Duration) time.Duration {
	if v, ok := os.LookupEnv(name); ok {
		if d, err := time.ParseDuration(v); err == nil {
			return d
		}
	}
	return def
}

// authFlags declares how callers authenticate: --jwt-key (with
// --jwt-issuer and --jwt-audience) for end users' bearer tokens, and
// --admin-token / --admin-token-file for a static admin credential; the
// function returned gives the auth.Config once the flags are parsed.
func authFlags(fs *flag.FlagSet) func() (auth.Config, error) {
	key := fs.String("jwt-key", env("SHOPBUS_JWT_KEY", ""),
		"verify bearer tokens (JWT: EdDSA, ES*, RS*, PS*) with the public key in this `file`: PEM, or a JWKS document (env SHOPBUS_JWT_KEY)")
	issuer := fs.String("jwt-issuer", env("SHOPBUS_JWT_ISSUER", ""), "when set, a token's iss must be this (env SHOPBUS_JWT_ISSUER)")
	audience := fs.String("jwt-audience", env("SHOPBUS_JWT_AUDIENCE", ""), "a token's aud must include this; required with --jwt-key (env SHOPBUS_JWT_AUDIENCE)")
	adminTokenOf := adminTokenFlags(fs)
	return func() (auth.Config, error) {
		var cfg auth.Config
		var err error
		if cfg.AdminToken, err = adminTokenOf(); err != nil {
			return cfg, err
		}
		if *key != "" {
			if *audience == "" {
				return cfg, errors.New("--jwt-key needs --jwt-audience (SHOPBUS_JWT_AUDIENCE): without it, a token the same issuer minted for another application would pass")
			}
			if cfg.Verifier, err = auth.LoadVerifier(*key, auth.Options{Issuer: *issuer, Audience: *audience}); err != nil {
				return cfg, fmt.Errorf("--jwt-key: %w", err)
			}
		}
		return cfg, nil
	}
}

// adminTokenFlags declares --admin-token and --admin-token-file, a static
// bearer token with the admin role; the function returned gives it once
// the flags are parsed.
func adminTokenFlags(fs *flag.FlagSet) func() (string, error) {
	token := secretFlag(fs, "admin-token", "SHOPBUS_ADMIN_TOKEN", "",
		"accept this static bearer `token` with the admin role, for operators' tools (env SHOPBUS_ADMIN_TOKEN, which keeps it out of the process list)")
	file := fs.String("admin-token-file", env("SHOPBUS_ADMIN_TOKEN_FILE", ""), "read the admin token from this `file` instead (env SHOPBUS_ADMIN_TOKEN_FILE)")
	return func() (string, error) { return adminToken(*token, *file) }
}

// adminToken is token, or the contents of file (trimmed) when file is set.
func adminToken(token, file string) (string, error) {
	if file == "" {
		return token, nil
	}
	if token != "" {
		return "", errors.New("--admin-token and --admin-token-file: give one (SHOPBUS_ADMIN_TOKEN or SHOPBUS_ADMIN_TOKEN_FILE)")
	}
	b, err := os.ReadFile(file)
	if err != nil {
		return "", fmt.Errorf("--admin-token-file: %w", err)
	}
	t := strings.TrimSpace(string(b))
	if t == "" {
		return "", fmt.Errorf("--admin-token-file %s: the file is empty", file)
	}
	return t, nil
}

// limitsFlags declares what one customer may order (order.Limits); the
// function returned gives them once the flags are parsed.
func limitsFlags(fs *flag.FlagSet) func() order.Limits {
	d := order.DefaultLimits
	rate := fs.Float64("orders-per-second", envFloat("SHOPBUS_ORDERS_PER_SECOND", d.OrdersPerSecond), "each customer's sustained CreateOrder rate, per order-service instance; above it resource_exhausted with a retry hint (env SHOPBUS_ORDERS_PER_SECOND)")
	burst := fs.Int("order-burst", envInt("SHOPBUS_ORDER_BURST", d.Burst), "orders a customer may place at once above its rate (env SHOPBUS_ORDER_BURST)")
	line := fs.Uint("max-line-units", uint(envInt("SHOPBUS_MAX_LINE_UNITS", int(d.MaxUnitsPerLine))), "most units on one order line (env SHOPBUS_MAX_LINE_UNITS)")
	total := fs.Uint("max-order-units", uint(envInt("SHOPBUS_MAX_ORDER_UNITS", int(d.MaxUnitsPerOrder))), "most units in one order (env SHOPBUS_MAX_ORDER_UNITS)")
	return func() order.Limits {
		return order.Limits{OrdersPerSecond: *rate, Burst: *burst, MaxUnitsPerLine: uint32(min(*line, 1<<32-1)), MaxUnitsPerOrder: uint32(min(*total, 1<<32-1))}
	}
}

// sagaFlags declares the order saga's settings: the watchdog's deadline
// (--stuck-after), the fraud deadline and what it does, and the fraud
// model's coefficients file; the function returned gives them once the
// flags are parsed, or an error naming a bad value.
func sagaFlags(fs *flag.FlagSet) func() (order.Watchdog, string, error) {
	d := order.DefaultWatchdog
	after := fs.Duration("stuck-after", envDuration("SHOPBUS_STUCK_AFTER", d.After),
		"order service: how long an order may stay PENDING before the watchdog re-applies its lost outcome or score, or re-publishes its order.created (env SHOPBUS_STUCK_AFTER)")
	deadline := fs.Duration("fraud-deadline", envDuration("SHOPBUS_FRAUD_DEADLINE", d.FraudDeadline),
		"order service: how long an order waits for its fraud score before --on-fraud-deadline decides (env SHOPBUS_FRAUD_DEADLINE)")
	action := fs.String("on-fraud-deadline", env("SHOPBUS_ON_FRAUD_DEADLINE", string(d.OnFraudDeadline)),
		"order service: what an order without a fraud score becomes at the deadline: review (held for a person), approve or reject (env SHOPBUS_ON_FRAUD_DEADLINE)")
	model := fs.String("fraud-model", env("SHOPBUS_FRAUD_MODEL", ""),
		"fraud service: the model's coefficients `file` (services/fraud/MODEL.md); the committed model when empty (env SHOPBUS_FRAUD_MODEL)")
	return func() (order.Watchdog, string, error) {
		a, err := order.ParseFraudDeadlineAction(*action)
		if err != nil {
			return order.Watchdog{}, "", fmt.Errorf("--on-fraud-deadline: %w", err)
		}
		if *after <= 0 || *deadline <= 0 {
			return order.Watchdog{}, "", fmt.Errorf("--stuck-after %v and --fraud-deadline %v: both must be more than 0", *after, *deadline)
		}
		return order.Watchdog{After: *after, FraudDeadline: *deadline, OnFraudDeadline: a}, *model, nil
	}
}

func envFloat(name string, def float64) float64 {
	if v, ok := os.LookupEnv(name); ok {
		if f, err := strconv.ParseFloat(v, 64); err == nil {
			return f
		}
	}
	return def
}

// metricsAddrFlag declares --metrics-addr, where /metrics is served.
func metricsAddrFlag(fs *flag.FlagSet, def string) *string {
	return fs.String("metrics-addr", env("SHOPBUS_METRICS_ADDR", def),
		"serve Prometheus metrics at /metrics on this address (env SHOPBUS_METRICS_ADDR); off when empty")
}

// adminClientOptions makes a client send the bearer token of
// SHOPBUS_ADMIN_TOKEN, or of the file SHOPBUS_ADMIN_TOKEN_FILE names, when
// set: a static admin token, or a JWT with the admin role (shopbus dev
// writes one to <data-dir>/auth/admin.jwt).
func adminClientOptions() ([]connect.ClientOption, error) {
	token, err := adminToken(os.Getenv("SHOPBUS_ADMIN_TOKEN"), os.Getenv("SHOPBUS_ADMIN_TOKEN_FILE"))
	if err != nil || token == "" {
		return nil, err
	}
	return []connect.ClientOption{connect.WithInterceptors(gateway.BearerToken(token))}, nil
}

func newLogger(level string) (*slog.Logger, error) {
	var l slog.Level
	if err := l.UnmarshalText([]byte(level)); err != nil {
		return nil, fmt.Errorf("--log-level %q: want debug, info, warn or error", level)
	}
	return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: l})), nil
}

// parse parses flags for a command, with "-h" printing them.
func parse(fs *flag.FlagSet, args []string) error {
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "usage: shopbus %s [flags]\n", fs.Name())
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("%s: unexpected arguments %s", fs.Name(), strings.Join(fs.Args(), " "))
	}
	return nil
}
