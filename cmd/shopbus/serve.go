package main

import (
	"context"
	"flag"
	"fmt"
	"maps"
	"os"
	"slices"
	"strings"

	"github.com/shopbus/shopbus/internal/auth"
	"github.com/shopbus/shopbus/internal/messaging"
	"github.com/shopbus/shopbus/internal/postgres"
	"github.com/shopbus/shopbus/internal/stack"
	"github.com/shopbus/shopbus/internal/telemetry"
	"github.com/shopbus/shopbus/services/message"
	"github.com/shopbus/shopbus/services/order"
	"github.com/shopbus/shopbus/services/post"
)

// component is what `shopbus serve` can run, with its default listen and
// metrics addresses.
type component struct {
	name, addr, metricsAddr, summary string
}

// components are the components `shopbus serve` runs.
var components = []component{
	{"gateway", "127.0.0.1:8080", "127.0.0.1:9464", "the Connect façade: OrderService, InventoryService and the admin services; declares the streams"},
	{"order", "127.0.0.1:8081", "127.0.0.1:9465", "the order service: orders, its outbox, the inventory outcome consumer, the watchdog"},
	{"inventory", "127.0.0.1:8082", "127.0.0.1:9466", "the inventory service: stock and prices, the order.created and order.rejected consumer"},
	{"fraud", "127.0.0.1:8083", "127.0.0.1:9467", "the fraud service: scores order.created, publishes order.scored; FraudService (admin)"},
	{"message", "127.0.0.1:8084", "127.0.0.1:9468", "the message service (chat/message): SendMessage, ListMessages (participants and admins), the conversations read model"},
	{"telemetry", "127.0.0.1:8085", "127.0.0.1:9469", "the telemetry service (iot/telemetry): IngestReadings, IngestBatch (a device, or admin), GetDeviceStats (admin), its rollups"},
	{"post", "127.0.0.1:8086", "127.0.0.1:9470", "the post service (social/post): posts, follows, feeds fanned out from post.published, SKUs from inventory.priced"},
	// shopbus new service: new components go above this line.
}

// maxReplicas is JetStream's most replicas of a stream.
const maxReplicas = 5

// serveOptions is the configuration of `shopbus serve <component>`, as its
// flags and their environment variables give it.
type serveOptions struct {
	component                          string
	addr, natsURL, databaseURL, schema string
	replicas, partitions               int
	atomicBatches                      bool
	watchdog                           order.Watchdog
	fraudModel                         string
	orderURL, inventoryURL             string
	// serviceURLs are the other services the gateway relays to, by
	// component name (--<name>-url).
	serviceURLs                                    map[string]*string
	metricsAddr, logLevel                          string
	natsCreds, natsNkey, natsCA, natsCert, natsKey string
	tlsCert, tlsKey, serviceCA, allowedOrigins     string
	insecure                                       bool
	limits                                         order.Limits
	messageLimits                                  message.Limits
	postLimits                                     post.Limits
	// auth gives the authentication once the flags are parsed: it reads
	// the key and token files.
	auth func() (auth.Config, error)
}

