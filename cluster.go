package pomelo

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/pomelo-go/pomelo/runtime/cluster"
)

// ClusterConfig tune StartCluster.
type ClusterConfig struct {
	// Servers are the ids of the servers of the file to run here (default
	// all of them).
	Servers []string
	// EphemeralPorts makes every server run here listen on ports the system
	// picks, whatever the file says, and publish them to the membership
	// (for tests; see App.WSAddr).
	EphemeralPorts bool
	// Configure, when set, adjusts each server's configuration before the
	// server is made: give each server its own etcd membership
	// (etcdmember.Membership) and online status (Config.Online) there.
	Configure func(cfg *Config)
	// ProbeInterval is how often the file's servers not run here are
	// probed (default cluster.DefaultProbeInterval). No server is probed
	// when Configure replaced every server's Membership.
	ProbeInterval time.Duration
	// Logger receives the logs (default slog.Default()).
	Logger *slog.Logger
}

// Cluster is the servers of one cluster file that run in this process,
// started by StartCluster.
type Cluster struct {
	members *cluster.Probed
	apps    []*App // in start order: backends first
	cancels []context.CancelFunc
	done    []chan struct{} // closed when the app's Serve returned
	errs    []error         // Serve's results, read after done

	stopped   chan struct{} // closed when a server stops by itself
	stopOnce  sync.Once
	closeOnce sync.Once
	closeErr  error
}

// RunCluster runs every server of the cluster file at path in this process
// until ctx ends, then drains them, frontends first. setup runs for each
// server before any serves: register its handlers and remotes there
// (switch on app.Type()). It returns nil after a clean drain, or the
// errors of the servers that failed; one server failing stops them all.
func RunCluster(ctx context.Context, path string, setup func(app *App) error) error {
	f, err := cluster.LoadFile(path)
	if err != nil {
		return fmt.Errorf("pomelo: %w", err)
	}
	c, err := StartCluster(f, ClusterConfig{}, setup)
	if err != nil {
		return err
	}
	select {
	case <-ctx.Done():
	case <-c.Stopped():
	}
	return c.Close()
}

// StartCluster starts servers of the cluster file f in this process and
// returns once each serves and sees the others in its membership: backends
// first, so that frontends never forward to a server that is not serving
// yet. setup, when not nil, runs for each
// server before any serves. On error, what was started is stopped again.
//
// They share one membership, the file's servers probed (cluster.NewProbed):
// the servers run here, and each other server of the file while its RPC
// port answers. So a process started later with the same file and other
// Servers joins the cluster, and routing skips a server whose process is
// gone until it comes back.
func StartCluster(f *cluster.File, opts ClusterConfig, setup func(app *App) error) (*Cluster, error) {
	run, err := selectServers(f, opts.Servers)
	if err != nil {
		return nil, err
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	local := make([]string, len(run))
	for i, s := range run {
		local[i] = s.ID
	}
	members := cluster.NewProbed(f.Servers, local, cluster.ProbeConfig{Interval: opts.ProbeInterval, Logger: opts.Logger})
	c := &Cluster{members: members, stopped: make(chan struct{})}

	probed := false // whether a server uses members
	// Bind the RPC listeners first: the membership publishes their ports.
	lns := make([]net.Listener, len(run))
	fail := func(err error) (*Cluster, error) {
		for _, ln := range lns {
			if ln != nil {
				ln.Close()
			}
		}
		for _, a := range c.apps[len(c.done):] {
			a.closeUnstarted()
		}
		c.Close()
		return nil, err
	}
	for i, s := range run {
		addr := s.RPCAddr()
		if opts.EphemeralPorts {
			addr = net.JoinHostPort(s.Host, "0")
		}
		ln, err := net.Listen("tcp", addr)
		if err != nil {
			return fail(fmt.Errorf("pomelo: server %s: listen rpc: %w", s.ID, err))
		}
		lns[i] = ln
		run[i].RPCPort = ln.Addr().(*net.TCPAddr).Port
		members.Update(run[i])
	}
	for i, s := range run {
		client := func(port int) string {
			if port <= 0 {
				return ""
			}
			if opts.EphemeralPorts {
				port = 0
			}
			return net.JoinHostPort(s.Host, strconv.Itoa(port))
		}
		cfg := Config{
			ID:          s.ID,
			Type:        s.Type,
			Frontend:    s.Frontend,
			Host:        s.Host,
			RPCListener: lns[i],
			WSAddr:      client(s.WSPort),
			TCPAddr:     client(s.TCPPort),
			Membership:  members,
			Secret:      f.Secret,
			Logger:      opts.Logger,
		}
		if opts.Configure != nil {
			opts.Configure(&cfg)
		}
		probed = probed || cfg.Membership == cluster.Membership(members)
		a, err := New(cfg)
		if err != nil {
			return fail(err)
		}
		lns[i] = nil // the app closes it now
		c.apps = append(c.apps, a)
		if setup != nil {
			if err := setup(a); err != nil {
				return fail(fmt.Errorf("pomelo: setup %s: %w", s.ID, err))
			}
		}
	}
	c.errs = make([]error, len(c.apps))
	for i, a := range c.apps {
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan struct{})
		c.cancels = append(c.cancels, cancel)
		c.done = append(c.done, done)
		go func() {
			defer close(done)
			c.errs[i] = a.Serve(ctx)
			c.stopOnce.Do(func() { close(c.stopped) })
		}()
		select {
		case <-a.Ready():
		case <-done:
			return fail(c.errs[i])
		}
		if info := a.Info(); opts.EphemeralPorts && a.Frontend() {
			members.Update(info)
		}
	}
	if err := c.awaitMembers(memberWait); err != nil {
		return fail(err)
	}
	if probed {
		members.Start()
	}
	return c, nil
}

