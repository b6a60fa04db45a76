// Command shopbus runs shopbus.
//
//	shopbus dev                          everything in one process: embedded NATS, services, gateway
//	shopbus serve order|inventory|gateway one component against external NATS and PostgreSQL
//	shopbus bench                        place orders against a running gateway and print latency and throughput
//	shopbus dlq list|show|redrive|discard the dead-letter queue, through a running gateway
//	shopbus groups [--watch] [NAME]      the consumer groups, their members and partitions, through a running gateway
//	shopbus lag [--watch] [GROUP]        consumer lag in events and seconds, and Burrow-style status, through a running gateway
//	shopbus healthcheck [--url URL]      exit 0 when a component is ready (a container's health check)
//
// Most flags have an environment fallback, named in -h. "shopbus help
// <command>", or -h, --help after any command or subcommand, prints its
// usage and exits 0; a wrong flag, argument or value (on the command line
// or in the environment) exits 2 naming it; a command that fails exits 1.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"math"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"connectrpc.com/connect"

	"github.com/shopbus/shopbus/gateway"
	"github.com/shopbus/shopbus/internal/auth"
	"github.com/shopbus/shopbus/services/message"
	"github.com/shopbus/shopbus/services/order"
	"github.com/shopbus/shopbus/services/post"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args[1:])
	stop()
	os.Exit(code)
}

