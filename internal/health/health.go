// Package health says whether a process is alive and whether it is ready
// to serve. Liveness is only "the process answers"; readiness runs every
// Check (PostgreSQL reachable, NATS connected and JetStream answering, the
// process's consumers not in STOP or ERR) and fails when one fails. Both
// are served over HTTP (/healthz, /readyz) and readiness over gRPC health
// (grpc.health.v1.Health/Check), so Kubernetes, compose and grpc-health-probe
// all see the same answer.
package health

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"sync"
	"time"

	"connectrpc.com/connect"
	"connectrpc.com/grpchealth"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// Check is one condition of readiness.
type Check struct {
	// Name names what is checked: "postgres order", "nats", "consumers".
	Name string
	// Func returns nil when the condition holds.
	Func func(ctx context.Context) error
}

// Timeout bounds one check; cacheFor is how long a readiness answer is
// reused, so probes cannot load PostgreSQL or NATS.
const (
	Timeout  = 2 * time.Second
	cacheFor = 500 * time.Millisecond
)

// Checker runs the checks of readiness. It is safe for concurrent use.
type Checker struct {
	checks []Check

	mu   sync.Mutex
	at   time.Time
	last []Result
}

// Result is the outcome of one check.
type Result struct {
	Name string
	Err  error
}

// NewChecker returns a checker of checks.
func NewChecker(checks ...Check) *Checker { return &Checker{checks: checks} }

// Add appends checks.
func (c *Checker) Add(checks ...Check) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.checks = append(c.checks, checks...)
	c.at = time.Time{}
}

// Results runs every check at once (each bounded by Timeout) and returns
// their results in order. Answers younger than half a second are reused.
func (c *Checker) Results(ctx context.Context) []Result {
	c.mu.Lock()
	if time.Since(c.at) < cacheFor {
		defer c.mu.Unlock()
		return slices.Clone(c.last)
	}
	checks := slices.Clone(c.checks)
	c.mu.Unlock()
	out := make([]Result, len(checks))
	var wg sync.WaitGroup
	for i, ch := range checks {
		wg.Go(func() {
			cctx, cancel := context.WithTimeout(ctx, Timeout)
			defer cancel()
			out[i] = Result{Name: ch.Name, Err: ch.Func(cctx)}
		})
	}
	wg.Wait()
	c.mu.Lock()
	defer c.mu.Unlock()
	c.at, c.last = time.Now(), out
	return slices.Clone(out)
}

// Ready returns nil when every check passes, else an error naming each
// failing check.
func (c *Checker) Ready(ctx context.Context) error {
	var errs []error
	for _, r := range c.Results(ctx) {
		if r.Err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", r.Name, r.Err))
		}
	}
	return errors.Join(errs...)
}

// Live serves liveness: 200 "ok" whenever the process answers.
func Live() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		fmt.Fprintln(w, "ok")
	})
}

// ReadyHandler serves readiness: 200 when every check passes, 503 when one
// fails, with one line per check ("ok nats", "fail postgres order: …").
func (c *Checker) ReadyHandler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		results := c.Results(r.Context())
		var b strings.Builder
		code := http.StatusOK
		for _, res := range results {
			if res.Err != nil {
				code = http.StatusServiceUnavailable
				fmt.Fprintf(&b, "fail %s: %s\n", res.Name, strings.ReplaceAll(res.Err.Error(), "\n", "; "))
			} else {
				fmt.Fprintf(&b, "ok %s\n", res.Name)
			}
		}
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		w.Header().Set("Cache-Control", "no-store")
		w.WriteHeader(code)
		fmt.Fprint(w, b.String())
	})
}

// GRPC returns a gRPC health checker for the services names: the process
// as a whole ("") and each of them are SERVING when c is ready and
// NOT_SERVING otherwise; any other name is NotFound.
func GRPC(c *Checker, names ...string) grpchealth.Checker { return grpcChecker{c, names} }

type grpcChecker struct {
	c     *Checker
	names []string
}

func (g grpcChecker) Check(ctx context.Context, req *grpchealth.CheckRequest) (*grpchealth.CheckResponse, error) {
	if req.Service != "" && !slices.Contains(g.names, req.Service) {
		return nil, connect.NewError(connect.CodeNotFound, fmt.Errorf("unknown service %s", req.Service))
	}
	if g.c.Ready(ctx) != nil {
		return &grpchealth.CheckResponse{Status: grpchealth.StatusNotServing}, nil
	}
	return &grpchealth.CheckResponse{Status: grpchealth.StatusServing}, nil
}

// Postgres checks that pool reaches PostgreSQL.
func Postgres(name string, pool *pgxpool.Pool) Check {
	return Check{Name: "postgres " + name, Func: func(ctx context.Context) error { return pool.Ping(ctx) }}
}

// NATS checks that conn is connected and that JetStream answers.
func NATS(conn *nats.Conn, js jetstream.JetStream) Check {
	return Check{Name: "nats", Func: func(ctx context.Context) error {
		if s := conn.Status(); s != nats.CONNECTED {
			return fmt.Errorf("connection is %v", s)
		}
		if _, err := js.AccountInfo(ctx); err != nil {
			return fmt.Errorf("jetstream: %w", err)
		}
		return nil
	}}
}
