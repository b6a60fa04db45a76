// Package natsembed runs a real nats-server with JetStream inside the
// process: the quick start (shopbus dev) and the integration tests use it.
// It syncs every write to disk before acknowledging it (see Durability in
// docs/architecture.md) and never takes port 4222, which a real server may
// hold.
package natsembed

import (
	"crypto/tls"
	"fmt"
	"time"

	"github.com/nats-io/nats-server/v2/server"
)

// Options configure Start.
type Options struct {
	// StoreDir holds the JetStream file store; a restart on the same dir
	// continues where it stopped.
	StoreDir string
	// Port is the client port; 0 picks a free one. 4222 is refused.
	Port int
	// MonitorPort, when not 0, serves the server's HTTP monitoring
	// endpoints (/varz, /jsz, /connz …, which the nats CLI's server
	// commands and the Prometheus NATS exporter read) on 127.0.0.1; -1
	// picks a free port.
	MonitorPort int
	// Logs turns the server's own log on.
	Logs bool
	// NoSync turns off the fsync before each acknowledgement (JetStream's
	// default behaviour: a flush every two minutes). Only for measuring
	// what durability costs; never in production.
	NoSync bool
	// Users, when set, are the only clients the server accepts (nkeys,
	// each with its permissions: natsauth); none means anyone may connect.
	Users []*server.NkeyUser
	// TLS, when set, makes clients connect over TLS with it (tls://).
	TLS *tls.Config
}

// MaxPayload is the embedded server's max_payload: twice NATS's default
// of 1 MiB. A production cluster needs at least as much.
const MaxPayload = 2 << 20

// Start starts the server and waits until it accepts connections.
func Start(opts Options) (*server.Server, error) {
	if opts.Port == 4222 {
		return nil, fmt.Errorf("natsembed: port 4222 is reserved for a real NATS server; pick another or 0")
	}
	if opts.StoreDir == "" {
		return nil, fmt.Errorf("natsembed: a store dir is required")
	}
	port := opts.Port
	if port == 0 {
		port = server.RANDOM_PORT
	}
	s, err := server.NewServer(&server.Options{
		ServerName: "shopbus-embedded",
		Host:       "127.0.0.1",
		Port:       port,
		JetStream:  true,
		StoreDir:   opts.StoreDir,
		// SyncAlways: fsync every write before the publish is acknowledged,
		// so an acknowledged event survives a power loss. JetStream's
		// default syncs every two minutes.
		SyncAlways: !opts.NoSync,
		NoSigs:     true,
		HTTPHost:   "127.0.0.1",
		HTTPPort:   opts.MonitorPort,
		Nkeys:      opts.Users,
		// Room for the largest envelope Decode accepts (1 MiB and 4 KiB)
		// with its headers: a valid event always fits.
		MaxPayload: MaxPayload,
		TLSConfig:  opts.TLS,
		TLS:        opts.TLS != nil,
		TLSTimeout: 5,
	})
	if err != nil {
		return nil, fmt.Errorf("natsembed: %w", err)
	}
	if opts.Logs {
		s.ConfigureLogger()
	}
	go s.Start()
	if !s.ReadyForConnections(30 * time.Second) {
		s.Shutdown()
		return nil, fmt.Errorf("natsembed: server on %s did not become ready in 30s", opts.StoreDir)
	}
	return s, nil
}

// MonitorURL is the base URL of s's monitoring endpoints, or "" when it
// serves none.
func MonitorURL(s *server.Server) string {
	if addr := s.MonitorAddr(); addr != nil {
		return "http://" + addr.String()
	}
	return ""
}