// serveFlags declares the flags of `shopbus serve <name>` (name is a
// component) into a new FlagSet named "serve <name>". Once it is parsed,
// finish completes o with the flags declared by shared helpers and returns
// the order limits (the message and post limits it puts in o), or an
// error naming a limit that cannot work.
func serveFlags(name string) (fs *flag.FlagSet, o *serveOptions, finish func() (order.Limits, error)) {
	c := components[slices.IndexFunc(components, func(c component) bool { return c.name == name })]
	o = &serveOptions{component: name}
	fs = flag.NewFlagSet("serve "+name, flag.ContinueOnError)
	fs.StringVar(&o.addr, "addr", c.addr, "listen address (env SHOPBUS_ADDR)")
	natsURL := secretFlag(fs, "nats-url", "nats://127.0.0.1:4222", "NATS server or cluster `URL` (env NATS_URL)")
	databaseURL := secretFlag(fs, "database-url", postgres.DefaultURL, "PostgreSQL `URL` (env DATABASE_URL)")
	fs.StringVar(&o.schema, "schema", "shopbus", "prefix of the services' PostgreSQL schemas (env SHOPBUS_SCHEMA)")
	fs.BoolVar(&o.atomicBatches, "atomic-batches", false, "gateway: let the outbox relays publish a backlog in JetStream atomic batches, synced once each; every NATS server must run nats-server 2.14 or later (env SHOPBUS_ATOMIC_BATCHES)")
	fs.IntVar(&o.replicas, "replicas", 1, fmt.Sprintf("stream replicas, 1 to %d; 3 in a production cluster (env SHOPBUS_STREAM_REPLICAS)", maxReplicas))
	fs.IntVar(&o.partitions, "partitions", messaging.DefaultPartitions, fmt.Sprintf("partitions of each event stream, 1 to %d, fixed when the stream is created (env SHOPBUS_STREAM_PARTITIONS)", messaging.MaxPartitions))
	fs.StringVar(&o.orderURL, "order-url", "http://127.0.0.1:8081", "gateway only: the order service (env SHOPBUS_ORDER_URL)")
	fs.StringVar(&o.inventoryURL, "inventory-url", "http://127.0.0.1:8082", "gateway only: the inventory service (env SHOPBUS_INVENTORY_URL)")
	o.serviceURLs = map[string]*string{}
	for _, sc := range components {
		if apis := stack.APIs(sc.name); len(apis) > 0 && sc.name != "order" && sc.name != "inventory" {
			o.serviceURLs[sc.name] = fs.String(sc.name+"-url", "http://"+sc.addr,
				fmt.Sprintf("gateway only: the %s service, where it relays %s; empty for none (env SHOPBUS_%s_URL)", sc.name, strings.Join(apis, ", "), strings.ToUpper(sc.name)))
		}
	}
	o.auth = authFlags(fs)
	limitsOf := limitsFlags(fs)
	userLimitsOf := userLimitsFlags(fs)
	sagaOf := sagaFlags(fs)
	metricsAddr := metricsAddrFlag(fs, c.metricsAddr)
	fs.StringVar(&o.logLevel, "log-level", "info", "debug, info, warn or error (env SHOPBUS_LOG_LEVEL)")
	fs.StringVar(&o.natsCreds, "nats-creds", "", "NATS credentials `file` (JWT and seed, decentralized auth) (env NATS_CREDS)")
	fs.StringVar(&o.natsNkey, "nats-nkey", "", "NATS nkey seed `file` of this component's identity (env NATS_NKEY)")
	fs.StringVar(&o.natsCA, "nats-ca", "", "CA `file` to trust for NATS TLS (env NATS_CA)")
	fs.StringVar(&o.natsCert, "nats-cert", "", "client certificate `file` for NATS TLS (env NATS_CERT)")
	fs.StringVar(&o.natsKey, "nats-key", "", "client key `file` for NATS TLS (env NATS_KEY)")
	fs.StringVar(&o.tlsCert, "tls-cert", "", "serve over TLS (HTTP/2 and HTTP/1.1) with this certificate `file` (env SHOPBUS_TLS_CERT)")
	fs.StringVar(&o.tlsKey, "tls-key", "", "the TLS certificate's key `file` (env SHOPBUS_TLS_KEY)")
	if name == "gateway" {
		fs.StringVar(&o.serviceCA, "service-ca", "", "gateway only: CA `file` to trust for https --order-url and --inventory-url (env SHOPBUS_SERVICE_CA)")
	}
	fs.BoolVar(&o.insecure, "insecure", false, "serve without authentication: every caller is an admin and may act for any customer (a private network only; warned at every start)")
	origins := new(string)
	if name == "gateway" {
		origins = originsFlag(fs)
	}
	return fs, o, func() (order.Limits, error) {
		o.natsURL, o.databaseURL = *natsURL, *databaseURL
		o.metricsAddr, o.allowedOrigins = *metricsAddr, *origins
		var err error
		if o.watchdog, o.fraudModel, err = sagaOf(); err != nil {
			return order.Limits{}, err
		}
		if o.messageLimits, o.postLimits, err = userLimitsOf(); err != nil {
			return order.Limits{}, err
		}
		return limitsOf()
	}
}

// parseServe parses the arguments of `shopbus serve` (the component, then
// its flags), with the environment read through lookup, and checks the
// configuration without opening anything: a usageError names the first
// thing wrong. With -h it prints the usage and returns flag.ErrHelp.
func parseServe(args []string, lookup func(string) (string, bool)) (*serveOptions, error) {
	if len(args) == 0 {
		return nil, usagef("serve", "name a component: %s", componentNames())
	}
	if isHelp(args[0]) {
		serveUsage()
		return nil, flag.ErrHelp
	}
	if !slices.ContainsFunc(components, func(c component) bool { return c.name == args[0] }) {
		return nil, usagef("serve", "unknown component %q: want %s", args[0], componentNames())
	}
	fs, o, finish := serveFlags(args[0])
	if err := parseWith(fs, args[1:], lookup); err != nil {
		return nil, err
	}
	var err error
	if o.limits, err = finish(); err != nil {
		return nil, &usageError{cmd: fs.Name(), err: fmt.Errorf("%s: %w", fs.Name(), err)}
	}
	if err := o.validate(); err != nil {
		return nil, &usageError{cmd: fs.Name(), err: fmt.Errorf("%s: %w", fs.Name(), err)}
	}
	return o, nil
}

