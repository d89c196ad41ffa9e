// Package etcdmember is cluster membership in etcd: a cluster.Registrar for
// clusters whose servers come and go.
//
// Each server registers under the cluster's key prefix (the key is the
// prefix followed by the server id, the value its cluster.ServerInfo as
// JSON) with a lease that it keeps alive; a server that crashes drops out
// when its lease expires. Every server watches the prefix and hands the
// whole member list to its subscribers (the server's App) after every
// change, so route functions see joins and leaves at once. A graceful
// leave (the App's Serve draining) deletes the key and revokes the lease before
// the server stops serving.
//
// While etcd is unreachable a server keeps the last member list it saw:
// watch errors never clear it. The watch is re-established, with a fresh
// read of the prefix, after errors, compaction and loss of the etcd leader,
// and a lost lease (etcd restarted without its data, or the lease expired
// during a partition) is replaced by a new registration.
//
// Use it as the Membership of the App's Config:
//
//	reg, err := etcdmember.New(ctx, etcdmember.Config{Endpoints: []string{"127.0.0.1:2379"}})
//	if err != nil { ... }
//	defer reg.Close()
//	app, err := pomelo.New(pomelo.Config{ID: "chat-1", Type: "chat", RPCAddr: addr, Membership: reg, Secret: secret, DrainDelay: time.Second})
package etcdmember

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"slices"
	"strings"
	"sync"
	"time"

	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
	"google.golang.org/grpc"
	"google.golang.org/grpc/backoff"

	"github.com/pomelo-go/pomelo/runtime/cluster"
)

// DefaultPrefix is the key prefix of a Config without one.
const DefaultPrefix = "/pomelo/servers/"

// Config describes how to reach etcd and where the cluster lives in it.
type Config struct {
	// Endpoints are the etcd client URLs ("http://127.0.0.1:2379").
	Endpoints []string
	// Prefix is the cluster's key prefix; each server registers at
	// Prefix + its id. Default DefaultPrefix. Servers of one cluster must
	// use the same prefix, and two clusters sharing an etcd different ones.
	Prefix string
	// LeaseTTL is how long a crashed server stays a member: its lease's time
	// to live, kept alive every third of it. Whole seconds, at least 2s;
	// default 10s.
	LeaseTTL time.Duration
	// DialTimeout bounds connecting to etcd in New (default 5s).
	DialTimeout time.Duration
	// RequestTimeout bounds each etcd request (default 5s).
	RequestTimeout time.Duration
	// ResyncInterval is how often the member list is read again as a safety
	// net beside the watch (default 1m; negative disables).
	ResyncInterval time.Duration
	// Username and Password authenticate to etcd, when it requires it.
	Username, Password string
	// TLS, when set, is the client TLS configuration.
	TLS *tls.Config
	// Client, when set, is used instead of dialling Endpoints (Endpoints,
	// DialTimeout, Username, Password and TLS are then ignored); Close
	// leaves it open.
	Client *clientv3.Client
	// Logger receives the membership's logs (default slog.Default()).
	Logger *slog.Logger
}

// Membership is a cluster.Registrar backed by etcd. It is safe for
// concurrent use.
type Membership struct {
	cfg     Config
	cli     *clientv3.Client
	ownCli  bool
	log     *slog.Logger
	ttl     int64 // lease TTL in seconds
	ctx     context.Context
	cancel  context.CancelFunc
	watchWG sync.WaitGroup
	resync  chan struct{} // asks the watcher to read the prefix again

	mu      sync.Mutex
	servers map[string]cluster.ServerInfo
	list    []cluster.ServerInfo // sorted by id; replaced, never mutated
	reg     *registration        // nil when not registered
	closed  bool

	notifyMu sync.Mutex // serializes subscriber calls
	subs     map[int]func([]cluster.ServerInfo)
	nextSub  int
}

// registration is this server's presence in etcd while registered.
type registration struct {
	self   cluster.ServerInfo
	key    string
	value  string
	cancel context.CancelFunc
	done   chan struct{}
	lost   chan struct{} // the watcher saw the key deleted

	// guarded by Membership.mu
	lease    clientv3.LeaseID // the lease the key is put with
	pending  clientv3.LeaseID // a new lease being put with the key
	rev      int64            // revision of the last put of the key
	warnedAt int64            // revision of the last "displaced" warning
}

var _ cluster.Registrar = (*Membership)(nil)

