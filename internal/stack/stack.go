// Package stack wires shopbus together: NATS (an embedded nats-server or an
// external cluster), the JetStream topology, PostgreSQL, the order and
// inventory services and the gateway. `shopbus dev` runs it all in one
// process; the end-to-end tests start it the same way.
package stack

import (
	"cmp"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"go.opentelemetry.io/otel/metric"
	"golang.org/x/sync/errgroup"

	"github.com/shopbus/shopbus/gateway"
	"github.com/shopbus/shopbus/internal/auth"
	"github.com/shopbus/shopbus/internal/deadletter"
	"github.com/shopbus/shopbus/internal/groups"
	"github.com/shopbus/shopbus/internal/health"
	"github.com/shopbus/shopbus/internal/lag"
	"github.com/shopbus/shopbus/internal/messaging"
	"github.com/shopbus/shopbus/internal/natsauth"
	"github.com/shopbus/shopbus/internal/natsembed"
	"github.com/shopbus/shopbus/internal/postgres"
	"github.com/shopbus/shopbus/internal/servicekit"
	"github.com/shopbus/shopbus/internal/telemetry"
	"github.com/shopbus/shopbus/services"
	"github.com/shopbus/shopbus/services/fraud"
	"github.com/shopbus/shopbus/services/inventory"
	"github.com/shopbus/shopbus/services/message"
	"github.com/shopbus/shopbus/services/order"
	"github.com/shopbus/shopbus/services/post"
)

// Config configures a stack.
type Config struct {
	// DataDir holds the embedded nats-server's store (DataDir/nats).
	DataDir string
	// NATSURL, when set, is an external NATS server used instead of the
	// embedded one.
	NATSURL string
	// NATSOptions are more options of the connection to NATSURL: its
	// credentials and TLS (see NATSCredentials).
	NATSOptions []nats.Option
	// NATSPort is the embedded server's client port (0: a free one).
	NATSPort int
	// NATSMonitorPort, when not 0, is the embedded server's HTTP
	// monitoring port (-1: a free one).
	NATSMonitorPort int
	// NATSNoSync turns off the embedded server's fsync before each
	// acknowledgement (for measuring its cost only).
	NATSNoSync bool
	// NATSKeysDir, when set with the embedded server, closes it to anyone
	// but natsauth's identities, whose seeds are kept there: the order and
	// inventory services each connect as their own (publishing only their
	// own events), everything else as the platform identity.
	NATSKeysDir string
	// DatabaseURL is the PostgreSQL server (postgres.DefaultURL).
	DatabaseURL string
	// Schema prefixes the services' schemas: <Schema>_order and
	// <Schema>_inventory.
	Schema string
	// Addr is the gateway's listen address.
	Addr string
	// Streams configures every stream.
	Streams messaging.StreamOptions
	// Retry is the consumers' retry policy (messaging.DefaultRetry when
	// zero).
	Retry messaging.RetryPolicy
	// AllowedOrigins are the gateway's CORS origins.
	AllowedOrigins []string
	// OrderLimits hold each customer to a CreateOrder rate and to units
	// per line and per order (order.DefaultLimits where zero).
	OrderLimits order.Limits
	// MessageLimits hold each user to a SendMessage rate
	// (message.DefaultLimits where zero).
	MessageLimits message.Limits
	// PostLimits hold each user to a PublishPost rate and a
	// FollowUser/UnfollowUser rate (post.DefaultLimits where zero).
	PostLimits post.Limits
	// Watchdog configures the order service's search for orders stuck in
	// PENDING and its fraud deadline (order.DefaultWatchdog where zero).
	Watchdog order.Watchdog
	// FraudModelFile, when set, is the fraud service's coefficients file
	// (services/fraud/MODEL.md); the committed model otherwise.
	FraudModelFile string
	// Auth authenticates the callers of every RPC (see gateway.Config). It
	// must say how: a verifier of bearer tokens, an admin token, or
	// Insecure.
	Auth auth.Config
	// TLSCertFile and TLSKeyFile, when set, make the stack serve its port
	// over TLS (HTTP/2 and HTTP/1.1) with this certificate.
	TLSCertFile, TLSKeyFile string
	// ServiceCAFile, when set, is the CA a gateway trusts for https
	// OrderURL and InventoryURL (the system's roots otherwise).
	ServiceCAFile string
	// Components lists what runs here: "gateway" and services ("order",
	// "inventory" …; Components()), every one when empty. Without "gateway", the one service listed
	// serves its own Connect API on Addr.
	Components []string
	// OrderURL and InventoryURL are where the gateway finds a service that
	// does not run here (distributed mode).
	OrderURL, InventoryURL string
	// ServiceURLs are where the gateway finds the other services that do
	// not run here, by component name ("message": "http://message:8084"):
	// it relays their APIs there (gateway.Proxy). A service with no URL is
	// not served by the gateway.
	ServiceURLs map[string]string
	// Telemetry receives metrics and spans; when nil, Start makes one with
	// metrics on and traces as the OTEL_* environment says.
	Telemetry *telemetry.Telemetry
	// MetricsAddr, when set, is where /metrics is served (Prometheus text
	// format); "" serves none.
	MetricsAddr string
	// TopologyEvery is how often a stack with the platform identity
	// declares the topology again (10 s when zero).
	TopologyEvery time.Duration
	// Lag configures the lag monitor (lag.Options).
	Lag lag.Options
	// Log is the logger.
	Log *slog.Logger
}

