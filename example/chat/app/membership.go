package app

import (
	"context"
	"log/slog"
	"maps"
	"net"
	"slices"
	"sync"
	"time"

	"github.com/pomelo-go/pomelo/runtime/cluster"
)

// Probed is a cluster.Membership built on a static cluster file that lists
// only the servers it can reach: the servers this process runs are always
// members, every other server of the file is a member while a TCP connection
// to its RPC port succeeds. It probes every interval.
//
// This is how a process started later with the same cluster file joins a
// running cluster: the file lists every server that may run, the others
// notice the new one at their next probe and route to it, and they stop
// routing to a server whose process is gone. A server that is down is not
// routed to, so a client gets UNAVAILABLE only for the rooms the server held.
type Probed struct {
	interval time.Duration
	timeout  time.Duration
	log      *slog.Logger

	mu      sync.Mutex
	all     []cluster.ServerInfo // as in the file, by id; local entries updated
	local   map[string]bool
	up      map[string]bool // remote servers found reachable
	fails   map[string]int  // failed probes in a row of servers that are up
	subs    map[int]func([]cluster.ServerInfo)
	nextSub int

	probing sync.Mutex // one probe round at a time
	stop    chan struct{}
	done    chan struct{}
	started bool // guarded by mu
	closed  bool // guarded by mu
}

var _ cluster.Membership = (*Probed)(nil)

// downAfter is how many probes in a row a member must fail to be dropped.
const downAfter = 2

// NewProbed returns a membership of servers, of which the ids in local run
// in this process. It probes once before returning; Start probes every
// interval (default 1s) after that.
func NewProbed(servers []cluster.ServerInfo, local []string, interval time.Duration, log *slog.Logger) *Probed {
	if interval <= 0 {
		interval = time.Second
	}
	if log == nil {
		log = slog.Default()
	}
	p := &Probed{
		interval: interval,
		timeout:  min(interval, time.Second),
		log:      log,
		all:      slices.Clone(servers),
		local:    map[string]bool{},
		up:       map[string]bool{},
		fails:    map[string]int{},
		subs:     map[int]func([]cluster.ServerInfo){},
		stop:     make(chan struct{}),
		done:     make(chan struct{}),
	}
	for _, id := range local {
		p.local[id] = true
	}
	p.Probe(context.Background())
	return p
}

// Servers implements cluster.Membership: the local servers and the
// reachable ones, sorted by id.
func (p *Probed) Servers() []cluster.ServerInfo {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.membersLocked()
}

func (p *Probed) membersLocked() []cluster.ServerInfo {
	out := make([]cluster.ServerInfo, 0, len(p.all))
	for _, s := range p.all {
		if p.local[s.ID] || p.up[s.ID] {
			out = append(out, s)
		}
	}
	slices.SortFunc(out, func(a, b cluster.ServerInfo) int {
		switch {
		case a.ID < b.ID:
			return -1
		case a.ID > b.ID:
			return 1
		}
		return 0
	})
	return out
}

// Subscribe implements cluster.Membership.
func (p *Probed) Subscribe(fn func([]cluster.ServerInfo)) (cancel func()) {
	p.mu.Lock()
	id := p.nextSub
	p.nextSub++
	p.subs[id] = fn
	p.mu.Unlock()
	return func() {
		p.mu.Lock()
		delete(p.subs, id)
		p.mu.Unlock()
	}
}

// Update replaces the entry of a local server, once its listeners are bound
// (a port 0 in the file becomes the port picked), and tells the
// subscribers.
func (p *Probed) Update(s cluster.ServerInfo) {
	p.mu.Lock()
	for i := range p.all {
		if p.all[i].ID == s.ID {
			p.all[i] = s
		}
	}
	p.notifyLocked()
}

// notifyLocked unlocks p.mu and calls the subscribers with the members.
func (p *Probed) notifyLocked() {
	list := p.membersLocked()
	subs := slices.Collect(maps.Values(p.subs))
	p.mu.Unlock()
	for _, fn := range subs {
		fn(list)
	}
}

// Probe dials every server that is not local once, and tells the
// subscribers when the set of reachable servers changed.
func (p *Probed) Probe(ctx context.Context) {
	p.probing.Lock()
	defer p.probing.Unlock()
	p.mu.Lock()
	var remote []cluster.ServerInfo
	for _, s := range p.all {
		if !p.local[s.ID] {
			remote = append(remote, s)
		}
	}
	p.mu.Unlock()

	up := make([]bool, len(remote))
	var wg sync.WaitGroup
	for i, s := range remote {
		wg.Add(1)
		go func() {
			defer wg.Done()
			d := net.Dialer{Timeout: p.timeout}
			if c, err := d.DialContext(ctx, "tcp", s.RPCAddr()); err == nil {
				c.Close()
				up[i] = true
			}
		}()
	}
	wg.Wait()

	p.mu.Lock()
	changed := false
	for i, s := range remote {
		switch {
		case up[i]:
			delete(p.fails, s.ID)
			if !p.up[s.ID] {
				changed = true
				p.up[s.ID] = true
				p.log.Info("cluster: server is up", "id", s.ID, "type", s.Type, "rpc", s.RPCAddr())
			}
		case p.up[s.ID]:
			if p.fails[s.ID]++; p.fails[s.ID] >= downAfter {
				changed = true
				delete(p.up, s.ID)
				delete(p.fails, s.ID)
				p.log.Info("cluster: server is down", "id", s.ID, "type", s.Type, "rpc", s.RPCAddr())
			}
		}
	}
	if !changed {
		p.mu.Unlock()
		return
	}
	p.notifyLocked()
}

// Start probes every interval until Close.
func (p *Probed) Start() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.started || p.closed {
		return
	}
	p.started = true
	go func() {
		defer close(p.done)
		t := time.NewTicker(p.interval)
		defer t.Stop()
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		go func() {
			<-p.stop
			cancel()
		}()
		for {
			select {
			case <-p.stop:
				return
			case <-t.C:
				p.Probe(ctx)
			}
		}
	}()
}

// Close stops probing and waits for a probe in progress to end.
func (p *Probed) Close() {
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return
	}
	p.closed = true
	started := p.started
	close(p.stop)
	p.mu.Unlock()
	if started {
		<-p.done
	}
}