// New connects to etcd, reads the cluster's members, and starts watching
// them. It fails when etcd cannot be read before ctx is done or the dial
// timeout passes.
func New(ctx context.Context, cfg Config) (*Membership, error) {
	if cfg.Prefix == "" {
		cfg.Prefix = DefaultPrefix
	}
	if cfg.LeaseTTL <= 0 {
		cfg.LeaseTTL = 10 * time.Second
	}
	if cfg.DialTimeout <= 0 {
		cfg.DialTimeout = 5 * time.Second
	}
	if cfg.RequestTimeout <= 0 {
		cfg.RequestTimeout = 5 * time.Second
	}
	if cfg.ResyncInterval == 0 {
		cfg.ResyncInterval = time.Minute
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	m := &Membership{
		cfg:     cfg,
		cli:     cfg.Client,
		log:     cfg.Logger.With("component", "etcdmember"),
		ttl:     max(2, int64(math.Ceil(cfg.LeaseTTL.Seconds()))),
		resync:  make(chan struct{}, 1),
		servers: map[string]cluster.ServerInfo{},
		subs:    map[int]func([]cluster.ServerInfo){},
	}
	if m.cli == nil {
		if len(cfg.Endpoints) == 0 {
			return nil, errors.New("etcdmember: no endpoints")
		}
		cli, err := clientv3.New(clientv3.Config{
			Endpoints:   cfg.Endpoints,
			DialTimeout: cfg.DialTimeout,
			Username:    cfg.Username,
			Password:    cfg.Password,
			TLS:         cfg.TLS,
			Logger:      zap.NewNop(),
			// Reconnect quickly after etcd comes back: grpc's default
			// backoff grows to two minutes.
			DialOptions: []grpc.DialOption{grpc.WithConnectParams(grpc.ConnectParams{
				Backoff:           backoff.Config{BaseDelay: 100 * time.Millisecond, Multiplier: 1.6, Jitter: 0.2, MaxDelay: 2 * time.Second},
				MinConnectTimeout: cfg.DialTimeout,
			})},
		})
		if err != nil {
			return nil, fmt.Errorf("etcdmember: %w", err)
		}
		m.cli, m.ownCli = cli, true
	}
	gctx, cancel := context.WithTimeout(ctx, cfg.DialTimeout)
	rev, err := m.load(gctx)
	cancel()
	if err != nil {
		if m.ownCli {
			m.cli.Close()
		}
		return nil, fmt.Errorf("etcdmember: read members from %v: %w", cfg.Endpoints, err)
	}
	m.ctx, m.cancel = context.WithCancel(context.Background())
	m.watchWG.Add(1)
	go m.watch(rev)
	return m, nil
}

// Client returns the etcd client.
func (m *Membership) Client() *clientv3.Client { return m.cli }

// Prefix returns the cluster's key prefix.
func (m *Membership) Prefix() string { return m.cfg.Prefix }

// Servers implements cluster.Membership: the members as last seen in etcd,
// sorted by id.
func (m *Membership) Servers() []cluster.ServerInfo {
	m.mu.Lock()
	defer m.mu.Unlock()
	return slices.Clone(m.list)
}

// Subscribe implements cluster.Membership. fn is called at once with the
// current members, then with the whole list after every change, one call
// at a time, until the returned function is called.
func (m *Membership) Subscribe(fn func([]cluster.ServerInfo)) (cancel func()) {
	m.notifyMu.Lock()
	id := m.nextSub
	m.nextSub++
	m.subs[id] = fn
	fn(m.Servers())
	m.notifyMu.Unlock()
	return func() {
		m.notifyMu.Lock()
		delete(m.subs, id)
		m.notifyMu.Unlock()
	}
}

// key returns the key of server id.
func (m *Membership) key(id string) string { return m.cfg.Prefix + id }

// Register implements cluster.Registrar: it puts self under the prefix with
// a new lease, and keeps both alive until Deregister or Close. It fails
// when etcd does not answer within the request timeout.
func (m *Membership) Register(self cluster.ServerInfo) error {
	if err := self.Validate(); err != nil {
		return err
	}
	value, err := json.Marshal(self)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithCancel(m.ctx)
	r := &registration{
		self:   self,
		key:    m.key(self.ID),
		value:  string(value),
		cancel: cancel,
		done:   make(chan struct{}),
		lost:   make(chan struct{}, 1),
	}
	m.mu.Lock()
	switch {
	case m.closed:
		err = errors.New("etcdmember: closed")
	case m.reg != nil:
		err = fmt.Errorf("etcdmember: already registered as %s", m.reg.self.ID)
	default:
		m.reg = r
	}
	m.mu.Unlock()
	if err != nil {
		cancel()
		return err
	}
	if err := m.put(ctx, r); err != nil {
		m.mu.Lock()
		m.reg = nil
		m.mu.Unlock()
		cancel()
		return fmt.Errorf("etcdmember: register %s: %w", self.ID, err)
	}
	go m.keepAlive(ctx, r)
	return nil
}

// put grants a lease and puts r's key with it.
func (m *Membership) put(ctx context.Context, r *registration) error {
	ctx, cancel := context.WithTimeout(ctx, m.cfg.RequestTimeout)
	defer cancel()
	lease, err := m.cli.Grant(ctx, m.ttl)
	if err != nil {
		return err
	}
	m.mu.Lock()
	r.pending = lease.ID
	m.mu.Unlock()
	res, err := m.cli.Put(ctx, r.key, r.value, clientv3.WithLease(lease.ID))
	m.mu.Lock()
	r.pending = 0
	if err == nil {
		r.lease, r.rev = lease.ID, res.Header.Revision
	}
	m.mu.Unlock()
	if err != nil {
		m.revokeLater(lease.ID)
	}
	return err
}

// revokeLater revokes a lease that is no longer used, in the background:
// if etcd cannot be reached it expires by itself.
func (m *Membership) revokeLater(id clientv3.LeaseID) {
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), m.cfg.RequestTimeout)
		defer cancel()
		m.cli.Revoke(ctx, id)
	}()
}