func (c Config) runs(component string) bool {
	return len(c.Components) == 0 || slices.Contains(c.Components, component)
}

// Stack is a running shopbus.
type Stack struct {
	cfg  Config
	NATS *server.Server // nil with an external NATS
	Conn *nats.Conn
	JS   jetstream.JetStream
	// Keys are the NATS identities when the embedded server is closed
	// (Config.NATSKeysDir).
	Keys      *natsauth.Keys
	conns     []*nats.Conn // the services' own, with Keys
	Orders    *order.Service
	Inventory *inventory.Service
	Fraud     *fraud.Service
	// Pools are the services' pools: for each, its RPCs' and its event
	// path's.
	Pools    []*pgxpool.Pool
	Listener net.Listener
	Server   *http.Server
	// Telemetry is the stack's; Monitor watches the consumer groups and
	// Health answers readiness.
	Telemetry *telemetry.Telemetry
	Monitor   *lag.Monitor
	Health    *health.Checker
	// MetricsListener serves /metrics when Config.MetricsAddr is set.
	MetricsListener net.Listener

	runners  []runner                   // the services run here
	services []gateway.Service          // the Connect services they serve, beside Orders and Inventory
	own      []messaging.ConsumerConfig // their consumers

	ownTelemetry bool
	metrics      *http.Server
	deadLetters  *deadletter.Metrics
	unregister   []func() error
}

