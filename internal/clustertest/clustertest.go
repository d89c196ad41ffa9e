// Package clustertest starts a whole pomelo-go cluster in one process on
// loopback from the internal server and node, for the framework's own
// tests that reach into them (forward modes, kills, a server's Node).
// Users' tests use runtime/testkit, which runs Apps.
package clustertest

import (
	"context"
	"fmt"
	"io"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/pomelo-go/pomelo/internal/node"
	"github.com/pomelo-go/pomelo/internal/server"
	"github.com/pomelo-go/pomelo/runtime/cluster"
)

// Spec describes servers of one type.
type Spec struct {
	// Type is the server type.
	Type string
	// Count is how many servers of the type to start (default 1).
	Count int
	// Frontend servers hold client connections (WebSocket and TCP on port 0).
	Frontend bool
}

// Options describe a test cluster.
type Options struct {
	// Servers lists the server types to start.
	Servers []Spec
	// Secret authenticates the servers to each other (default a fixed test
	// secret).
	Secret string
	// Configure, when set, adjusts each server's configuration before it is
	// created.
	Configure func(cfg *server.Config)
	// ConfigureNode, when set, adjusts each server's cluster configuration
	// before it joins.
	ConfigureNode func(cfg *node.Config)
	// Setup, when set, runs for each server after it joined the cluster and
	// before it starts: register handlers, remotes and filters here.
	Setup func(m *Member) error
	// Membership, when set, makes each server's membership (such as an etcd
	// registrar) instead of sharing the cluster's static one. A membership
	// that is an io.Closer is closed after its server stops; a killed
	// server's is closed without leaving, as a crash would.
	Membership func(self cluster.ServerInfo) (cluster.Membership, error)
}

// Member is one server of a test cluster.
type Member struct {
	// Info is the server's cluster entry.
	Info cluster.ServerInfo
	// Server is the server.
	Server *server.Server
	// Node is its cluster membership.
	Node *node.Node
	// Membership is the server's membership: the cluster's static one, or
	// the one Options.Membership made.
	Membership cluster.Membership
}

// closeMembership closes a membership made by Options.Membership.
func (m *Member) closeMembership() {
	if _, ok := m.Membership.(*cluster.Static); ok {
		return
	}
	if c, ok := m.Membership.(io.Closer); ok {
		c.Close()
	}
}

// WSURL returns a frontend's WebSocket URL.
func (m *Member) WSURL() string { return "ws://" + m.Server.WSAddr().String() + "/" }

// TCPURL returns a frontend's raw TCP URL ("tcp://host:port").
func (m *Member) TCPURL() string { return "tcp://" + m.Server.TCPAddr().String() }

// Cluster is a running test cluster.
type Cluster struct {
	// Membership is the cluster's static membership; Add and Remove on it
	// are seen by every server at once. It is unused when
	// Options.Membership is set.
	Membership *cluster.Static

	opts    Options
	mu      sync.Mutex
	members []*Member
	counter map[string]int
}

// Start starts a cluster and stops it when the test ends.
func Start(t testing.TB, opts Options) *Cluster {
	t.Helper()
	if opts.Secret == "" {
		opts.Secret = "testkit-secret"
	}
	c := &Cluster{Membership: cluster.NewStatic(), opts: opts, counter: map[string]int{}}
	t.Cleanup(c.Close)
	for _, spec := range opts.Servers {
		for i := 0; i < max(spec.Count, 1); i++ {
			if _, err := c.Add(spec.Type, spec.Frontend); err != nil {
				t.Fatalf("clustertest: %v", err)
			}
		}
	}
	return c
}