// validate reports a setting that cannot work, naming its flag.
func (o *serveOptions) validate() error {
	switch {
	case o.replicas < 1 || o.replicas > maxReplicas:
		return fmt.Errorf("--replicas %d: want 1 to %d", o.replicas, maxReplicas)
	case o.partitions < 1 || o.partitions > messaging.MaxPartitions:
		return fmt.Errorf("--partitions %d: want 1 to %d", o.partitions, messaging.MaxPartitions)
	case o.schema == "":
		return fmt.Errorf("--schema: want a name")
	case o.natsURL == "":
		return fmt.Errorf("--nats-url: want a URL")
	case (o.tlsCert == "") != (o.tlsKey == ""):
		return fmt.Errorf("--tls-cert and --tls-key: give both or neither")
	}
	if err := checkAddr("addr", o.addr); err != nil {
		return err
	}
	if o.metricsAddr != "" {
		if err := checkAddr("metrics-addr", o.metricsAddr); err != nil {
			return err
		}
	}
	if o.component == "gateway" {
		if err := checkURL("order-url", o.orderURL); err != nil {
			return err
		}
		if err := checkURL("inventory-url", o.inventoryURL); err != nil {
			return err
		}
		for _, name := range slices.Sorted(maps.Keys(o.serviceURLs)) {
			if u := *o.serviceURLs[name]; u != "" {
				if err := checkURL(name+"-url", u); err != nil {
					return err
				}
			}
		}
		if _, err := parseOrigins(o.allowedOrigins); err != nil {
			return err
		}
	} else if o.databaseURL == "" {
		return fmt.Errorf("--database-url: want a URL")
	}
	return checkLogLevel(o.logLevel)
}

// urls are the service URLs the gateway relays to, by component name.
func (o *serveOptions) urls() map[string]string {
	m := map[string]string{}
	for name, u := range o.serviceURLs {
		m[name] = *u
	}
	return m
}

func componentNames() string {
	var names []string
	for _, c := range components {
		names = append(names, c.name)
	}
	return strings.Join(names, ", ")
}

// serveUsage prints the usage of `shopbus serve` on stdout.
func serveUsage() {
	fmt.Fprintln(os.Stdout, "usage: shopbus serve <component> [flags]\n\nRuns one component against external NATS and PostgreSQL:")
	for _, c := range components {
		fmt.Fprintf(os.Stdout, "  %-10s %s (%s, metrics %s)\n", c.name, c.summary, c.addr, c.metricsAddr)
	}
	fmt.Fprintln(os.Stdout, "\nRun \"shopbus serve <component> -h\" for its flags.")
}

func serve(ctx context.Context, args []string) error {
	o, err := parseServe(args, os.LookupEnv)
	if err != nil {
		return err
	}
	component := o.component
	authCfg, err := o.auth()
	if err != nil {
		return err
	}
	origins, err := parseOrigins(o.allowedOrigins)
	if err != nil {
		return err
	}
	natsOpts, err := stack.NATSCredentials(o.natsCreds, o.natsNkey, o.natsCA, o.natsCert, o.natsKey)
	if err != nil {
		return err
	}
	switch {
	case o.insecure && (authCfg.Verifier != nil || authCfg.AdminToken != ""):
		return fmt.Errorf("serve %s: --insecure with --jwt-key or an admin token: choose one", component)
	case o.insecure:
		authCfg.Insecure = true
	case !authCfg.Enabled():
		return fmt.Errorf("serve %s: no authentication: give --jwt-key (SHOPBUS_JWT_KEY) to verify customers' bearer tokens and/or an admin token (SHOPBUS_ADMIN_TOKEN), or pass --insecure to serve everything open", component)
	}
	log, err := newLogger(o.logLevel)
	if err != nil {
		return err
	}
	telemetry.LogErrors(log)
	if authCfg.Insecure {
		log.Warn("--insecure: no authentication; anyone who reaches " + o.addr + " may place and read any customer's orders and call the admin procedures")
	}
	s, err := stack.Start(ctx, stack.Config{
		TLSCertFile: o.tlsCert, TLSKeyFile: o.tlsKey, ServiceCAFile: o.serviceCA,
		Components: []string{component}, NATSURL: o.natsURL, NATSOptions: natsOpts, DatabaseURL: o.databaseURL, Schema: o.schema, Addr: o.addr,
		Streams:  messaging.StreamOptions{Replicas: o.replicas, Partitions: o.partitions, AtomicBatches: o.atomicBatches},
		OrderURL: o.orderURL, InventoryURL: o.inventoryURL, ServiceURLs: o.urls(), AllowedOrigins: origins, Auth: authCfg, OrderLimits: o.limits, MessageLimits: o.messageLimits, PostLimits: o.postLimits, Watchdog: o.watchdog, FraudModelFile: o.fraudModel, MetricsAddr: o.metricsAddr, Log: log,
	})
	if err != nil {
		return err
	}
	defer s.Close()
	log.Info("serving", "component", component, "addr", s.URL(), "metrics", s.MetricsURL())
	return runUntilStopped(ctx, s)
}