// Start connects everything and declares the topology; Run then serves.
// On error, what was started is stopped.
func Start(ctx context.Context, cfg Config) (_ *Stack, err error) {
	if cfg.Log == nil {
		cfg.Log = slog.Default()
	}
	if cfg.DatabaseURL == "" {
		cfg.DatabaseURL = postgres.DefaultURL
	}
	if cfg.Schema == "" {
		cfg.Schema = "shopbus"
	}
	if !cfg.Auth.Enabled() {
		return nil, errors.New("stack: no authentication: configure a token verifier or an admin token, or say Insecure")
	}
	s := &Stack{cfg: cfg, Telemetry: cfg.Telemetry, Health: health.NewChecker(cfg.Log)}
	defer func() {
		if err != nil {
			s.Close()
		}
	}()
	if s.Telemetry == nil {
		service := "shopbus"
		if len(cfg.Components) > 0 {
			service += "-" + strings.Join(cfg.Components, "-")
		}
		s.Telemetry, err = telemetry.New(ctx, telemetry.Options{Service: service})
		if err != nil {
			return nil, err
		}
		s.ownTelemetry = true
	}
	if cfg.runsAnyService() || cfg.NATSURL != "" {
		if err := s.connectNATS(ctx); err != nil {
			return nil, err
		}
	}
	if err := s.startServices(ctx); err != nil {
		return nil, err
	}
	if err := s.startMonitor(); err != nil {
		return nil, err
	}
	gw := gateway.Config{AllowedOrigins: cfg.AllowedOrigins, Auth: cfg.Auth, Telemetry: s.Telemetry, Health: s.Health, Services: s.services}
	if s.JS != nil && cfg.runs("gateway") {
		// Admin APIs: only the gateway serves them.
		store := deadletter.NewStore(s.JS)
		gw.DeadLetters = deadletter.NewHandler(store, cfg.Log)
		var reg metric.Registration
		s.deadLetters, reg, err = deadletter.NewMetrics(store, s.Telemetry, cfg.Lag.Interval, cfg.Log)
		if err != nil {
			return nil, err
		}
		s.unregister = append(s.unregister, reg.Unregister)
		gw.Groups = groups.NewHandler(s.JS, cfg.Log)
		gw.Lag = lag.NewHandler(s.Monitor)
	}
	if s.Orders != nil {
		if gw.Orders, err = order.NewHandler(s.Orders, cfg.OrderLimits); err != nil {
			return nil, err
		}
	}
	if s.Inventory != nil {
		gw.Inventory = inventory.NewHandler(s.Inventory)
	}
	if cfg.runs("gateway") {
		client, err := serviceClient(cfg.ServiceCAFile)
		if err != nil {
			return nil, err
		}
		remoteOrders, remoteInventory := gateway.Remote(client, cfg.OrderURL, cfg.InventoryURL, s.Telemetry, cfg.Log)
		if gw.Orders == nil {
			gw.Orders = remoteOrders
		}
		if gw.Inventory == nil {
			gw.Inventory = remoteInventory
		}
		tc, err := serviceTLS(cfg.ServiceCAFile)
		if err != nil {
			return nil, err
		}
		for _, c := range components {
			base := cfg.ServiceURLs[c.name]
			if cfg.runs(c.name) || base == "" {
				continue
			}
			for _, api := range c.apis {
				p, err := gateway.Proxy(api, base, tc, cfg.Log)
				if err != nil {
					return nil, err
				}
				gw.Services = append(gw.Services, p)
			}
		}
	}
	s.Listener, err = net.Listen("tcp", cfg.Addr)
	if err != nil {
		return nil, fmt.Errorf("listen on %s: %w", cfg.Addr, err)
	}
	s.Server = gateway.NewServer(s.Listener.Addr().String(), gateway.Handler(gw))
	if (cfg.TLSCertFile == "") != (cfg.TLSKeyFile == "") {
		return nil, errors.New("tls: a certificate needs both its certificate and its key file")
	}
	if cfg.TLSCertFile != "" {
		cert, err := tls.LoadX509KeyPair(cfg.TLSCertFile, cfg.TLSKeyFile)
		if err != nil {
			return nil, fmt.Errorf("tls: certificate %s and key %s: %w", cfg.TLSCertFile, cfg.TLSKeyFile, err)
		}
		s.Server.TLSConfig = &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
		s.Server.Protocols.SetHTTP2(true)
	}
	if cfg.MetricsAddr != "" {
		s.MetricsListener, err = net.Listen("tcp", cfg.MetricsAddr)
		if err != nil {
			return nil, fmt.Errorf("metrics: listen on %s: %w", cfg.MetricsAddr, err)
		}
		mux := http.NewServeMux()
		mux.Handle("GET /metrics", s.Telemetry.Handler())
		s.metrics = &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second, WriteTimeout: 30 * time.Second}
	}
	return s, nil
}

