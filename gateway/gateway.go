// Package gateway is shopbus's client-facing façade: one HTTP port that
// serves OrderService, InventoryService and the admin DeadLetterService,
// GroupService and LagService over Connect, gRPC and gRPC-Web (HTTP/1.1 and
// cleartext HTTP/2), with request validation, OpenTelemetry metrics and
// traces per procedure (otelconnect, honouring an incoming traceparent),
// authentication by bearer token and the admin role (internal/auth),
// gRPC health and HTTP /healthz and /readyz, gRPC server reflection (so buf
// curl and grpcurl need no local protos) and CORS for browser clients.
//
// The services behind it are any implementation of the generated handler
// interfaces: the services themselves, mounted in process (all-in-one mode),
// or their generated Connect clients (distributed mode, see Remote).
package gateway

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"time"

	"connectrpc.com/connect"
	"connectrpc.com/grpchealth"
	"connectrpc.com/grpcreflect"
	"connectrpc.com/otelconnect"
	"connectrpc.com/validate"
	"github.com/rs/cors"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/reflect/protoregistry"

	"github.com/shopbus/shopbus/gen/go/shopbus/deadletter/v1/deadletterv1connect"
	"github.com/shopbus/shopbus/gen/go/shopbus/group/v1/groupv1connect"
	"github.com/shopbus/shopbus/gen/go/shopbus/inventory/v1/inventoryv1connect"
	"github.com/shopbus/shopbus/gen/go/shopbus/lag/v1/lagv1connect"
	"github.com/shopbus/shopbus/gen/go/shopbus/order/v1/orderv1connect"
	"github.com/shopbus/shopbus/internal/auth"
	"github.com/shopbus/shopbus/internal/health"
	"github.com/shopbus/shopbus/internal/telemetry"
)

// Config says what the gateway serves.
type Config struct {
	// Orders serves OrderService.
	Orders orderv1connect.OrderServiceHandler
	// Inventory serves InventoryService.
	Inventory inventoryv1connect.InventoryServiceHandler
	// DeadLetters serves DeadLetterService (admin).
	DeadLetters deadletterv1connect.DeadLetterServiceHandler
	// Groups serves GroupService (admin): the consumer groups, their
	// members and partitions.
	Groups groupv1connect.GroupServiceHandler
	// Lag serves LagService (admin): each consumer group's lag and status.
	Lag lagv1connect.LagServiceHandler
	// Telemetry records a span and the rpc.server.call.duration metric of
	// every call (none when nil).
	Telemetry *telemetry.Telemetry
	// Health answers readiness (gRPC health, /readyz); without it the
	// gateway is ready whenever it answers.
	Health *health.Checker
	// Services mounts more Connect services: path prefix → handler, with
	// their fully-qualified names for health and reflection.
	Services []Service
	// AllowedOrigins are the browser origins allowed by CORS ("*" for any);
	// none when empty: the gateway then sends no CORS headers at all.
	AllowedOrigins []string
	// Auth authenticates every call (bearer tokens) and keeps the admin
	// procedures (IsAdmin) to the admin role. A zero Auth refuses every
	// call: authentication is off only with Auth.Insecure.
	Auth auth.Config
}

// Service is one more Connect service for the gateway to mount.
type Service struct {
	// Name is the fully-qualified service name, "pkg.v1.Service".
	Name string
	// Path and Handler are what the generated New…Handler returned.
	Path    string
	Handler http.Handler
}

// MaxRequestBytes bounds a request message; a larger one is refused with
// ResourceExhausted before it is decoded.
const MaxRequestBytes = 1 << 20

// MaxCallDuration bounds every call a handler serves, whatever deadline the
// caller asked for (or none): a unary call, and a stream such as
// WatchOrder, which then ends with DeadlineExceeded and may be opened again.
const MaxCallDuration = 5 * time.Minute

// callDeadline gives every call at most MaxCallDuration.
type callDeadline struct{}

// WrapUnary implements connect.Interceptor.
func (callDeadline) WrapUnary(next connect.UnaryFunc) connect.UnaryFunc {
	return func(ctx context.Context, req connect.AnyRequest) (connect.AnyResponse, error) {
		ctx, cancel := context.WithTimeout(ctx, MaxCallDuration)
		defer cancel()
		return next(ctx, req)
	}
}

