package gateway

import (
	"crypto/tls"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httputil"
	"net/url"
	"strings"
)

// Proxy returns the gateway's route to a service that runs elsewhere and
// that the gateway does not mount itself (distributed mode): every call to
// service name ("shopbus.message.v1.MessageService") is relayed, whatever
// its protocol (Connect, gRPC, gRPC-Web) or streaming, to the same path
// under base ("http://message:8084"), over HTTP/2 (cleartext for an http
// URL), flushing as it goes and with its trailers. Of the caller's headers
// only the bearer token, the trace and what the protocols need go along
// (forwarded): cookies, API keys and the rest are not the service's
// business. The service authenticates the token itself; a service that
// cannot be reached is 502 Bad Gateway, which clients read as Unavailable.
func Proxy(name, base string, tlsConfig *tls.Config, log *slog.Logger) (Service, error) {
	u, err := url.Parse(base)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return Service{}, fmt.Errorf("gateway: %s at %q: want an http:// or https:// URL", name, base)
	}
	p := new(http.Protocols)
	p.SetHTTP2(true)
	p.SetUnencryptedHTTP2(true)
	rp := &httputil.ReverseProxy{
		Rewrite: func(r *httputil.ProxyRequest) {
			r.SetURL(u)
			r.Out.Host = u.Host
			for k := range r.Out.Header {
				if !forwarded(k) {
					r.Out.Header.Del(k)
				}
			}
		},
		Transport:     &http.Transport{Protocols: p, TLSClientConfig: tlsConfig, MaxIdleConnsPerHost: 64},
		FlushInterval: -1,
		// The gateway answers for CORS (Config.AllowedOrigins): a
		// service's own headers would repeat them.
		ModifyResponse: func(r *http.Response) error {
			for k := range r.Header {
				if strings.HasPrefix(k, "Access-Control-") {
					r.Header.Del(k)
				}
			}
			return nil
		},
		ErrorHandler: func(w http.ResponseWriter, r *http.Request, err error) {
			log.Warn("gateway: "+name+" unreachable", "url", base, "err", err)
			w.WriteHeader(http.StatusBadGateway)
		},
	}
	return Service{Name: name, Path: "/" + name + "/", Handler: rp}, nil
}

// forwarded says whether Proxy passes the caller's header name (in its
// canonical form) on to the service: the bearer token, the W3C trace
// context, and what Connect, gRPC and gRPC-Web put in headers (content type
// and encodings, timeouts, protocol versions, user agents, "TE: trailers").
func forwarded(name string) bool {
	switch name {
	case "Authorization", "Traceparent", "Tracestate",
		"Content-Type", "Content-Encoding", "Accept-Encoding", "Te",
		"User-Agent", "X-User-Agent", "X-Grpc-Web":
		return true
	}
	return strings.HasPrefix(name, "Connect-") || strings.HasPrefix(name, "Grpc-")
}