// Add starts one more server of serverType and adds it to the membership.
// Its id is "<type>-<n>", counting from 1 per type.
func (c *Cluster) Add(serverType string, frontend bool) (*Member, error) {
	c.mu.Lock()
	c.counter[serverType]++
	id := fmt.Sprintf("%s-%d", serverType, c.counter[serverType])
	c.mu.Unlock()

	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	cfg := server.Config{ID: id, Type: serverType, Frontend: frontend}
	if frontend {
		cfg.WSAddr, cfg.TCPAddr = "127.0.0.1:0", "127.0.0.1:0"
	}
	if c.opts.Configure != nil {
		c.opts.Configure(&cfg)
	}
	srv, err := server.New(cfg)
	if err != nil {
		ln.Close()
		return nil, err
	}
	info := cluster.ServerInfo{ID: id, Type: serverType, Host: "127.0.0.1", RPCPort: ln.Addr().(*net.TCPAddr).Port, Frontend: frontend}
	ncfg := node.Config{Self: info, Membership: c.Membership, Secret: c.opts.Secret, Listener: ln}
	if c.opts.Membership != nil {
		if ncfg.Membership, err = c.opts.Membership(info); err != nil {
			ln.Close()
			return nil, err
		}
	}
	if c.opts.ConfigureNode != nil {
		c.opts.ConfigureNode(&ncfg)
	}
	m := &Member{Info: info, Server: srv, Membership: ncfg.Membership}
	node, err := node.Join(srv, ncfg)
	if err != nil {
		ln.Close()
		m.closeMembership()
		return nil, err
	}
	m.Node = node
	if c.opts.Setup != nil {
		if err := c.opts.Setup(m); err != nil {
			ln.Close()
			m.closeMembership()
			return nil, fmt.Errorf("setup %s: %w", id, err)
		}
	}
	if err := srv.Start(); err != nil {
		ln.Close()
		m.closeMembership()
		return nil, err
	}
	if err := node.Start(); err != nil {
		m.closeMembership()
		return nil, err
	}
	if frontend {
		info.WSPort = srv.WSAddr().(*net.TCPAddr).Port
		info.TCPPort = srv.TCPAddr().(*net.TCPAddr).Port
		m.Info = info
	}
	c.mu.Lock()
	c.members = append(c.members, m)
	c.mu.Unlock()
	if m.Membership == cluster.Membership(c.Membership) {
		c.Membership.Add(info)
	}
	return m, nil
}

// Members returns the servers of a type ("" for all), in start order.
func (c *Cluster) Members(serverType string) []*Member {
	c.mu.Lock()
	defer c.mu.Unlock()
	var out []*Member
	for _, m := range c.members {
		if serverType == "" || m.Info.Type == serverType {
			out = append(out, m)
		}
	}
	return out
}

// Member returns a server by id.
func (c *Cluster) Member(id string) *Member {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, m := range c.members {
		if m.Info.ID == id {
			return m
		}
	}
	return nil
}

// Kill crashes a server: it stops serving at once, without draining, and
// only then leaves the static membership (as a lease expiry would tell the
// others). A membership made by Options.Membership is closed without
// leaving: the others learn of the crash when its registration expires.
func (c *Cluster) Kill(id string) {
	if m := c.remove(id); m != nil {
		m.Node.Kill()
		if m.Membership == cluster.Membership(c.Membership) {
			c.Membership.Remove(id)
		}
		m.closeMembership()
	}
}

// Stop removes a server gracefully: it leaves the membership first, then
// drains and closes.
func (c *Cluster) Stop(id string) error {
	m := c.remove(id)
	if m == nil {
		return fmt.Errorf("clustertest: no server %q", id)
	}
	if m.Membership == cluster.Membership(c.Membership) {
		c.Membership.Remove(id)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	err := m.Node.Close(ctx)
	m.closeMembership()
	return err
}

func (c *Cluster) remove(id string) *Member {
	c.mu.Lock()
	defer c.mu.Unlock()
	for i, m := range c.members {
		if m.Info.ID == id {
			c.members = append(c.members[:i], c.members[i+1:]...)
			return m
		}
	}
	return nil
}

// Close stops every server.
func (c *Cluster) Close() {
	c.mu.Lock()
	all := c.members
	c.members = nil
	c.mu.Unlock()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	var wg sync.WaitGroup
	for _, m := range all {
		wg.Add(1)
		go func() {
			defer wg.Done()
			m.Node.Close(ctx)
			m.closeMembership()
		}()
	}
	wg.Wait()
}