// keepAlive keeps r's lease alive, and registers again when the lease or
// the key is lost, until ctx is done.
func (m *Membership) keepAlive(ctx context.Context, r *registration) {
	defer close(r.done)
	for ctx.Err() == nil {
		m.mu.Lock()
		lease := r.lease
		m.mu.Unlock()
		kctx, kcancel := context.WithCancel(ctx)
		ch, err := m.cli.KeepAlive(kctx, lease)
		lostKey := false
		if err == nil {
		recv:
			for {
				select {
				case _, ok := <-ch:
					if !ok {
						break recv // lease expired, or etcd silent for a TTL
					}
				case <-r.lost:
					lostKey = true
					break recv
				}
			}
		}
		kcancel()
		if ctx.Err() != nil {
			return
		}
		if lostKey {
			m.log.Warn("etcd membership: registration key deleted; registering again", "server", r.self.ID)
		} else {
			m.log.Warn("etcd membership: lease keep-alive stopped", "server", r.self.ID, "error", err)
		}
		m.recover(ctx, r, lease, lostKey)
	}
}

// recover brings r back after its keep-alive stopped: while etcd cannot be
// reached it retries; when the lease turns out to be alive (etcd was only
// away for a while, and extends leases when it comes back) it keeps it;
// otherwise it registers again with a new lease. The old lease is revoked
// only after the key is put with the new one, so that the key never
// disappears in between.
func (m *Membership) recover(ctx context.Context, r *registration, lease clientv3.LeaseID, lostKey bool) {
	for wait := 50 * time.Millisecond; ctx.Err() == nil; wait = min(2*wait, time.Second) {
		if lostKey && m.stillRegistered(ctx, r) {
			return // an old deletion, since repaired
		}
		if !lostKey {
			kctx, cancel := context.WithTimeout(ctx, m.cfg.RequestTimeout)
			_, err := m.cli.KeepAliveOnce(kctx, lease)
			cancel()
			if err == nil {
				m.log.Info("etcd membership: lease still alive", "server", r.self.ID)
				return
			}
			if !errors.Is(err, rpctypes.ErrLeaseNotFound) {
				m.log.Debug("etcd membership: keep lease alive", "server", r.self.ID, "error", err)
				sleep(ctx, wait)
				continue
			}
		}
		err := m.put(ctx, r)
		if err == nil {
			m.log.Info("etcd membership: registered again", "server", r.self.ID)
			m.revokeLater(lease)
			// A lost lease may mean etcd lost its data: its revisions start
			// again, and the watch must start again from a fresh read.
			m.askResync()
			return
		}
		m.log.Debug("etcd membership: register again", "server", r.self.ID, "error", err)
		sleep(ctx, wait)
	}
}

