// Package testkit starts a whole pomelo-go cluster in one process on
// loopback: frontends and backends of any types on a static membership, for
// this project's tests and for users' own.
package testkit

import (
	"context"
	"fmt"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/pomelo-go/pomelo/runtime/cluster"
	"github.com/pomelo-go/pomelo/runtime/server"
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
	ConfigureNode func(cfg *cluster.Config)
	// Setup, when set, runs for each server after it joined the cluster and
	// before it starts: register handlers, remotes and filters here.
	Setup func(m *Member) error
}

// Member is one server of a test cluster.
type Member struct {
	// Info is the server's cluster entry.
	Info cluster.ServerInfo
	// Server is the server.
	Server *server.Server
	// Node is its cluster membership.
	Node *cluster.Node
}

// WSURL returns a frontend's WebSocket URL.
func (m *Member) WSURL() string { return "ws://" + m.Server.WSAddr().String() + "/" }

// TCPURL returns a frontend's raw TCP URL ("tcp://host:port").
func (m *Member) TCPURL() string { return "tcp://" + m.Server.TCPAddr().String() }

// Cluster is a running test cluster.
type Cluster struct {
	// Membership is the cluster's static membership; Add and Remove on it
	// are seen by every server at once.
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
				t.Fatalf("testkit: %v", err)
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
	ncfg := cluster.Config{Self: info, Membership: c.Membership, Secret: c.opts.Secret, Listener: ln}
	if c.opts.ConfigureNode != nil {
		c.opts.ConfigureNode(&ncfg)
	}
	node, err := cluster.Join(srv, ncfg)
	if err != nil {
		ln.Close()
		return nil, err
	}
	m := &Member{Info: info, Server: srv, Node: node}
	if c.opts.Setup != nil {
		if err := c.opts.Setup(m); err != nil {
			ln.Close()
			return nil, fmt.Errorf("setup %s: %w", id, err)
		}
	}
	if err := srv.Start(); err != nil {
		ln.Close()
		return nil, err
	}
	if err := node.Start(); err != nil {
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
	c.Membership.Add(info)
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
// only then leaves the membership (as a lease expiry would tell the others).
func (c *Cluster) Kill(id string) {
	if m := c.remove(id); m != nil {
		m.Node.Kill()
		c.Membership.Remove(id)
	}
}

// Stop removes a server gracefully: it leaves the membership first, then
// drains and closes.
func (c *Cluster) Stop(id string) error {
	m := c.remove(id)
	if m == nil {
		return fmt.Errorf("testkit: no server %q", id)
	}
	c.Membership.Remove(id)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	return m.Node.Close(ctx)
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
		}()
	}
	wg.Wait()
}
