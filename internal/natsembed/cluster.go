package natsembed

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats-server/v2/server"
)

// ClusterOptions configure StartCluster.
type ClusterOptions struct {
	// Dir holds the nodes' file stores, one directory each (Dir/n0,
	// Dir/n1 …). Required.
	Dir string
	// Nodes is how many servers run (3 when 0). JetStream needs a
	// majority of them up.
	Nodes int
	// Logs turns the servers' own logs on.
	Logs bool
}

// Cluster is a JetStream cluster of real nats-servers running in this
// process on loopback, for tests of what a production cluster does when a
// node stops: each node has its own file store (SyncAlways, as Start's),
// the same max_payload as Start, and a client port and a route port of its
// own, kept across Stop and Restart (never 4222). Its methods may be
// called from several goroutines.
type Cluster struct {
	name    string
	dirs    []string
	ports   []int // client ports
	routes  []int // cluster (route) ports
	logs    bool
	mu      sync.Mutex
	servers []*server.Server // nil while stopped
}

// DefaultClusterNodes is the size of a cluster when ClusterOptions.Nodes
// is 0: the smallest that keeps a quorum with one node down.
const DefaultClusterNodes = 3

// StartCluster starts every node and waits until the cluster is ready
// (WaitReady, up to a minute). On error, what was started is stopped.
func StartCluster(opts ClusterOptions) (_ *Cluster, err error) {
	if opts.Dir == "" {
		return nil, errors.New("natsembed: a cluster needs a store dir")
	}
	n := opts.Nodes
	if n == 0 {
		n = DefaultClusterNodes
	}
	if n < 1 {
		return nil, fmt.Errorf("natsembed: a cluster of %d nodes", n)
	}
	suffix := make([]byte, 4)
	_, _ = rand.Read(suffix)
	c := &Cluster{name: "shopbus-" + hex.EncodeToString(suffix), logs: opts.Logs, servers: make([]*server.Server, n)}
	ports, err := freePorts(2 * n)
	if err != nil {
		return nil, err
	}
	c.ports, c.routes = ports[:n], ports[n:]
	for i := range n {
		c.dirs = append(c.dirs, filepath.Join(opts.Dir, "n"+strconv.Itoa(i)))
	}
	defer func() {
		if err != nil {
			c.Shutdown()
		}
	}()
	for i := range n {
		if err := c.Restart(i); err != nil {
			return nil, err
		}
	}
	if err := c.WaitReady(time.Minute); err != nil {
		return nil, err
	}
	return c, nil
}

// freePorts returns n distinct loopback ports that were free a moment ago
// (never 4222: the kernel hands out ephemeral ports far above it).
func freePorts(n int) ([]int, error) {
	var ls []net.Listener
	defer func() {
		for _, l := range ls {
			l.Close()
		}
	}()
	var ports []int
	for len(ports) < n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, fmt.Errorf("natsembed: a free port: %w", err)
		}
		ls = append(ls, l)
		if p := l.Addr().(*net.TCPAddr).Port; p != 4222 {
			ports = append(ports, p)
		}
	}
	return ports, nil
}

// options are node i's server options: built afresh for each start, since
// the server keeps and changes what it is given.
func (c *Cluster) options(i int) *server.Options {
	var routes []string
	for j, p := range c.routes {
		if j != i {
			routes = append(routes, "nats-route://127.0.0.1:"+strconv.Itoa(p))
		}
	}
	return &server.Options{
		ServerName: c.name + "-n" + strconv.Itoa(i),
		Host:       "127.0.0.1",
		Port:       c.ports[i],
		JetStream:  true,
		StoreDir:   c.dirs[i],
		SyncAlways: true,
		NoSigs:     true,
		MaxPayload: MaxPayload,
		Cluster:    server.ClusterOpts{Name: c.name, Host: "127.0.0.1", Port: c.routes[i]},
		Routes:     server.RoutesFromStr(strings.Join(routes, ",")),
	}
}