// startMonitor starts watching the consumer groups and builds readiness:
// every pool reaches PostgreSQL, NATS is connected and JetStream answers,
// and the consumers of the services run here are neither STOP nor ERR. The
// monitor watches only those consumers, or every group where the gateway
// runs (it serves LagService).
func (s *Stack) startMonitor() error {
	seen := map[string]bool{}
	for _, p := range s.Pools {
		name := p.Config().ConnConfig.RuntimeParams["search_path"]
		if seen[name] {
			name += " (event path)" // the second pool of a schema
		}
		seen[name] = true
		s.Health.Add(health.Postgres(name, p))
	}
	if s.JS == nil {
		return nil
	}
	s.Health.Add(health.NATS(s.Conn, s.JS))
	var own []string
	for _, c := range s.own {
		own = append(own, c.Durable)
	}
	opts := s.cfg.Lag
	// A process that runs services watches and exports only their groups;
	// a gateway alone watches every group for the LagService and exports
	// nothing, so no figure is exported twice.
	tel := s.Telemetry
	switch {
	case len(own) > 0:
		opts.Groups = own
	case !s.cfg.runs("gateway"):
		return nil
	default:
		tel = nil
	}
	if len(own) > 0 && s.cfg.runs("gateway") {
		opts.Groups = nil // all in one: every group is its own
	}
	var err error
	s.Monitor, err = lag.NewMonitor(s.JS, tel, opts, s.cfg.Log)
	if err != nil {
		return err
	}
	s.unregister = append(s.unregister, s.Monitor.Close)
	if len(own) > 0 {
		s.Health.Add(health.Check{Name: "consumers", Func: s.Monitor.Check(own...)})
	}
	return nil
}

// connectNATS connects to NATS (starting the embedded server when no URL is
// given). Where services run, it declares the event streams and the
// dead-letter queue; a gateway alone uses them as they are.
func (s *Stack) connectNATS(ctx context.Context) (err error) {
	if s.cfg.NATSURL == "" {
		// The embedded server (go.mod's) has atomic batches.
		s.cfg.Streams.AtomicBatches = true
	}
	cfg := s.cfg
	if cfg.NATSURL == "" {
		var users []*server.NkeyUser
		if cfg.NATSKeysDir != "" {
			if s.Keys, err = natsauth.LoadOrCreate(cfg.NATSKeysDir); err != nil {
				return err
			}
			if users, err = NATSUsers(s.Keys); err != nil {
				return err
			}
		}
		s.NATS, err = natsembed.Start(natsembed.Options{StoreDir: filepath.Join(cfg.DataDir, "nats"), Port: cfg.NATSPort, MonitorPort: cfg.NATSMonitorPort, NoSync: cfg.NATSNoSync, Users: users})
		if err != nil {
			return err
		}
		s.Conn, err = s.connectEmbedded(natsauth.Platform)
	} else {
		opts := []nats.Option{nats.Name("shopbus"), nats.MaxReconnects(-1)}
		if len(cfg.Components) == 1 && !cfg.runs("gateway") {
			// A service alone: its identity (natsauth's, named after
			// it) may subscribe to its own inboxes only.
			opts = append(opts, nats.CustomInboxPrefix(natsauth.InboxPrefix(natsauth.Identity(cfg.Components[0]))))
		}
		s.Conn, err = nats.Connect(cfg.NATSURL, append(opts, cfg.NATSOptions...)...)
		// A URL that does not parse is quoted whole in the error, with
		// any password or token it carries: say what is wrong without it.
		if urlErr := (*url.Error)(nil); errors.As(err, &urlErr) {
			err = fmt.Errorf("the NATS URL (not shown: it may hold a secret) does not parse: %w", urlErr.Err)
		}
	}
	if err != nil {
		return fmt.Errorf("nats: %w", err)
	}
	if err := checkServerVersion(s.Conn.ConnectedServerVersion()); err != nil {
		return err
	}
	s.JS, err = messaging.NewJetStream(s.Conn)
	if err != nil {
		return fmt.Errorf("jetstream: %w", err)
	}
	if s.platform() {
		return DeclareTopology(ctx, s.JS, cfg.Streams)
	}
	// A service connected as its own identity may not declare streams:
	// they are used as they are when current, declared when missing
	// where the server lets it (no identities).
	// Whether the streams take atomic batches is the platform's to say;
	// a service's relay reads it from them.
	streams := cfg.Streams
	streams.AtomicBatches = false
	if err := messaging.EnsureStreams(ctx, s.JS, streams); err != nil {
		return fmt.Errorf("%w (with its own NATS identity a service cannot declare streams: start the gateway, which declares them, first)", err)
	}
	if err := deadletter.Ensure(ctx, s.JS, deadletter.Options{Replicas: cfg.Streams.Replicas}); err != nil {
		return fmt.Errorf("%w (with its own NATS identity a service cannot declare streams: start the gateway, which declares them, first)", err)
	}
	return nil
}

