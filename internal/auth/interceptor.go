package auth

import (
	"context"
	"crypto/subtle"
	"errors"
	"fmt"
	"net/http"
	"strings"

	"connectrpc.com/connect"
)

// Config says how callers authenticate.
type Config struct {
	// Verifier verifies end users' bearer tokens (none accepted when nil).
	Verifier *Verifier
	// AdminToken, when set, is a static bearer token with the admin role:
	// a service credential for operators' tools (shopbus dlq, lag …).
	AdminToken string
	// Insecure turns authentication off: every caller is an admin acting
	// for whichever customer its request names. For a private network only.
	Insecure bool
}

// Enabled reports whether cfg authenticates anyone, or is explicitly
// insecure: a Config that does neither refuses every call.
func (c Config) Enabled() bool { return c.Verifier != nil || c.AdminToken != "" || c.Insecure }

// Interceptor returns the server interceptor that authenticates every call
// with cfg, refusing one without a valid bearer token (Unauthenticated), an
// admin procedure (isAdmin) without the admin role (PermissionDenied), and
// a device's token on any procedure but a device procedure (see
// DeviceProcedures; none without it) (PermissionDenied). The handler finds
// the caller with FromContext.
func Interceptor(cfg Config, isAdmin func(procedure string) bool, opts ...Option) connect.Interceptor {
	i := &interceptor{cfg: cfg, isAdmin: isAdmin, isDevice: func(string) bool { return false }}
	for _, o := range opts {
		o(i)
	}
	return i
}

// Option is an option of Interceptor.
type Option func(*interceptor)

// DeviceProcedures says which procedures ("/pkg.Service/Method") a
// device's token may call: those a device serves itself with (ingesting its
// readings). Every other procedure refuses a device's token, so that a
// device's credential never acts as a user, whatever its id.
func DeviceProcedures(isDevice func(procedure string) bool) Option {
	return func(i *interceptor) { i.isDevice = isDevice }
}

type interceptor struct {
	cfg      Config
	isAdmin  func(string) bool
	isDevice func(string) bool
}

// authenticate returns ctx with the caller of procedure, or a Connect
// error.
func (i *interceptor) authenticate(ctx context.Context, procedure string, h http.Header) (context.Context, error) {
	if i.cfg.Insecure {
		return WithPrincipal(ctx, Principal{Admin: true}), nil
	}
	token, ok := strings.CutPrefix(h.Get("Authorization"), "Bearer ")
	if !ok || token == "" {
		return nil, unauthenticated(errors.New("send Authorization: Bearer <token> (shopbus dev prints a demo token)"))
	}
	var p Principal
	switch {
	case i.cfg.AdminToken != "" && subtle.ConstantTimeCompare([]byte(token), []byte(i.cfg.AdminToken)) == 1:
		p = Principal{Subject: "admin-token", Admin: true}
	case i.cfg.Verifier != nil:
		var err error
		if p, err = i.cfg.Verifier.Verify(token); err != nil {
			return nil, unauthenticated(fmt.Errorf("the bearer token is not valid: %w", err))
		}
	default:
		return nil, unauthenticated(errors.New("the bearer token is not valid"))
	}
	if i.isAdmin(procedure) && !p.Admin {
		return nil, connect.NewError(connect.CodePermissionDenied,
			fmt.Errorf("%s is an admin procedure: the token lacks the %q role", procedure, AdminRole))
	}
	if p.IsDevice() && !i.isDevice(procedure) {
		return nil, connect.NewError(connect.CodePermissionDenied,
			fmt.Errorf("%s is not a device's procedure: %w", procedure, ErrDeviceToken))
	}
	return withToken(WithPrincipal(ctx, p), token), nil
}

func unauthenticated(err error) error { return connect.NewError(connect.CodeUnauthenticated, err) }

// WrapUnary implements connect.Interceptor.
func (i *interceptor) WrapUnary(next connect.UnaryFunc) connect.UnaryFunc {
	return func(ctx context.Context, req connect.AnyRequest) (connect.AnyResponse, error) {
		if req.Spec().IsClient {
			return next(ctx, req)
		}
		ctx, err := i.authenticate(ctx, req.Spec().Procedure, req.Header())
		if err != nil {
			return nil, err
		}
		return next(ctx, req)
	}
}

// WrapStreamingClient implements connect.Interceptor (nothing to do).
func (i *interceptor) WrapStreamingClient(next connect.StreamingClientFunc) connect.StreamingClientFunc {
	return next
}

// WrapStreamingHandler implements connect.Interceptor.
func (i *interceptor) WrapStreamingHandler(next connect.StreamingHandlerFunc) connect.StreamingHandlerFunc {
	return func(ctx context.Context, conn connect.StreamingHandlerConn) error {
		ctx, err := i.authenticate(ctx, conn.Spec().Procedure, conn.RequestHeader())
		if err != nil {
			return err
		}
		return next(ctx, conn)
	}
}

// ForwardToken is the client interceptor of a gateway's calls to the
// services behind it: each carries the bearer token its caller sent (which
// the service verifies again), and no other header of the caller's. It
// goes first among the client's interceptors, so that those after it (the
// trace context's) add theirs.
func ForwardToken() connect.Interceptor { return forward{} }

type forward struct{}

// WrapUnary implements connect.Interceptor.
func (forward) WrapUnary(next connect.UnaryFunc) connect.UnaryFunc {
	return func(ctx context.Context, req connect.AnyRequest) (connect.AnyResponse, error) {
		// A gateway relays the request it received, headers and all:
		// cookies and the like are not the service's business. The
		// protocol's own headers, written already, stay.
		for k := range req.Header() {
			if !protocolHeader(k) {
				req.Header().Del(k)
			}
		}
		if t := tokenFrom(ctx); t != "" {
			req.Header().Set("Authorization", "Bearer "+t)
		}
		return next(ctx, req)
	}
}

// protocolHeader reports whether a (canonical) header is one the Connect
// client has written for the outgoing call before its interceptors run.
// Anything else is the caller's: a Content-Encoding its own request had,
// for one, would describe a body the relayed call does not send.
func protocolHeader(k string) bool {
	switch k {
	case "Content-Type", "Connect-Protocol-Version", "Accept-Encoding", "Connect-Accept-Encoding", "User-Agent":
		return true
	}
	return false
}

// WrapStreamingClient implements connect.Interceptor.
func (forward) WrapStreamingClient(next connect.StreamingClientFunc) connect.StreamingClientFunc {
	return func(ctx context.Context, spec connect.Spec) connect.StreamingClientConn {
		conn := next(ctx, spec)
		if t := tokenFrom(ctx); t != "" {
			conn.RequestHeader().Set("Authorization", "Bearer "+t)
		}
		return conn
	}
}

// WrapStreamingHandler implements connect.Interceptor (nothing to do).
func (forward) WrapStreamingHandler(next connect.StreamingHandlerFunc) connect.StreamingHandlerFunc {
	return next
}

// Caller returns the caller that Interceptor authenticated, or
// Unauthenticated: a handler served without the interceptor refuses every
// call rather than serve it open.
func Caller(ctx context.Context) (Principal, error) {
	p, ok := FromContext(ctx)
	if !ok {
		return Principal{}, connect.NewError(connect.CodeUnauthenticated, errors.New("no authenticated caller"))
	}
	return p, nil
}
