package main

import (
	"context"
	"flag"
	"fmt"
	"strings"
	"time"

	"github.com/shopbus/shopbus/internal/messaging"
	"github.com/shopbus/shopbus/internal/postgres"
	"github.com/shopbus/shopbus/internal/stack"
	"github.com/shopbus/shopbus/internal/telemetry"
)

func serve(ctx context.Context, args []string) error {
	if len(args) == 0 {
		return fmt.Errorf("serve: name a component: order, inventory or gateway")
	}
	component, args := args[0], args[1:]
	defaultAddr := map[string]string{"gateway": "127.0.0.1:8080", "order": "127.0.0.1:8081", "inventory": "127.0.0.1:8082", "fraud": "127.0.0.1:8083"}[component]
	if defaultAddr == "" {
		return fmt.Errorf("serve: unknown component %q: want gateway or one of %s", component, strings.Join(stack.Components(), ", "))
	}
	fs := flag.NewFlagSet("serve "+component, flag.ContinueOnError)
	addr := fs.String("addr", env("SHOPBUS_ADDR", defaultAddr), "listen address (env SHOPBUS_ADDR)")
	natsURL := secretFlag(fs, "nats-url", "NATS_URL", "nats://127.0.0.1:4222", "NATS server or cluster `URL` (env NATS_URL)")
	dbURL := secretFlag(fs, "database-url", "DATABASE_URL", postgres.DefaultURL, "PostgreSQL `URL` (env DATABASE_URL)")
	schema := fs.String("schema", env("SHOPBUS_SCHEMA", "shopbus"), "prefix of the services' PostgreSQL schemas (env SHOPBUS_SCHEMA)")
	replicas := fs.Int("replicas", envInt("SHOPBUS_STREAM_REPLICAS", 1), "stream replicas; 3 in a production cluster (env SHOPBUS_STREAM_REPLICAS)")
	maxAge := fs.Duration("retention", envDuration("SHOPBUS_STREAM_RETENTION", 7*24*time.Hour), "how long streams keep events (env SHOPBUS_STREAM_RETENTION)")
	partitions := fs.Int("partitions", envInt("SHOPBUS_STREAM_PARTITIONS", messaging.DefaultPartitions), "partitions of each event stream, fixed when the stream is created (env SHOPBUS_STREAM_PARTITIONS)")
	orderURL := fs.String("order-url", env("SHOPBUS_ORDER_URL", "http://127.0.0.1:8081"), "gateway only: the order service (env SHOPBUS_ORDER_URL)")
	inventoryURL := fs.String("inventory-url", env("SHOPBUS_INVENTORY_URL", "http://127.0.0.1:8082"), "gateway only: the inventory service (env SHOPBUS_INVENTORY_URL)")
	authOf := authFlags(fs)
	limitsOf := limitsFlags(fs)
	sagaOf := sagaFlags(fs)
	metricsAddr := metricsAddrFlag(fs, map[string]string{"gateway": "127.0.0.1:9464", "order": "127.0.0.1:9465", "inventory": "127.0.0.1:9466", "fraud": "127.0.0.1:9467"}[component])
	logLevel := fs.String("log-level", env("SHOPBUS_LOG_LEVEL", "info"), "debug, info, warn or error (env SHOPBUS_LOG_LEVEL)")
	natsCreds := fs.String("nats-creds", env("NATS_CREDS", ""), "NATS credentials `file` (JWT and seed, decentralized auth) (env NATS_CREDS)")
	natsNkey := fs.String("nats-nkey", env("NATS_NKEY", ""), "NATS nkey seed `file` of this component's identity (env NATS_NKEY)")
	natsCA := fs.String("nats-ca", env("NATS_CA", ""), "CA `file` to trust for NATS TLS (env NATS_CA)")
	natsCert := fs.String("nats-cert", env("NATS_CERT", ""), "client certificate `file` for NATS TLS (env NATS_CERT)")
	natsKey := fs.String("nats-key", env("NATS_KEY", ""), "client key `file` for NATS TLS (env NATS_KEY)")
	tlsCert := fs.String("tls-cert", env("SHOPBUS_TLS_CERT", ""), "serve over TLS (HTTP/2 and HTTP/1.1) with this certificate `file` (env SHOPBUS_TLS_CERT)")
	tlsKey := fs.String("tls-key", env("SHOPBUS_TLS_KEY", ""), "the TLS certificate's key `file` (env SHOPBUS_TLS_KEY)")
	var serviceCA *string
	if component == "gateway" {
		serviceCA = fs.String("service-ca", env("SHOPBUS_SERVICE_CA", ""), "gateway only: CA `file` to trust for https --order-url and --inventory-url (env SHOPBUS_SERVICE_CA)")
	}
	insecure := fs.Bool("insecure", false, "serve without authentication: every caller is an admin and may act for any customer (a private network only; warned at every start)")
	var allowedOrigins *string
	if component == "gateway" {
		allowedOrigins = originsFlag(fs)
	}
	if err := parse(fs, args); err != nil {
		return err
	}
	authCfg, err := authOf()
	if err != nil {
		return err
	}
	watchdog, fraudModel, err := sagaOf()
	if err != nil {
		return err
	}
	var origins []string
	if allowedOrigins != nil {
		var err error
		if origins, err = parseOrigins(*allowedOrigins); err != nil {
			return err
		}
	}
	natsOpts, err := stack.NATSCredentials(*natsCreds, *natsNkey, *natsCA, *natsCert, *natsKey)
	if err != nil {
		return err
	}
	switch {
	case *insecure && (authCfg.Verifier != nil || authCfg.AdminToken != ""):
		return fmt.Errorf("serve %s: --insecure with --jwt-key or an admin token: choose one", component)
	case *insecure:
		authCfg.Insecure = true
	case !authCfg.Enabled():
		return fmt.Errorf("serve %s: no authentication: give --jwt-key (SHOPBUS_JWT_KEY) to verify customers' bearer tokens and/or an admin token (SHOPBUS_ADMIN_TOKEN), or pass --insecure to serve everything open", component)
	}
	log, err := newLogger(*logLevel)
	if err != nil {
		return err
	}
	telemetry.LogErrors(log)
	if authCfg.Insecure {
		log.Warn("--insecure: no authentication; anyone who reaches " + *addr + " may place and read any customer's orders and call the admin procedures")
	}
	s, err := stack.Start(ctx, stack.Config{
		TLSCertFile: *tlsCert, TLSKeyFile: *tlsKey, ServiceCAFile: deref(serviceCA),
		Components: []string{component}, NATSURL: *natsURL, NATSOptions: natsOpts, DatabaseURL: *dbURL, Schema: *schema, Addr: *addr,
		Streams:  messaging.StreamOptions{Replicas: *replicas, MaxAge: *maxAge, Partitions: *partitions},
		OrderURL: *orderURL, InventoryURL: *inventoryURL, AllowedOrigins: origins, Auth: authCfg, OrderLimits: limitsOf(), Watchdog: watchdog, FraudModelFile: fraudModel, MetricsAddr: *metricsAddr, Log: log,
	})
	if err != nil {
		return err
	}
	defer s.Close()
	log.Info("serving", "component", component, "addr", s.URL(), "metrics", s.MetricsURL())
	return runUntilStopped(ctx, s)
}

// deref is *p, or "" for nil.
func deref(p *string) string {
	if p == nil {
		return ""
	}
	return *p
}