// stillRegistered reports whether r's key is in etcd with r's lease.
func (m *Membership) stillRegistered(ctx context.Context, r *registration) bool {
	ctx, cancel := context.WithTimeout(ctx, m.cfg.RequestTimeout)
	defer cancel()
	res, err := m.cli.Get(ctx, r.key)
	if err != nil || len(res.Kvs) == 0 {
		return false
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	return clientv3.LeaseID(res.Kvs[0].Lease) == r.lease && string(res.Kvs[0].Value) == r.value
}

// Deregister implements cluster.Registrar: it stops keeping the
// registration alive, deletes the key (unless another process now holds
// it) and revokes the lease. Deregistering when not registered does
// nothing.
func (m *Membership) Deregister() error {
	m.mu.Lock()
	r := m.reg
	m.reg = nil
	m.mu.Unlock()
	if r == nil {
		return nil
	}
	r.cancel()
	<-r.done
	m.mu.Lock()
	lease := r.lease
	m.mu.Unlock()
	ctx, cancel := context.WithTimeout(context.Background(), m.cfg.RequestTimeout)
	defer cancel()
	_, err := m.cli.Txn(ctx).
		If(clientv3.Compare(clientv3.LeaseValue(r.key), "=", lease)).
		Then(clientv3.OpDelete(r.key)).
		Commit()
	if err == nil {
		if _, err = m.cli.Revoke(ctx, lease); errors.Is(err, rpctypes.ErrLeaseNotFound) {
			err = nil
		}
	}
	if err != nil {
		return fmt.Errorf("etcdmember: deregister %s: %w", r.self.ID, err)
	}
	// Others are told by their watch; this server's own view drops itself
	// at once.
	m.apply(func(servers map[string]cluster.ServerInfo) { delete(servers, r.self.ID) })
	return nil
}

// Close stops watching and keeping the registration alive, and closes the
// etcd client it dialled. It does not deregister: a registered server that
// only closes drops out when its lease expires, as after a crash. Call
// Deregister (the App does when it drains) first to leave gracefully.
func (m *Membership) Close() error {
	m.mu.Lock()
	if m.closed {
		m.mu.Unlock()
		return nil
	}
	m.closed = true
	r := m.reg
	m.reg = nil
	m.mu.Unlock()
	m.cancel()
	if r != nil {
		<-r.done
	}
	m.watchWG.Wait()
	if m.ownCli {
		return m.cli.Close()
	}
	return nil
}

// load reads every member and replaces the list with them; it returns the
// revision read at.
func (m *Membership) load(ctx context.Context) (int64, error) {
	res, err := m.cli.Get(ctx, m.cfg.Prefix, clientv3.WithPrefix())
	if err != nil {
		return 0, err
	}
	servers := map[string]cluster.ServerInfo{}
	for _, kv := range res.Kvs {
		if s, ok := m.parse(kv.Key, kv.Value); ok {
			servers[s.ID] = s
		}
	}
	m.apply(func(cur map[string]cluster.ServerInfo) {
		clear(cur)
		for id, s := range servers {
			cur[id] = s
		}
	})
	return res.Header.Revision, nil
}

// parse decodes a member's key and value; entries that are not valid are
// logged and skipped.
func (m *Membership) parse(key, value []byte) (cluster.ServerInfo, bool) {
	id := strings.TrimPrefix(string(key), m.cfg.Prefix)
	var s cluster.ServerInfo
	if err := json.Unmarshal(value, &s); err != nil {
		m.log.Warn("etcd membership: skipping entry that is not a server", "key", string(key), "error", err)
		return s, false
	}
	if s.ID != id {
		m.log.Warn("etcd membership: skipping entry whose id does not match its key", "key", string(key), "id", s.ID)
		return s, false
	}
	if err := s.Validate(); err != nil {
		m.log.Warn("etcd membership: skipping invalid entry", "key", string(key), "error", err)
		return s, false
	}
	return s, true
}

// apply changes the member map under the lock and, when the list changed,
// calls the subscribers with the new list.
func (m *Membership) apply(change func(map[string]cluster.ServerInfo)) {
	m.notifyMu.Lock()
	defer m.notifyMu.Unlock()
	m.mu.Lock()
	change(m.servers)
	list := make([]cluster.ServerInfo, 0, len(m.servers))
	for _, s := range m.servers {
		list = append(list, s)
	}
	slices.SortFunc(list, func(a, b cluster.ServerInfo) int { return strings.Compare(a.ID, b.ID) })
	changed := !slices.EqualFunc(list, m.list, sameServer)
	if changed {
		m.list = list
	}
	m.mu.Unlock()
	if !changed {
		return
	}
	for _, fn := range m.subs {
		fn(slices.Clone(list))
	}
}

func sameServer(a, b cluster.ServerInfo) bool {
	if a.ID != b.ID || a.Type != b.Type || a.Host != b.Host || a.RPCPort != b.RPCPort ||
		a.Frontend != b.Frontend || a.WSPort != b.WSPort || a.TCPPort != b.TCPPort || len(a.Metadata) != len(b.Metadata) {
		return false
	}
	for k, v := range a.Metadata {
		if w, ok := b.Metadata[k]; !ok || w != v {
			return false
		}
	}
	return true
}

// askResync asks the watcher to read the prefix again and watch from there.
func (m *Membership) askResync() {
	select {
	case m.resync <- struct{}{}:
	default:
	}
}

// watch follows the prefix from revision rev+1 until Close. On any watch
// error it reads the prefix again (retrying until etcd answers) and watches
// from there; the member list is only ever replaced by what etcd says.
func (m *Membership) watch(rev int64) {
	defer m.watchWG.Done()
	var tick <-chan time.Time
	if m.cfg.ResyncInterval > 0 {
		t := time.NewTicker(m.cfg.ResyncInterval)
		defer t.Stop()
		tick = t.C
	}
	for {
		m.follow(rev, tick)
		if m.ctx.Err() != nil {
			return
		}
		for wait := 100 * time.Millisecond; ; wait = min(2*wait, 2*time.Second) {
			ctx, cancel := context.WithTimeout(m.ctx, m.cfg.RequestTimeout)
			r, err := m.load(ctx)
			cancel()
			if err == nil {
				rev = r
				break
			}
			if m.ctx.Err() != nil {
				return
			}
			m.log.Debug("etcd membership: read members", "error", err)
			sleep(m.ctx, wait)
		}
	}
}

// follow applies watch events from revision rev+1 until the watch fails, a
// resync is asked for or due, or the membership closes.
func (m *Membership) follow(rev int64, tick <-chan time.Time) {
	ctx, cancel := context.WithCancel(clientv3.WithRequireLeader(m.ctx))
	defer cancel()
	wch := m.cli.Watch(ctx, m.cfg.Prefix, clientv3.WithPrefix(), clientv3.WithRev(rev+1))
	for {
		select {
		case res, ok := <-wch:
			if !ok {
				return
			}
			if err := res.Err(); err != nil {
				if m.ctx.Err() == nil {
					m.log.Warn("etcd membership: watch failed; reading members again", "error", err)
				}
				return
			}
			if res.Canceled {
				return
			}
			if len(res.Events) > 0 {
				m.events(res.Events)
			}
		case <-m.resync:
			return
		case <-tick:
			return
		case <-m.ctx.Done():
			return
		}
	}
}

// events applies watch events to the member list.
func (m *Membership) events(evs []*clientv3.Event) {
	m.apply(func(servers map[string]cluster.ServerInfo) {
		for _, ev := range evs {
			id := strings.TrimPrefix(string(ev.Kv.Key), m.cfg.Prefix)
			switch ev.Type {
			case clientv3.EventTypePut:
				if s, ok := m.parse(ev.Kv.Key, ev.Kv.Value); ok {
					servers[s.ID] = s
				} else {
					delete(servers, id)
				}
			case clientv3.EventTypeDelete:
				delete(servers, id)
			}
			m.checkOwn(ev)
		}
	})
}

// checkOwn notices changes to this server's own key made by others: its
// deletion (registered again at once) and its takeover by another process
// registering the same id (logged: the two would fight for it).
// m.mu is held.
func (m *Membership) checkOwn(ev *clientv3.Event) {
	r := m.reg
	if r == nil || string(ev.Kv.Key) != r.key || ev.Kv.ModRevision <= r.rev {
		return
	}
	switch {
	case ev.Type == clientv3.EventTypeDelete:
		select {
		case r.lost <- struct{}{}:
		default:
		}
	case clientv3.LeaseID(ev.Kv.Lease) != r.lease && clientv3.LeaseID(ev.Kv.Lease) != r.pending && r.warnedAt < ev.Kv.ModRevision:
		r.warnedAt = ev.Kv.ModRevision
		m.log.Error("etcd membership: another process registered this server's id", "server", r.self.ID, "key", r.key)
	}
}

// sleep waits d or until ctx is done.
func sleep(ctx context.Context, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
	case <-ctx.Done():
	}
}
