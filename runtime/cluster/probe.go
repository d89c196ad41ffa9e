package cluster

import (
	"context"
	"log/slog"
	"net"
	"slices"
	"sync"
	"time"
)

// Defaults of ProbeConfig.
const (
	// DefaultProbeInterval is how often a Probed membership dials the
	// servers this process does not run.
	DefaultProbeInterval = time.Second
	// DefaultProbeDownAfter is how many failed probes in a row mark a
	// server down.
	DefaultProbeDownAfter = 2
)

// ProbeConfig tunes a Probed membership. The zero value is ready to use.
type ProbeConfig struct {
	// Interval is how often the servers not run here are dialled once
	// Start was called (default DefaultProbeInterval).
	Interval time.Duration
	// Timeout bounds each dial (default the Interval, at most 1s).
	Timeout time.Duration
	// DownAfter is how many probes in a row a server that is up must fail
	// to be marked down (default DefaultProbeDownAfter). One successful
	// probe marks a server up.
	DownAfter int
	// Logger receives a line whenever a server is marked up or down
	// (default slog.Default()).
	Logger *slog.Logger
}

// Probed is a Membership built on the servers of a static cluster file that
// lists only those it can reach: the servers this process runs (the local
// ones) are always members, every other server of the file is a member
// while a TCP connection to its RPC port succeeds. A server that is down is
// not a member, so routing skips it: its share of users goes to the others
// until it comes back, and a server started later with the same file is
// routed to from the next probe on. NewProbed probes once; Start probes
// every interval until Close. It is safe for concurrent use.
type Probed struct {
	cfg ProbeConfig

	mu      sync.Mutex
	all     []ServerInfo // the file's servers, sorted by id; local ones updated
	local   map[string]bool
	up      map[string]bool // remote servers found reachable
	fails   map[string]int  // failed probes in a row of remote servers that are up
	subs    subscribers
	started bool               // guarded by mu
	closed  bool               // guarded by mu
	cancel  context.CancelFunc // ends the prober; guarded by mu
	done    chan struct{}      // closed when the prober returned

	probing sync.Mutex // one probe round at a time
}

var _ Membership = (*Probed)(nil)

// NewProbed returns a membership of servers, of which the ids in local run
// in this process. It probes the others once before returning (each dial
// bounded by cfg.Timeout); Start probes them every cfg.Interval after that,
// until Close.
func NewProbed(servers []ServerInfo, local []string, cfg ProbeConfig) *Probed {
	if cfg.Interval <= 0 {
		cfg.Interval = DefaultProbeInterval
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = min(cfg.Interval, time.Second)
	}
	if cfg.DownAfter <= 0 {
		cfg.DownAfter = DefaultProbeDownAfter
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	p := &Probed{
		cfg:   cfg,
		all:   sortServers(slices.Clone(servers)),
		local: map[string]bool{},
		up:    map[string]bool{},
		fails: map[string]int{},
		done:  make(chan struct{}),
	}
	for _, id := range local {
		p.local[id] = true
	}
	p.Probe(context.Background())
	return p
}

// Start probes every ProbeConfig.Interval, in a goroutine of its own,
// until Close. Calls after the first, and calls after Close, do nothing.
func (p *Probed) Start() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.started || p.closed {
		return
	}
	p.started = true
	ctx, cancel := context.WithCancel(context.Background())
	p.cancel = cancel
	go p.run(ctx)
}

// run probes every interval until ctx ends.
func (p *Probed) run(ctx context.Context) {
	defer close(p.done)
	t := time.NewTicker(p.cfg.Interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			p.Probe(ctx)
		}
	}
}

// Servers implements Membership: the local servers and the reachable ones,
// sorted by id.
func (p *Probed) Servers() []ServerInfo {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.membersLocked()
}

func (p *Probed) membersLocked() []ServerInfo {
	out := make([]ServerInfo, 0, len(p.all))
	for _, s := range p.all {
		if p.local[s.ID] || p.up[s.ID] {
			out = append(out, s)
		}
	}
	return out
}

// Subscribe implements Membership.
func (p *Probed) Subscribe(fn func([]ServerInfo)) (cancel func()) { return p.subs.add(fn) }

// Update replaces the entry of a server of the file, such as a local
// server's once its listeners are bound (a port 0 in the file becomes the
// port picked), and notifies the subscribers. An id the file does not list
// is ignored.
func (p *Probed) Update(s ServerInfo) {
	p.mu.Lock()
	i := slices.IndexFunc(p.all, func(o ServerInfo) bool { return o.ID == s.ID })
	if i < 0 {
		p.mu.Unlock()
		return
	}
	p.all[i] = s
	p.notifyLocked()
}

// notifyLocked unlocks p.mu and calls the subscribers with the members.
func (p *Probed) notifyLocked() {
	list := p.membersLocked()
	subs := p.subs.list()
	p.mu.Unlock()
	for _, fn := range subs {
		fn(list)
	}
}

// Probe dials every server that is not local once, at the same time, and
// notifies the subscribers when a server was marked up or down. The
// membership probes by itself once started; Probe is for tests and for
// callers that decide when to probe.
func (p *Probed) Probe(ctx context.Context) {
	p.probing.Lock()
	defer p.probing.Unlock()
	p.mu.Lock()
	var remote []ServerInfo
	for _, s := range p.all {
		if !p.local[s.ID] {
			remote = append(remote, s)
		}
	}
	p.mu.Unlock()

	reached := make([]bool, len(remote))
	var wg sync.WaitGroup
	for i, s := range remote {
		wg.Go(func() {
			d := net.Dialer{Timeout: p.cfg.Timeout}
			if c, err := d.DialContext(ctx, "tcp", s.RPCAddr()); err == nil {
				c.Close()
				reached[i] = true
			}
		})
	}
	wg.Wait()
	if ctx.Err() != nil {
		return // the dials were cut short: they tell nothing
	}

	p.mu.Lock()
	changed := false
	for i, s := range remote {
		switch {
		case reached[i]:
			delete(p.fails, s.ID)
			if !p.up[s.ID] {
				changed = true
				p.up[s.ID] = true
				p.cfg.Logger.Info("cluster: server is up", "server", s.ID, "type", s.Type, "rpc", s.RPCAddr())
			}
		case p.up[s.ID]:
			if p.fails[s.ID]++; p.fails[s.ID] >= p.cfg.DownAfter {
				changed = true
				delete(p.up, s.ID)
				delete(p.fails, s.ID)
				p.cfg.Logger.Info("cluster: server is down", "server", s.ID, "type", s.Type, "rpc", s.RPCAddr())
			}
		}
	}
	if !changed || p.closed {
		p.mu.Unlock()
		return
	}
	p.notifyLocked()
}

// Close stops the prober Start started and waits for it to return (a
// probe in progress is cut short); the members stay as they were, and the
// subscribers are not called by probes any more. Calls after the first do
// nothing.
func (p *Probed) Close() {
	p.mu.Lock()
	p.closed = true
	cancel := p.cancel
	p.cancel = nil
	p.mu.Unlock()
	if cancel != nil {
		cancel()
		<-p.done
	}
}