// platform reports whether the stack's own NATS connection (JS) is the
// platform identity's: the embedded server's, or a gateway's.
func (s *Stack) platform() bool { return s.NATS != nil || s.cfg.runs("gateway") }

// topologyEvery is how often the platform declares the topology again.
const topologyEvery = 10 * time.Second

// DeclareTopology declares, on js (the platform identity, which may), the
// event streams, the dead-letter streams and the services' consumer group
// buckets, creating what is missing and updating what changed.
func DeclareTopology(ctx context.Context, js jetstream.JetStream, streams messaging.StreamOptions) error {
	if err := messaging.EnsureStreams(ctx, js, streams); err != nil {
		return err
	}
	if err := deadletter.Ensure(ctx, js, deadletter.Options{Replicas: streams.Replicas}); err != nil {
		return err
	}
	for _, comp := range components {
		for _, c := range comp.consumers {
			if err := messaging.EnsureGroupBucket(ctx, js, c); err != nil {
				return err
			}
		}
	}
	return nil
}

// MinNATSVersion is the oldest nats-server shopbus runs on: consumers with
// several filter subjects (2.10), and the consumer groups' buckets with
// per-message TTLs and delete markers (2.11).
const MinNATSVersion = "2.11.0"

// checkServerVersion refuses a server older than MinNATSVersion at
// connect, naming both, before anything is declared on it.
func checkServerVersion(v string) error {
	atLeast, ok := messaging.VersionAtLeast(v, MinNATSVersion)
	if !ok {
		return fmt.Errorf("nats: the server reports version %q; shopbus needs nats-server %s or later", v, MinNATSVersion)
	}
	if !atLeast {
		return fmt.Errorf("nats: the server is nats-server %s; shopbus needs %s or later (consumer groups and several filter subjects per consumer)", v, MinNATSVersion)
	}
	return nil
}

// NATSUsers are the users a NATS server closed to shopbus's identities
// knows: each identity of k with its permissions (natsauth), the services'
// with their consumer groups' buckets.
func NATSUsers(k *natsauth.Keys) ([]*server.NkeyUser, error) {
	grants := map[natsauth.Identity]natsauth.Grants{}
	for _, c := range components {
		grants[c.identity()] = c.grants()
	}
	return k.Users(grants)
}

// NATSCredentials returns the connection options for an external NATS:
// the identity in a creds file (decentralized JWT auth) or an nkey seed
// file (natsauth's), and TLS: a CA to trust, and a client certificate and
// key. Empty arguments add nothing; a file that cannot be read is an error
// when the connection is made, naming the option.
func NATSCredentials(credsFile, nkeyFile, caFile, certFile, keyFile string) ([]nats.Option, error) {
	var opts []nats.Option
	if credsFile != "" && nkeyFile != "" {
		return nil, errors.New("nats: give a creds file or an nkey seed file, not both")
	}
	if credsFile != "" {
		opts = append(opts, nats.UserCredentials(credsFile))
	}
	if nkeyFile != "" {
		o, err := nats.NkeyOptionFromSeed(nkeyFile)
		if err != nil {
			return nil, fmt.Errorf("nats: nkey seed file %s: %w", nkeyFile, err)
		}
		opts = append(opts, o)
	}
	if caFile != "" {
		opts = append(opts, nats.RootCAs(caFile))
	}
	if (certFile == "") != (keyFile == "") {
		return nil, errors.New("nats: a client certificate needs both its certificate and its key file")
	}
	if certFile != "" {
		opts = append(opts, nats.ClientCert(certFile, keyFile))
	}
	return opts, nil
}

// connectEmbedded connects to the embedded server in process, as id when
// the server is closed to anyone else.
func (s *Stack) connectEmbedded(id natsauth.Identity) (*nats.Conn, error) {
	opts := []nats.Option{nats.InProcessServer(s.NATS), nats.Name("shopbus " + string(id)), nats.MaxReconnects(-1)}
	if s.Keys != nil {
		o, err := s.Keys.Option(id)
		if err != nil {
			return nil, err
		}
		opts = append(opts, o)
	}
	return nats.Connect(s.NATS.ClientURL(), opts...)
}