// WrapStreamingClient implements connect.Interceptor (nothing to do).
func (callDeadline) WrapStreamingClient(next connect.StreamingClientFunc) connect.StreamingClientFunc {
	return next
}

// WrapStreamingHandler implements connect.Interceptor.
func (callDeadline) WrapStreamingHandler(next connect.StreamingHandlerFunc) connect.StreamingHandlerFunc {
	return func(ctx context.Context, conn connect.StreamingHandlerConn) error {
		ctx, cancel := context.WithTimeout(ctx, MaxCallDuration)
		defer cancel()
		return next(ctx, conn)
	}
}

// HandlerOptions returns the options every service mounted by the gateway
// (or served by a service of its own) gets: at most MaxCallDuration per
// call, a span and metrics per call on
// t (the span continues the caller's traceparent), authentication with a,
// the admin role for the admin procedures and a device's token for the
// device procedures only (IsAdmin, IsDevice; see auth.Interceptor),
// protovalidate request validation (InvalidArgument with field violations)
// and the request size limit.
func HandlerOptions(a auth.Config, t *telemetry.Telemetry) []connect.HandlerOption {
	return []connect.HandlerOption{
		connect.WithInterceptors(otelInterceptor(t), callDeadline{}, auth.Interceptor(a, IsAdmin, auth.DeviceProcedures(IsDevice)), validate.NewInterceptor()),
		connect.WithReadMaxBytes(MaxRequestBytes),
		connect.WithCompressMinBytes(4096), // small messages cost more to compress than to send
	}
}

// Handler returns the gateway's HTTP handler.
func Handler(cfg Config) http.Handler {
	mux := http.NewServeMux()
	services := cfg.Services
	if cfg.Orders != nil {
		path, h := orderv1connect.NewOrderServiceHandler(cfg.Orders, HandlerOptions(cfg.Auth, cfg.Telemetry)...)
		services = append(services, Service{Name: orderv1connect.OrderServiceName, Path: path, Handler: h})
	}
	if cfg.Inventory != nil {
		path, h := inventoryv1connect.NewInventoryServiceHandler(cfg.Inventory, HandlerOptions(cfg.Auth, cfg.Telemetry)...)
		services = append(services, Service{Name: inventoryv1connect.InventoryServiceName, Path: path, Handler: h})
	}
	if cfg.DeadLetters != nil {
		path, h := deadletterv1connect.NewDeadLetterServiceHandler(cfg.DeadLetters, HandlerOptions(cfg.Auth, cfg.Telemetry)...)
		services = append(services, Service{Name: deadletterv1connect.DeadLetterServiceName, Path: path, Handler: h})
	}
	if cfg.Groups != nil {
		path, h := groupv1connect.NewGroupServiceHandler(cfg.Groups, HandlerOptions(cfg.Auth, cfg.Telemetry)...)
		services = append(services, Service{Name: groupv1connect.GroupServiceName, Path: path, Handler: h})
	}
	if cfg.Lag != nil {
		path, h := lagv1connect.NewLagServiceHandler(cfg.Lag, HandlerOptions(cfg.Auth, cfg.Telemetry)...)
		services = append(services, Service{Name: lagv1connect.LagServiceName, Path: path, Handler: h})
	}
	names := make([]string, 0, len(services))
	for _, s := range services {
		mux.Handle(s.Path, s.Handler)
		names = append(names, s.Name)
	}
	checker := cfg.Health
	if checker == nil {
		checker = health.NewChecker(nil)
	}
	mux.Handle(grpchealth.NewHandler(health.GRPC(checker, names...)))
	mux.Handle("GET /healthz", health.Live())
	mux.Handle("GET /readyz", checker.ReadyHandler())
	reflector := grpcreflect.NewStaticReflector(names...)
	mux.Handle(grpcreflect.NewHandlerV1(reflector))
	mux.Handle(grpcreflect.NewHandlerV1Alpha(reflector))
	if len(cfg.AllowedOrigins) == 0 {
		// No CORS headers: browsers refuse every other origin. (rs/cors
		// would read an empty list as "any origin".)
		return mux
	}
	return cors.New(cors.Options{
		AllowedOrigins: cfg.AllowedOrigins,
		AllowedMethods: []string{http.MethodGet, http.MethodPost},
		AllowedHeaders: []string{"Content-Type", "Connect-Protocol-Version", "Connect-Timeout-Ms",
			"Grpc-Timeout", "X-Grpc-Web", "X-User-Agent", "Authorization", "Traceparent"},
		ExposedHeaders: []string{"Grpc-Status", "Grpc-Message", "Grpc-Status-Details-Bin"},
		MaxAge:         7200,
	}).Handler(mux)
}

