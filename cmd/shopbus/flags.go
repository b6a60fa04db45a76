package main

import (
	"errors"
	"flag"
	"fmt"
	"net"
	"net/url"
	"strings"
)

// secretFlag declares a flag whose value may be a secret (a token, or a URL
// that may carry a password, a token or a password parameter); its usage
// names its environment variable as any flag's does. -h and the flag's
// String show the built-in default, which is no secret, and any other
// value only as "(set)", so neither help output nor anything that prints
// flags leaks it; applyEnv does not quote it either.
func secretFlag(fs *flag.FlagSet, name, def, usage string) *string {
	s := &secret{value: def, def: def}
	fs.Var(s, name, usage)
	return &s.value
}

// secret is a flag.Value that never prints a value it was given.
type secret struct{ value, def string }

// Set implements flag.Value.
func (s *secret) Set(v string) error { s.value = v; return nil }

// isSecret marks a flag.Value whose value must never be printed.
func (*secret) isSecret() {}

// String implements flag.Value, hiding the secret.
func (s *secret) String() string {
	switch {
	case s == nil || s.value == "":
		return ""
	case s.value == s.def:
		return s.def
	}
	return "(set)"
}

// originsFlag declares --allowed-origins: the browser origins the gateway's
// CORS allows, comma-separated, from SHOPBUS_ALLOWED_ORIGINS by default.
// None by default: browsers on other origins are refused.
func originsFlag(fs *flag.FlagSet) *string {
	return fs.String("allowed-origins", "",
		`browser origins allowed by CORS, comma-separated ("https://shop.example,http://localhost:5173"; "*" for any) (env SHOPBUS_ALLOWED_ORIGINS); none when empty`)
}

// parseOrigins splits and checks an --allowed-origins list: each is "*" or
// an origin, scheme://host[:port] with nothing after it.
func parseOrigins(list string) ([]string, error) {
	var origins []string
	for o := range strings.SplitSeq(list, ",") {
		if o = strings.TrimSpace(o); o == "" {
			continue
		}
		if o != "*" {
			u, err := url.Parse(o)
			if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" ||
				(u.Path != "" && u.Path != "/") || u.RawQuery != "" || u.Fragment != "" || u.User != nil {
				return nil, fmt.Errorf("--allowed-origins: %q is not an origin (scheme://host[:port], as a browser sends it, or *)", o)
			}
			o = strings.TrimSuffix(o, "/")
		}
		origins = append(origins, o)
	}
	return origins, nil
}

// errNotLoopback means an address that must stay on this machine is not a
// loopback address.
var errNotLoopback = errors.New("must be a loopback address (127.0.0.1, [::1] or localhost)")

// checkLoopback reports whether addr (host:port) listens on loopback only.
func checkLoopback(addr string) error {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return err
	}
	if ip := net.ParseIP(host); host != "localhost" && (ip == nil || !ip.IsLoopback()) {
		return fmt.Errorf("%q %w", addr, errNotLoopback)
	}
	return nil
}
