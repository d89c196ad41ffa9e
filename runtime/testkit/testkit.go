// Package testkit starts a whole pomelo-go cluster in one process on
// loopback: Apps of any types, frontends and backends, on a static
// membership (or one of the caller's, such as etcd), for users' tests.
package testkit

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"testing"

	"github.com/pomelo-go/pomelo"
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

// Config describes a test cluster.
type Config struct {
	// Servers lists the server types to start.
	Servers []Spec
	// Secret authenticates the servers to each other (default a fixed test
	// secret).
	Secret string
	// Configure, when set, adjusts each server's configuration before its
	// App is made (filters, error handler, logger, timeouts).
	Configure func(cfg *pomelo.Config)
	// Setup, when set, runs for each server after its App is made and
	// before it serves: register handlers and remotes here.
	Setup func(m *Member) error
	// Membership, when set, makes each server's membership (such as an etcd
	// registrar) instead of sharing the cluster's static one. A membership
	// that is an io.Closer is closed after its server stops.
	Membership func(self cluster.ServerInfo) (cluster.Membership, error)
}

// Member is one server of a test cluster.
type Member struct {
	// Info is the server's cluster entry, with its bound ports.
	Info cluster.ServerInfo
	// App is the server.
	App *pomelo.App
	// Membership is the server's membership: the cluster's static one, or
	// the one Config.Membership made.
	Membership cluster.Membership

	stop   context.CancelFunc
	served chan error // Serve's result
}

// WSURL returns a frontend's WebSocket URL.
func (m *Member) WSURL() string { return "ws://" + m.App.WSAddr().String() + "/" }

// TCPURL returns a frontend's raw TCP URL ("tcp://host:port").
func (m *Member) TCPURL() string { return "tcp://" + m.App.TCPAddr().String() }

// closeMembership closes a membership made by Config.Membership.
func (m *Member) closeMembership() {
	if _, ok := m.Membership.(*cluster.Static); ok {
		return
	}
	if c, ok := m.Membership.(io.Closer); ok {
		c.Close()
	}
}

// Cluster is a running test cluster.
type Cluster struct {
	// Membership is the cluster's static membership; Add and Remove on it
	// are seen by every server at once. It is unused when
	// Config.Membership is set.
	Membership *cluster.Static

	opts    Config
	mu      sync.Mutex
	members []*Member
	counter map[string]int
}

// Start starts a cluster and stops it when the test ends.
func Start(t testing.TB, opts Config) *Cluster {
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

// Add starts one more server of serverType, waits until it serves and adds
// it to the membership. Its id is "<type>-<n>", counting from 1 per type.
func (c *Cluster) Add(serverType string, frontend bool) (*Member, error) {
	c.mu.Lock()
	c.counter[serverType]++
	id := fmt.Sprintf("%s-%d", serverType, c.counter[serverType])
	c.mu.Unlock()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	cfg := pomelo.Config{ID: id, Type: serverType, Frontend: frontend, RPCListener: ln, Secret: c.opts.Secret, Membership: c.Membership}
	if frontend {
		cfg.WSAddr, cfg.TCPAddr = "127.0.0.1:0", "127.0.0.1:0"
	}
	info := cluster.ServerInfo{ID: id, Type: serverType, Host: "127.0.0.1", RPCPort: ln.Addr().(*net.TCPAddr).Port, Frontend: frontend}
	if c.opts.Membership != nil {
		if cfg.Membership, err = c.opts.Membership(info); err != nil {
			ln.Close()
			return nil, err
		}
	}
	if c.opts.Configure != nil {
		c.opts.Configure(&cfg)
	}
	m := &Member{Info: info, Membership: cfg.Membership, served: make(chan error, 1)}
	if m.App, err = pomelo.New(cfg); err != nil {
		ln.Close()
		m.closeMembership()
		return nil, err
	}
	if c.opts.Setup != nil {
		if err := c.opts.Setup(m); err != nil {
			ln.Close()
			m.closeMembership()
			return nil, fmt.Errorf("setup %s: %w", id, err)
		}
	}
	ctx, stop := context.WithCancel(context.Background())
	m.stop = stop
	go func() { m.served <- m.App.Serve(ctx) }()
	select {
	case <-m.App.Ready():
	case err := <-m.served:
		stop()
		m.closeMembership()
		if err == nil {
			err = errors.New("stopped before serving")
		}
		return nil, err
	}
	m.Info = m.App.Info()
	c.mu.Lock()
	c.members = append(c.members, m)
	c.mu.Unlock()
	if m.Membership == cluster.Membership(c.Membership) {
		c.Membership.Add(m.Info)
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

// Member returns a server by id, or nil.
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

// Stop removes a server gracefully: it leaves the membership first, then
// drains and closes; Stop returns what its Serve returned.
func (c *Cluster) Stop(id string) error {
	m := c.remove(id)
	if m == nil {
		return fmt.Errorf("testkit: no server %q", id)
	}
	return c.stop(m)
}

func (c *Cluster) stop(m *Member) error {
	if m.Membership == cluster.Membership(c.Membership) {
		c.Membership.Remove(m.Info.ID)
	}
	m.stop()
	err := <-m.served // Serve drains for at most its ShutdownTimeout
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
	var wg sync.WaitGroup
	for _, m := range all {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c.stop(m)
		}()
	}
	wg.Wait()
}