// NewServer returns an HTTP server for h on addr that speaks HTTP/1.1 and
// cleartext HTTP/2 (h2c), which gRPC clients need.
func NewServer(addr string, h http.Handler) *http.Server {
	p := new(http.Protocols)
	p.SetHTTP1(true)
	p.SetUnencryptedHTTP2(true)
	return &http.Server{
		Addr:              addr,
		Handler:           longReads(h),
		Protocols:         p,
		ReadHeaderTimeout: 10 * time.Second,
		// A request body (at most MaxRequestBytes) arrives within this;
		// a client stream's within MaxCallDuration (longReads).
		ReadTimeout: 30 * time.Second,
		// A response, a WatchOrder stream included, is written within
		// the longest a call may last (MaxCallDuration) and a margin for
		// the call's end: a reader that stops reading is cut off then.
		WriteTimeout:   MaxCallDuration + 30*time.Second,
		IdleTimeout:    2 * time.Minute,
		MaxHeaderBytes: 64 << 10,
	}
}

// otelInterceptor records a span and the RPC metrics of each call on t,
// propagating W3C trace context; a server span continues the caller's
// trace, so a client's traceparent is the trace of the order it places.
func otelInterceptor(t *telemetry.Telemetry) connect.Interceptor {
	i, err := otelconnect.NewInterceptor(
		otelconnect.WithTracerProvider(t.TracerProvider()),
		otelconnect.WithMeterProvider(t.MeterProvider()),
		otelconnect.WithPropagator(telemetry.Propagator()),
		otelconnect.WithTrustRemote(),
	)
	if err != nil {
		// Only an invalid option makes it fail, and these are fixed.
		panic(fmt.Sprintf("gateway: otelconnect: %v", err))
	}
	return i
}

// BearerToken is a client interceptor that sends token as
// "Authorization: Bearer <token>" on every call, unary or streaming.
func BearerToken(token string) connect.Interceptor { return bearer(token) }

type bearer string

// WrapUnary implements connect.Interceptor.
func (b bearer) WrapUnary(next connect.UnaryFunc) connect.UnaryFunc {
	return func(ctx context.Context, req connect.AnyRequest) (connect.AnyResponse, error) {
		req.Header().Set("Authorization", "Bearer "+string(b))
		return next(ctx, req)
	}
}

// WrapStreamingClient implements connect.Interceptor.
func (b bearer) WrapStreamingClient(next connect.StreamingClientFunc) connect.StreamingClientFunc {
	return func(ctx context.Context, spec connect.Spec) connect.StreamingClientConn {
		conn := next(ctx, spec)
		conn.RequestHeader().Set("Authorization", "Bearer "+string(b))
		return conn
	}
}

// WrapStreamingHandler implements connect.Interceptor (nothing to do).
func (b bearer) WrapStreamingHandler(next connect.StreamingHandlerFunc) connect.StreamingHandlerFunc {
	return next
}

// longReads gives a client-streaming or bidirectional call (a device's
// IngestReadings) as long to send its messages as a call may last
// (MaxCallDuration, which callDeadline enforces), where every other request
// has the server's ReadTimeout for its body. Which calls stream comes from
// the procedure's descriptor in the registry of the generated code.
func longReads(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if clientStreams(r.URL.Path) {
			// Not every ResponseWriter can (an HTTP/1.1 hijacked one);
			// then the server's ReadTimeout stands.
			_ = http.NewResponseController(w).SetReadDeadline(time.Now().Add(MaxCallDuration + 30*time.Second))
		}
		h.ServeHTTP(w, r)
	})
}

// clientStreams reports whether path ("/<package>.<Service>/<Method>") names
// a method whose client sends a stream.
func clientStreams(path string) bool {
	service, method, ok := strings.Cut(strings.TrimPrefix(path, "/"), "/")
	if !ok || method == "" || strings.Contains(method, "/") {
		return false
	}
	d, err := protoregistry.GlobalFiles.FindDescriptorByName(protoreflect.FullName(service + "." + method))
	if err != nil {
		return false
	}
	m, ok := d.(protoreflect.MethodDescriptor)
	return ok && m.IsStreamingClient()
}