// Len is the number of nodes, running or stopped.
func (c *Cluster) Len() int { return len(c.dirs) }

// Server returns node i's server, or nil while it is stopped.
func (c *Cluster) Server(i int) *server.Server {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.servers[i]
}

// URLs returns every node's client URL, stopped ones included,
// comma-separated: the seed list a client connects with
// (nats.Connect and stack.Config.NATSURL take it as it is).
func (c *Cluster) URLs() string {
	urls := make([]string, len(c.ports))
	for i, p := range c.ports {
		urls[i] = "nats://127.0.0.1:" + strconv.Itoa(p)
	}
	return strings.Join(urls, ",")
}

// Node returns the index of the running node whose client URL is url (as
// nats.Conn.ConnectedUrl reports it), or -1.
func (c *Cluster) Node(url string) int {
	for i, p := range c.ports {
		if strings.HasSuffix(url, "127.0.0.1:"+strconv.Itoa(p)) && c.Server(i) != nil {
			return i
		}
	}
	return -1
}

// Stop shuts node i down (its Raft leaderships are handed over first, as
// nats-server does on shutdown) and waits until it has stopped. Stopping a
// stopped node does nothing.
func (c *Cluster) Stop(i int) {
	c.mu.Lock()
	s := c.servers[i]
	c.servers[i] = nil
	c.mu.Unlock()
	if s != nil {
		s.Shutdown()
		s.WaitForShutdown()
	}
}

// Restart starts node i again on its store dir and its ports, and waits
// until it accepts connections; it does not wait for it to catch up
// (WaitReady, or the stream's own state, says when it has). Restarting a
// running node does nothing.
func (c *Cluster) Restart(i int) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.servers[i] != nil {
		return nil
	}
	s, err := server.NewServer(c.options(i))
	if err != nil {
		return fmt.Errorf("natsembed: node %d: %w", i, err)
	}
	if c.logs {
		s.ConfigureLogger()
	}
	go s.Start()
	// A restarted node recovers its store before it accepts connections:
	// on a loaded machine (CI runs the other packages beside) that has
	// taken more than 30 s.
	if !s.ReadyForConnections(restartReady) {
		s.Shutdown()
		return fmt.Errorf("natsembed: node %d did not become ready in %v", i, restartReady)
	}
	c.servers[i] = s
	return nil
}

// restartReady bounds Restart's wait for the node to accept connections.
const restartReady = 90 * time.Second

// WaitReady waits up to timeout until the running nodes have a JetStream
// meta leader and every one of them is current with it: the cluster
// accepts streams and consumers.
func (c *Cluster) WaitReady(timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		err := c.ready()
		if err == nil {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("natsembed: cluster not ready in %v: %w", timeout, err)
		}
		time.Sleep(25 * time.Millisecond)
	}
}

func (c *Cluster) ready() error {
	leader := false
	for i := range c.Len() {
		s := c.Server(i)
		if s == nil {
			continue
		}
		if !s.JetStreamIsCurrent() {
			return fmt.Errorf("node %d is not current with the meta leader", i)
		}
		leader = leader || s.JetStreamIsLeader()
	}
	if !leader {
		return errors.New("no JetStream meta leader")
	}
	return nil
}

// StreamLeader returns the index of the node leading stream (in the
// default account, which clients without accounts use), or -1 when no
// running node does.
func (c *Cluster) StreamLeader(stream string) int {
	for i := range c.Len() {
		if s := c.Server(i); s != nil && s.JetStreamIsStreamLeader(server.DEFAULT_GLOBAL_ACCOUNT, stream) {
			return i
		}
	}
	return -1
}

// Shutdown stops every node.
func (c *Cluster) Shutdown() {
	var wg sync.WaitGroup
	for i := range c.Len() {
		wg.Go(func() { c.Stop(i) })
	}
	wg.Wait()
}
