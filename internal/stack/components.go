package stack

import (
	"context"
	"slices"

	"github.com/shopbus/shopbus/gateway"
	"github.com/shopbus/shopbus/gen/go/shopbus/fraud/v1/fraudv1connect"
	"github.com/shopbus/shopbus/gen/go/shopbus/message/v1/messagev1connect"
	"github.com/shopbus/shopbus/gen/go/shopbus/post/v1/postv1connect"
	"github.com/shopbus/shopbus/gen/go/shopbus/telemetry/v1/telemetryv1connect"
	"github.com/shopbus/shopbus/internal/event"
	"github.com/shopbus/shopbus/internal/messaging"
	"github.com/shopbus/shopbus/internal/natsauth"
	"github.com/shopbus/shopbus/internal/servicekit"
	"github.com/shopbus/shopbus/services/fraud"
	"github.com/shopbus/shopbus/services/inventory"
	"github.com/shopbus/shopbus/services/message"
	"github.com/shopbus/shopbus/services/order"
	"github.com/shopbus/shopbus/services/post"
	"github.com/shopbus/shopbus/services/telemetry"
)

// component is a service the stack can run: `shopbus serve <name>` runs
// one, `shopbus dev` all of them. Everything the platform does for a
// service follows from its entry: its schema (<Schema>_<name>) and
// migrations, its NATS identity (named after it) and what that identity
// may publish (the events whose producer is "shopbus/<name>", from the
// event catalog) and consume, its consumer groups' buckets, its readiness
// and lag. `shopbus new service` adds an entry.
type component struct {
	// name is the service's name: lower-case letters. Its tables are
	// services.Migrations(name) (messaging.Migrations adds the outbox and
	// processed_events).
	name string
	// consumers are the consumers the service runs.
	consumers []messaging.ConsumerConfig
	// apis are the Connect services it serves by name
	// ("shopbus.message.v1.MessageService"): a gateway in another process
	// relays them to the service's URL (Config.ServiceURLs, gateway.Proxy).
	apis []string
	// build makes the service on rt: what runs it, and the Connect
	// services it serves (mounted by the gateway when it runs in the same
	// process, or served on the service's own address when alone).
	build func(s *Stack, rt servicekit.Runtime) (runner, []gateway.Service, error)
}

// runner runs a service until ctx is done.
type runner interface {
	Run(ctx context.Context) error
}