// jsFor returns the JetStream a service uses: on a connection of its own
// identity's on a closed embedded server, the stack's otherwise.
func (s *Stack) jsFor(id natsauth.Identity) (jetstream.JetStream, error) {
	if s.Keys == nil {
		return s.JS, nil
	}
	nc, err := s.connectEmbedded(id)
	if err != nil {
		return nil, fmt.Errorf("nats: connect as %s: %w", id, err)
	}
	s.conns = append(s.conns, nc)
	js, err := messaging.NewJetStream(nc)
	if err != nil {
		return nil, fmt.Errorf("jetstream: %w", err)
	}
	return js, nil
}

// startServices opens the PostgreSQL schemas and builds the services this
// stack runs.
func (s *Stack) startServices(ctx context.Context) error {
	for _, c := range components {
		if !s.cfg.runs(c.name) {
			continue
		}
		rt, err := s.runtime(ctx, c.name, c.identity())
		if err != nil {
			return err
		}
		r, services, err := c.build(s, rt)
		if err != nil {
			return err
		}
		s.runners = append(s.runners, r)
		s.services = append(s.services, services...)
		s.own = append(s.own, c.consumers...)
	}
	return nil
}

// runtime makes the Runtime of the service name: its two pools on the
// schema <Schema>_<name>, migrated with its migrations (services.Migrations); its JetStream, on its
// own NATS identity when the server is closed; dead-lettering into the DLQ;
// the stack's retry policy and telemetry.
func (s *Stack) runtime(ctx context.Context, name string, id natsauth.Identity) (servicekit.Runtime, error) {
	schema := s.cfg.Schema + "_" + name
	pool, events, err := s.open(ctx, schema, services.Migrations(name))
	if err != nil {
		return servicekit.Runtime{}, err
	}
	js, err := s.jsFor(id)
	if err != nil {
		return servicekit.Runtime{}, err
	}
	rt := servicekit.NewRuntime(name, pool, js, schema, s.cfg.Log)
	rt.EventPool = events
	rt.Telemetry = s.Telemetry
	rt.Retry = s.cfg.Retry
	rt.DeadLetter = deadletter.Filer(js)
	rt.Unpublishable = deadletter.OutboxFiler(js)
	return rt, nil
}

// open connects a service's two pools to its schema, creating the database
// if needed and applying the messaging tables and the service's
// migrations: one for its RPCs, one for its event path (relay, consumer,
// LISTEN), so that neither can take all the connections the other needs.
func (s *Stack) open(ctx context.Context, schema string, migrations fs.FS) (rpc, events *pgxpool.Pool, err error) {
	rpc, err = postgres.Open(ctx, s.cfg.DatabaseURL, schema, true, messaging.Migrations(), migrations)
	if err != nil {
		return nil, nil, err
	}
	s.Pools = append(s.Pools, rpc)
	events, err = postgres.Open(ctx, s.cfg.DatabaseURL, schema, false)
	if err != nil {
		return nil, nil, err
	}
	s.Pools = append(s.Pools, events)
	return rpc, events, nil
}

// URL is the gateway's base URL.
func (s *Stack) URL() string {
	if s.cfg.TLSCertFile != "" {
		return "https://" + s.Listener.Addr().String()
	}
	return "http://" + s.Listener.Addr().String()
}

// serviceClient is the gateway's HTTP client for the services: with caFile,
// one that trusts it for https URLs (HTTP/2 over TLS); otherwise Go's
// default (the system's roots).
func serviceClient(caFile string) (*http.Client, error) {
	if caFile == "" {
		return http.DefaultClient, nil
	}
	tc, err := serviceTLS(caFile)
	if err != nil {
		return nil, err
	}
	return &http.Client{Transport: &http.Transport{
		TLSClientConfig:   tc,
		ForceAttemptHTTP2: true, MaxIdleConnsPerHost: 64,
	}}, nil
}

