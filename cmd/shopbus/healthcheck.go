package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"
)

// healthcheck asks a component whether it is ready (GET its /readyz) and
// succeeds when it answers 200: the health check of a container whose
// image has no shell and no curl (compose.yaml). Anything else is an
// error quoting the status and the start of the answer, which lists the
// failing checks.
func healthcheck(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("healthcheck", flag.ContinueOnError)
	url := fs.String("url", "http://127.0.0.1:8080/readyz", "the `URL` to GET: a component's /readyz (or /healthz for liveness only) (env SHOPBUS_HEALTHCHECK_URL)")
	timeout := fs.Duration("timeout", 3*time.Second, "give up after this long (env SHOPBUS_HEALTHCHECK_TIMEOUT)")
	if err := parse(fs, args); err != nil {
		return err
	}
	if err := checkURL("url", *url); err != nil {
		return &usageError{cmd: fs.Name(), err: fmt.Errorf("%s: %w", fs.Name(), err)}
	}
	if *timeout <= 0 {
		return usagef(fs.Name(), "--timeout %v: want a positive duration", *timeout)
	}
	ctx, cancel := context.WithTimeout(ctx, *timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, *url, nil)
	if err != nil {
		return fmt.Errorf("healthcheck: %w", err)
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		return fmt.Errorf("healthcheck: %w", err)
	}
	defer res.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(res.Body, 1024))
	if res.StatusCode != http.StatusOK {
		return fmt.Errorf("healthcheck: %s: %s: %s", *url, res.Status, printable(strings.TrimSpace(string(body)), '\n'))
	}
	return nil
}