// memberWait bounds how long StartCluster waits for the servers it started
// to see each other in their memberships.
const memberWait = 10 * time.Second

// awaitMembers waits until each server sees every server started here in
// its membership: at once with the shared probed membership, after a watch
// round trip with memberships of their own, such as etcd's.
func (c *Cluster) awaitMembers(timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for _, a := range c.apps {
		for _, o := range c.apps {
			for !slices.ContainsFunc(a.Members(o.Type()), func(s cluster.ServerInfo) bool { return s.ID == o.ID() }) {
				if time.Now().After(deadline) {
					return fmt.Errorf("pomelo: server %s does not see %s in its membership after %v", a.ID(), o.ID(), timeout)
				}
				select {
				case <-c.stopped:
					return errors.New("pomelo: a server stopped while the cluster started")
				case <-time.After(10 * time.Millisecond):
				}
			}
		}
	}
	return nil
}

// selectServers returns the servers of f with the ids given (all for
// none), backends first.
func selectServers(f *cluster.File, ids []string) ([]cluster.ServerInfo, error) {
	var run []cluster.ServerInfo
	if len(ids) == 0 {
		run = slices.Clone(f.Servers)
	}
	for _, id := range ids {
		s, ok := f.Server(id)
		if !ok {
			return nil, fmt.Errorf("pomelo: no server %q in the cluster file", id)
		}
		if slices.ContainsFunc(run, func(o cluster.ServerInfo) bool { return o.ID == id }) {
			return nil, fmt.Errorf("pomelo: server %q listed twice", id)
		}
		run = append(run, s)
	}
	if len(run) == 0 {
		return nil, errors.New("pomelo: no server to run")
	}
	slices.SortStableFunc(run, func(a, b cluster.ServerInfo) int {
		switch {
		case a.Frontend == b.Frontend:
			return 0
		case a.Frontend:
			return 1
		}
		return -1
	})
	return run, nil
}

// Apps returns the servers, backends first.
func (c *Cluster) Apps() []*App { return slices.Clone(c.apps) }

// App returns the server with id, or nil.
func (c *Cluster) App(id string) *App {
	for _, a := range c.apps {
		if a.ID() == id {
			return a
		}
	}
	return nil
}

// Stopped is closed when a server stopped serving by itself or because of
// Close.
func (c *Cluster) Stopped() <-chan struct{} { return c.stopped }

// Close drains the servers gracefully: the frontends first (their clients
// are kicked with connector.KickReasonShutdown), then the backends. It returns the
// servers' Serve errors; calls after the first return the same.
func (c *Cluster) Close() error {
	c.closeOnce.Do(func() {
		var errs []error
		stop := func(frontends bool) {
			for i, a := range c.apps[:len(c.done)] {
				if a.Frontend() == frontends {
					c.cancels[i]()
				}
			}
			for i, a := range c.apps[:len(c.done)] {
				if a.Frontend() == frontends {
					<-c.done[i]
					errs = append(errs, c.errs[i])
				}
			}
		}
		stop(true)
		stop(false)
		c.members.Close()
		c.closeErr = errors.Join(errs...)
	})
	return c.closeErr
}