// serviceTLS is the TLS configuration a gateway reaches https services
// with: trusting caFile's CA, or the system's roots when caFile is "".
func serviceTLS(caFile string) (*tls.Config, error) {
	if caFile == "" {
		return &tls.Config{MinVersion: tls.VersionTLS12}, nil
	}
	pem, err := os.ReadFile(caFile)
	if err != nil {
		return nil, fmt.Errorf("tls: service CA: %w", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		return nil, fmt.Errorf("tls: service CA %s holds no PEM certificate", caFile)
	}
	return &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}, nil
}

// Run serves until ctx is done, then stops gracefully: the gateway stops
// accepting requests and waits up to ShutdownTimeout for those in flight,
// and consumers finish the message in hand (each bounded by the consumer's
// handler timeout, 20s).
func (s *Stack) Run(ctx context.Context) error {
	g, gctx := errgroup.WithContext(ctx)
	for _, r := range s.runners {
		g.Go(func() error { return r.Run(gctx) })
	}
	if s.JS != nil && s.platform() {
		// The dead-letter collector runs where the platform identity is
		// (it reads every stream and writes every dead letter); instances
		// share its durable consumer. The topology is declared again
		// every topologyEvery, so what a NATS restart lost (the groups'
		// memory buckets) comes back, which a service's identity may not
		// do itself.
		g.Go(func() error {
			if err := deadletter.NewCollector(s.JS, s.cfg.Log).Run(gctx); !errors.Is(err, context.Canceled) {
				return err
			}
			return nil
		})
		g.Go(func() error {
			t := time.NewTicker(cmp.Or(s.cfg.TopologyEvery, topologyEvery))
			defer t.Stop()
			for {
				select {
				case <-gctx.Done():
					return nil
				case <-t.C:
					if err := DeclareTopology(gctx, s.JS, s.cfg.Streams); err != nil && gctx.Err() == nil {
						s.cfg.Log.Warn("could not declare the topology again; retrying", "err", err)
					}
				}
			}
		})
	}
	if s.Monitor != nil {
		g.Go(func() error {
			_ = s.Monitor.Run(gctx)
			return nil
		})
	}
	if s.deadLetters != nil {
		g.Go(func() error {
			_ = s.deadLetters.Run(gctx)
			return nil
		})
	}
	g.Go(func() error {
		serve := func() error { return s.Server.Serve(s.Listener) }
		if s.cfg.TLSCertFile != "" { // (Serve fills TLSConfig in for HTTP/2 itself)
			serve = func() error { return s.Server.ServeTLS(s.Listener, "", "") }
		}
		if err := serve(); !errors.Is(err, http.ErrServerClosed) {
			return fmt.Errorf("gateway: %w", err)
		}
		return nil
	})
	if s.metrics != nil {
		g.Go(func() error {
			if err := s.metrics.Serve(s.MetricsListener); !errors.Is(err, http.ErrServerClosed) {
				return fmt.Errorf("metrics: %w", err)
			}
			return nil
		})
	}
	g.Go(func() error {
		<-gctx.Done()
		shutdownCtx, cancel := context.WithTimeout(context.Background(), ShutdownTimeout)
		defer cancel()
		if s.metrics != nil {
			_ = s.metrics.Close()
		}
		return s.Server.Shutdown(shutdownCtx)
	})
	return g.Wait()
}

// ShutdownTimeout bounds how long the gateway waits for requests in flight
// when stopping.
const ShutdownTimeout = 10 * time.Second

// MetricsURL is the URL of /metrics, or "" when none is served.
func (s *Stack) MetricsURL() string {
	if s.MetricsListener == nil {
		return ""
	}
	return "http://" + s.MetricsListener.Addr().String() + "/metrics"
}

// Close releases connections and stops the embedded server.
func (s *Stack) Close() {
	for _, f := range s.unregister {
		_ = f() // a closed stack stops reporting, even on a Telemetry it does not own
	}
	if s.MetricsListener != nil {
		s.MetricsListener.Close()
	}
	if s.ownTelemetry {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		_ = s.Telemetry.Shutdown(ctx) // flushes spans still to export
		cancel()
	}
	for _, p := range s.Pools {
		p.Close()
	}
	for _, nc := range s.conns {
		nc.Close()
	}
	if s.Conn != nil {
		s.Conn.Close()
	}
	if s.NATS != nil {
		s.NATS.Shutdown()
		s.NATS.WaitForShutdown()
	}
}
