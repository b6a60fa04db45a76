package gateway_test

import (
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/shopbus/shopbus/gateway"
)

// TestProxyForwardsOnlyTheToken: a service behind the gateway's proxy
// (distributed mode) receives the caller's bearer token, trace and protocol
// headers, and none of the caller's other headers (cookies, API keys).
func TestProxyForwardsOnlyTheToken(t *testing.T) {
	t.Parallel()
	got := make(chan http.Header, 1)
	service := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		got <- r.Header.Clone()
		w.Header().Set("Content-Type", "application/json")
		io.WriteString(w, "{}")
	}))
	service.Config.Protocols = new(http.Protocols)
	service.Config.Protocols.SetHTTP1(true)
	service.Config.Protocols.SetUnencryptedHTTP2(true)
	service.Start()
	defer service.Close()
	p, err := gateway.Proxy("shopbus.message.v1.MessageService", service.URL, nil, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	gw := httptest.NewServer(gateway.Handler(gateway.Config{Services: []gateway.Service{p}}))
	defer gw.Close()

	req, err := http.NewRequest(http.MethodPost, gw.URL+"/shopbus.message.v1.MessageService/ListMessages", strings.NewReader("{}"))
	if err != nil {
		t.Fatal(err)
	}
	pass := map[string]string{
		"Authorization":            "Bearer the-callers-token",
		"Content-Type":             "application/json",
		"Connect-Protocol-Version": "1",
		"Connect-Timeout-Ms":       "5000",
		"Traceparent":              "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
	}
	stop := map[string]string{
		"Cookie":          "session=the-callers-session",
		"X-Api-Key":       "a-third-partys-key",
		"X-Forwarded-For": "10.0.0.1",
	}
	for k, v := range pass {
		req.Header.Set(k, v)
	}
	for k, v := range stop {
		req.Header.Set(k, v)
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if res.StatusCode != http.StatusOK {
		t.Fatalf("through the proxy: %s", res.Status)
	}
	h := <-got
	for k, v := range pass {
		if h.Get(k) != v {
			t.Errorf("the service received %s %q, want %q", k, h.Get(k), v)
		}
	}
	for k := range stop {
		if h.Get(k) != "" {
			t.Errorf("the service received the caller's %s %q", k, h.Get(k))
		}
	}
}
