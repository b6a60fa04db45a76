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
	"log/slog"
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
	log *slog.Logger

	run    sync.Mutex // one run of the checks at a time
	mu     sync.Mutex
	checks []Check
	at     time.Time
	last   []Result
}

// Result is the outcome of one check.
type Result struct {
	Name string
	Err  error
}

// NewChecker returns a checker of checks that logs each check's failure
// (and its recovery) on log, when not nil.
func NewChecker(log *slog.Logger, checks ...Check) *Checker {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Checker{log: log, checks: checks}
}

// Add appends checks.
func (c *Checker) Add(checks ...Check) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.checks = append(c.checks, checks...)
	c.at = time.Time{}
}

// Results runs every check at once (each bounded by Timeout, and not
// cancelled with ctx: a caller that hangs up does not fail a check) and
// returns their results in order. Only one run is in flight at a time, and
// its answer is reused for half a second: however many probes arrive,
// PostgreSQL and NATS see at most two rounds of checks a second.
func (c *Checker) Results(ctx context.Context) []Result {
	if r, ok := c.cached(); ok {
		return r
	}
	c.run.Lock()
	defer c.run.Unlock()
	if r, ok := c.cached(); ok {
		return r // another caller ran them meanwhile
	}
	c.mu.Lock()
	checks := slices.Clone(c.checks)
	previous := c.last
	c.mu.Unlock()
	ctx = context.WithoutCancel(ctx)
	out := make([]Result, len(checks))
	var wg sync.WaitGroup
	for i, ch := range checks {
		wg.Go(func() {
			cctx, cancel := context.WithTimeout(ctx, Timeout)
			defer cancel()
			done := make(chan error, 1)
			go func() { done <- ch.Func(cctx) }()
			select {
			case err := <-done:
				out[i] = Result{Name: ch.Name, Err: err}
			case <-cctx.Done(): // a check that ignores its ctx
				out[i] = Result{Name: ch.Name, Err: fmt.Errorf("no answer in %v", Timeout)}
			}
		})
	}
	wg.Wait()
	c.logChanges(previous, out)
	c.mu.Lock()
	defer c.mu.Unlock()
	c.at, c.last = time.Now(), out
	return slices.Clone(out)
}

func (c *Checker) cached() ([]Result, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.last != nil && time.Since(c.at) < cacheFor {
		return slices.Clone(c.last), true
	}
	return nil, false
}

// logChanges logs the checks that started failing (with their error) or
// recovered since the previous run.
func (c *Checker) logChanges(previous, now []Result) {
	failed := map[string]bool{}
	for _, r := range previous {
		failed[r.Name] = r.Err != nil
	}
	for _, r := range now {
		switch {
		case r.Err != nil && !failed[r.Name]:
			c.log.Warn("readiness: check failing", "check", r.Name, "err", r.Err)
		case r.Err == nil && failed[r.Name]:
			c.log.Info("readiness: check passing again", "check", r.Name)
		}
	}
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
// fails, with one line per check ("ok nats", "fail postgres shopbus_order").
// It names the failing checks but never says why: the handler is served on
// public ports, and the errors (in the log) name hosts and users.
func (c *Checker) ReadyHandler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		results := c.Results(r.Context())
		var b strings.Builder
		code := http.StatusOK
		for _, res := range results {
			if res.Err != nil {
				code = http.StatusServiceUnavailable
				fmt.Fprintf(&b, "fail %s\n", res.Name)
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
