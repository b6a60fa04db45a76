package health_test

import (
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"connectrpc.com/connect"
	"connectrpc.com/grpchealth"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/shopbus/shopbus/internal/health"
	"github.com/shopbus/shopbus/internal/testenv"
)

func TestReadiness(t *testing.T) {
	t.Parallel()
	srv, _ := testenv.NATS(t)
	nc, err := nats.Connect(srv.ClientURL(), nats.MaxReconnects(-1))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	failing := errors.New("disk on fire")
	var broken atomic.Bool
	c := health.NewChecker(nil, health.NATS(nc, js), health.Check{Name: "disk", Func: func(context.Context) error {
		if broken.Load() {
			return failing
		}
		return nil
	}})
	mux := http.NewServeMux()
	mux.Handle("/readyz", c.ReadyHandler())
	mux.Handle("/healthz", health.Live())
	mux.Handle(grpchealth.NewHandler(health.GRPC(c, "shop.v1.Shop")))
	hs := httptest.NewServer(mux)
	t.Cleanup(hs.Close)
	client := grpchealth.NewClient(hs.Client(), hs.URL)

	get := func(path string) (int, string) {
		res, err := http.Get(hs.URL + path)
		if err != nil {
			t.Fatal(err)
		}
		defer res.Body.Close()
		b, _ := io.ReadAll(res.Body)
		return res.StatusCode, string(b)
	}
	grpcStatus := func(service string) grpchealth.Status {
		res, err := client.Check(context.Background(), &grpchealth.CheckRequest{Service: service})
		if err != nil {
			t.Fatalf("Check(%q): %v", service, err)
		}
		return res.Status
	}
	if code, body := get("/readyz"); code != http.StatusOK || body != "ok nats\nok disk\n" {
		t.Errorf("/readyz: %d %q", code, body)
	}
	if s := grpcStatus("shop.v1.Shop"); s != grpchealth.StatusServing {
		t.Errorf("gRPC health: %v", s)
	}
	if _, err := client.Check(context.Background(), &grpchealth.CheckRequest{Service: "other.v1.Other"}); connect.CodeOf(err) != connect.CodeNotFound {
		t.Errorf("unknown service: %v, want NotFound", err)
	}

	// NATS goes away (and the answer cache expires): not ready, naming it;
	// still alive.
	broken.Store(true)
	srv.Shutdown()
	srv.WaitForShutdown()
	testenv.CheckFor(t, 5*time.Second, 100*time.Millisecond, func() error {
		code, body := get("/readyz")
		if code != http.StatusServiceUnavailable || !strings.Contains(body, "fail nats\n") || !strings.Contains(body, "fail disk\n") || strings.Contains(body, "fire") {
			return errors.New(body)
		}
		return nil
	})
	if s := grpcStatus(""); s != grpchealth.StatusNotServing {
		t.Errorf("gRPC health with NATS down: %v", s)
	}
	if code, _ := get("/healthz"); code != http.StatusOK {
		t.Errorf("/healthz: %d", code)
	}
}