// authFlags declares how callers authenticate: --jwt-key (with
// --jwt-issuer and --jwt-audience) for end users' bearer tokens, and
// --admin-token / --admin-token-file for a static admin credential; the
// function returned gives the auth.Config once the flags are parsed.
func authFlags(fs *flag.FlagSet) func() (auth.Config, error) {
	key := fs.String("jwt-key", "",
		"verify bearer tokens (JWT: EdDSA, ES*, RS*, PS*) with the public key in this `file`: PEM, or a JWKS document (env SHOPBUS_JWT_KEY)")
	issuer := fs.String("jwt-issuer", "", "when set, a token's iss must be this (env SHOPBUS_JWT_ISSUER)")
	audience := fs.String("jwt-audience", "", "a token's aud must include this; required with --jwt-key (env SHOPBUS_JWT_AUDIENCE)")
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
	token := secretFlag(fs, "admin-token", "",
		"accept this static bearer `token` with the admin role, for operators' tools (env SHOPBUS_ADMIN_TOKEN, which keeps it out of the process list)")
	file := fs.String("admin-token-file", "", "read the admin token from this `file` instead (env SHOPBUS_ADMIN_TOKEN_FILE)")
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
// function returned gives them once the flags are parsed, or an error
// naming the flag whose value cannot work.
func limitsFlags(fs *flag.FlagSet) func() (order.Limits, error) {
	d := order.DefaultLimits
	rate := fs.Float64("orders-per-second", d.OrdersPerSecond, "each customer's sustained CreateOrder rate, per order-service instance; above it resource_exhausted with a retry hint (env SHOPBUS_ORDERS_PER_SECOND)")
	burst := fs.Int("order-burst", d.Burst, "orders a customer may place at once above its rate, at least 1 (env SHOPBUS_ORDER_BURST)")
	line := fs.Uint("max-line-units", uint(d.MaxUnitsPerLine), "most units on one order line (env SHOPBUS_MAX_LINE_UNITS)")
	total := fs.Uint("max-order-units", uint(d.MaxUnitsPerOrder), "most units in one order (env SHOPBUS_MAX_ORDER_UNITS)")
	return func() (order.Limits, error) {
		switch {
		case !(*rate > 0) || math.IsInf(*rate, 0):
			return order.Limits{}, fmt.Errorf("--orders-per-second %v: want a positive rate", *rate)
		case *burst < 1:
			return order.Limits{}, fmt.Errorf("--order-burst %d: want at least 1", *burst)
		case *line < 1 || *line > math.MaxUint32:
			return order.Limits{}, fmt.Errorf("--max-line-units %d: want 1 to %d", *line, uint32(math.MaxUint32))
		case *total < 1 || *total > math.MaxUint32:
			return order.Limits{}, fmt.Errorf("--max-order-units %d: want 1 to %d", *total, uint32(math.MaxUint32))
		case *line > *total:
			return order.Limits{}, fmt.Errorf("--max-line-units %d: more than --max-order-units %d", *line, *total)
		}
		return order.Limits{OrdersPerSecond: *rate, Burst: *burst, MaxUnitsPerLine: uint32(*line), MaxUnitsPerOrder: uint32(*total)}, nil
	}
}

// userLimitsFlags declares how fast one user may send messages
// (message.Limits) and publish, follow and unfollow (post.Limits); the
// function returned gives them once the flags are parsed, or an error
// naming the flag whose value cannot work.
func userLimitsFlags(fs *flag.FlagSet) func() (message.Limits, post.Limits, error) {
	m, p := message.DefaultLimits, post.DefaultLimits
	msgRate := fs.Float64("messages-per-second", m.MessagesPerSecond, "each user's sustained SendMessage rate, per message-service instance; above it resource_exhausted with a retry hint (env SHOPBUS_MESSAGES_PER_SECOND)")
	msgBurst := fs.Int("message-burst", m.Burst, "messages a user may send at once above its rate, at least 1 (env SHOPBUS_MESSAGE_BURST)")
	postRate := fs.Float64("posts-per-second", p.PostsPerSecond, "each user's sustained PublishPost rate, per post-service instance (env SHOPBUS_POSTS_PER_SECOND)")
	postBurst := fs.Int("post-burst", p.PostBurst, "posts a user may publish at once above its rate, at least 1 (env SHOPBUS_POST_BURST)")
	followRate := fs.Float64("follows-per-second", p.FollowsPerSecond, "each user's sustained rate of FollowUser and UnfollowUser together, per post-service instance (env SHOPBUS_FOLLOWS_PER_SECOND)")
	followBurst := fs.Int("follow-burst", p.FollowBurst, "follows and unfollows a user may make at once above its rate, at least 1 (env SHOPBUS_FOLLOW_BURST)")
	return func() (message.Limits, post.Limits, error) {
		for _, r := range []struct {
			flag string
			rate float64
		}{{"messages-per-second", *msgRate}, {"posts-per-second", *postRate}, {"follows-per-second", *followRate}} {
			if !(r.rate > 0) || math.IsInf(r.rate, 0) {
				return message.Limits{}, post.Limits{}, fmt.Errorf("--%s %v: want a positive rate", r.flag, r.rate)
			}
		}
		for _, b := range []struct {
			flag  string
			burst int
		}{{"message-burst", *msgBurst}, {"post-burst", *postBurst}, {"follow-burst", *followBurst}} {
			if b.burst < 1 {
				return message.Limits{}, post.Limits{}, fmt.Errorf("--%s %d: want at least 1", b.flag, b.burst)
			}
		}
		return message.Limits{MessagesPerSecond: *msgRate, Burst: *msgBurst},
			post.Limits{PostsPerSecond: *postRate, PostBurst: *postBurst, FollowsPerSecond: *followRate, FollowBurst: *followBurst}, nil
	}
}

// sagaFlags declares the order saga's settings: the watchdog's deadline
// (--stuck-after), the fraud deadline and what it does, and the fraud
// model's coefficients file; the function returned gives them once the
// flags are parsed, or an error naming a bad value.
func sagaFlags(fs *flag.FlagSet) func() (order.Watchdog, string, error) {
	d := order.DefaultWatchdog
	after := fs.Duration("stuck-after", d.After,
		"order service: how long an order may stay PENDING before the watchdog re-applies its lost outcome or score, or re-publishes its order.created (env SHOPBUS_STUCK_AFTER)")
	deadline := fs.Duration("fraud-deadline", d.FraudDeadline,
		"order service: how long an order waits for its fraud score before --on-fraud-deadline decides (env SHOPBUS_FRAUD_DEADLINE)")
	action := fs.String("on-fraud-deadline", string(d.OnFraudDeadline),
		"order service: what an order without a fraud score becomes at the deadline: review (held for a person), approve or reject (env SHOPBUS_ON_FRAUD_DEADLINE)")
	model := fs.String("fraud-model", "",
		"fraud service: the model's coefficients `file` (services/fraud/MODEL.md); the committed model when empty (env SHOPBUS_FRAUD_MODEL)")
	return func() (order.Watchdog, string, error) {
		a, err := order.ParseFraudDeadlineAction(*action)
		if err != nil {
			return order.Watchdog{}, "", usagef(fs.Name(), "--on-fraud-deadline: %v", err)
		}
		if *after <= 0 || *deadline <= 0 {
			return order.Watchdog{}, "", usagef(fs.Name(), "--stuck-after %v and --fraud-deadline %v: both must be more than 0", *after, *deadline)
		}
		return order.Watchdog{After: *after, FraudDeadline: *deadline, OnFraudDeadline: a}, *model, nil
	}
}

// metricsAddrFlag declares --metrics-addr, where /metrics is served.
func metricsAddrFlag(fs *flag.FlagSet, def string) *string {
	return fs.String("metrics-addr", def,
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

// newLogger is a text logger on stderr at level (debug, info, warn or
// error).
func newLogger(level string) (*slog.Logger, error) {
	var l slog.Level
	if err := l.UnmarshalText([]byte(level)); err != nil {
		return nil, fmt.Errorf("--log-level %q: want debug, info, warn or error", level)
	}
	return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: l})), nil
}

// checkLogLevel reports a --log-level newLogger would refuse.
func checkLogLevel(level string) error {
	_, err := newLogger(level)
	return err
}