// components are every service shopbus has. Order and inventory are
// served through the gateway's typed fields (Stack.Orders,
// Stack.Inventory), which a gateway in another process also proxies.
var components = []component{
	{
		name:      "order",
		consumers: []messaging.ConsumerConfig{order.InventoryOutcomeConsumer(), order.FraudScoreConsumer()},
		build: func(s *Stack, rt servicekit.Runtime) (runner, []gateway.Service, error) {
			s.Orders = order.New(rt)
			s.Orders.Watchdog = s.cfg.Watchdog
			return s.Orders, nil, nil
		},
	},
	{
		name:      "inventory",
		consumers: []messaging.ConsumerConfig{inventory.ReserveStockConsumer()},
		build: func(s *Stack, rt servicekit.Runtime) (runner, []gateway.Service, error) {
			s.Inventory = inventory.New(rt)
			return s.Inventory, nil, nil
		},
	},
	{
		name:      "fraud",
		apis:      []string{fraudv1connect.FraudServiceName},
		consumers: []messaging.ConsumerConfig{fraud.ScoreOrderConsumer()},
		build: func(s *Stack, rt servicekit.Runtime) (runner, []gateway.Service, error) {
			model, err := fraud.DefaultModel()
			if s.cfg.FraudModelFile != "" {
				model, err = fraud.LoadModelFile(s.cfg.FraudModelFile)
			}
			if err != nil {
				return nil, nil, err
			}
			s.Fraud = fraud.New(rt, model)
			path, h := fraudv1connect.NewFraudServiceHandler(fraud.NewHandler(s.Fraud), gateway.HandlerOptions(s.cfg.Auth, s.Telemetry)...)
			return s.Fraud, []gateway.Service{{Name: fraudv1connect.FraudServiceName, Path: path, Handler: h}}, nil
		},
	},
	{
		name:      "message",
		apis:      []string{messagev1connect.MessageServiceName},
		consumers: []messaging.ConsumerConfig{message.MessageSentConsumer()},
		build: func(s *Stack, rt servicekit.Runtime) (runner, []gateway.Service, error) {
			svc := message.New(rt)
			if err := svc.SetLimits(s.cfg.MessageLimits); err != nil {
				return nil, nil, err
			}
			path, h := messagev1connect.NewMessageServiceHandler(message.NewHandler(svc), gateway.HandlerOptions(s.cfg.Auth, s.Telemetry)...)
			return svc, []gateway.Service{{Name: messagev1connect.MessageServiceName, Path: path, Handler: h}}, nil
		},
	},
	{
		name:      "telemetry",
		apis:      []string{telemetryv1connect.TelemetryServiceName},
		consumers: []messaging.ConsumerConfig{telemetry.RollupConsumer()},
		build: func(s *Stack, rt servicekit.Runtime) (runner, []gateway.Service, error) {
			svc := telemetry.New(rt)
			path, h := telemetryv1connect.NewTelemetryServiceHandler(telemetry.NewHandler(svc), gateway.HandlerOptions(s.cfg.Auth, s.Telemetry)...)
			return svc, []gateway.Service{{Name: telemetryv1connect.TelemetryServiceName, Path: path, Handler: h}}, nil
		},
	},
	{
		name:      "post",
		apis:      []string{postv1connect.PostServiceName},
		consumers: []messaging.ConsumerConfig{post.FanOutConsumer(), post.CatalogConsumer()},
		build: func(s *Stack, rt servicekit.Runtime) (runner, []gateway.Service, error) {
			svc := post.New(rt)
			if err := svc.SetLimits(s.cfg.PostLimits); err != nil {
				return nil, nil, err
			}
			path, h := postv1connect.NewPostServiceHandler(post.NewHandler(svc), gateway.HandlerOptions(s.cfg.Auth, s.Telemetry)...)
			return svc, []gateway.Service{{Name: postv1connect.PostServiceName, Path: path, Handler: h}}, nil
		},
	},
	// shopbus new service: new components go above this line.
}

// Components are the names of the services a stack can run, for `shopbus
// serve` (with "gateway", which is not a service).
func Components() []string {
	names := make([]string, 0, len(components))
	for _, c := range components {
		names = append(names, c.name)
	}
	return names
}

// APIs are the Connect services the service name serves, or nil.
func APIs(name string) []string {
	for _, c := range components {
		if c.name == name {
			return slices.Clone(c.apis)
		}
	}
	return nil
}

// Consumers are the consumers the service name runs, as its entry declares
// them, or nil for a name that is not a component. The event catalog
// (tools/contractgen, docs/catalog) derives each event's consumers from
// them.
func Consumers(name string) []messaging.ConsumerConfig {
	for _, c := range components {
		if c.name == name {
			return slices.Clone(c.consumers)
		}
	}
	return nil
}

// runsAnyService reports whether the stack runs at least one service.
func (c Config) runsAnyService() bool {
	return slices.ContainsFunc(components, func(comp component) bool { return c.runs(comp.name) })
}

// identity is the component's NATS identity.
func (c component) identity() natsauth.Identity { return natsauth.Identity(c.name) }

// grants are what the component's identity may publish and use: the
// subjects of its events and its own stream's dead letters; the streams it
// consumes; its groups' buckets.
func (c component) grants() natsauth.Grants {
	var g natsauth.Grants
	for _, spec := range event.Catalog() {
		if spec.Producer == "shopbus/"+c.name {
			g.Publish = append(g.Publish, spec.Subject()+".>",
				// The dead letters of its outbox rows that cannot be
				// published (deadletter.OutboxFiler).
				"shopbus.dlq."+messaging.StreamName(spec.Domain, spec.Context)+".>")
		}
	}
	for _, cc := range c.consumers {
		g.Streams = append(g.Streams, cc.Stream)
		g.Buckets = append(g.Buckets, messaging.GroupBucket(cc.Durable))
	}
	g.Publish = slices.Compact(slices.Sorted(slices.Values(g.Publish)))
	return g
}
