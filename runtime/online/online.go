// Package online keeps the online status of users in Redis: which frontend
// servers hold sessions of each uid, across the cluster. With it a push by
// uid reaches a user on any frontend with one call to each frontend that
// holds the user (and none to the others), a kick by uid reaches every
// session of the user, and Login enforces a cluster-wide single session:
// reject the new login, or kick the old one wherever it is.
//
// A frontend attached to the service records its bound sessions (on bind,
// unbind and close; a uid with two sessions on one frontend stays online
// until both are gone) and keeps a liveness key alive in Redis. When a
// frontend crashes its liveness key expires: readers ignore its entries at
// once, and a reaper running on every attached server deletes them.
//
// Use one Service per server, as the Config.Online of its App
// (github.com/pomelo-go/pomelo): Serve attaches it before the server joins
// the cluster and closes it when it returns (the Redis client stays the
// caller's):
//
//	rdb := redis.NewClient(&redis.Options{Addr: "127.0.0.1:6379"})
//	cfg.Online = online.New(rdb, online.Config{Policy: session.KickOld})
//
// and log users in with Login. Attach and Node take and return the App's
// internal node: they are for the App (and the framework's tests), not for
// users.
//
// Keys live under Config.Prefix; the package's scripts need a single Redis
// (standalone, or a primary managed by Sentinel), not Redis Cluster.
package online

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/pomelo-go/pomelo/internal/node"
	"github.com/pomelo-go/pomelo/runtime/session"
)

// DefaultPrefix is the key prefix of a Config without one.
const DefaultPrefix = "pomelo:"

// Config tunes a Service.
type Config struct {
	// Prefix is prepended to every key (default DefaultPrefix). Servers of
	// one cluster must use the same prefix.
	Prefix string
	// TTL is how long the entries of a crashed frontend stay valid: the
	// time to live of its liveness key, refreshed every third of it.
	// Default 15s; at least 300ms.
	TTL time.Duration
	// Timeout bounds each Redis operation, and how long a bind waits for
	// its record to reach Redis (default 2s).
	Timeout time.Duration
	// Policy is the cluster-wide session policy Login enforces:
	// session.AllowMany (the default: Login only binds),
	// session.RejectNew or session.KickOld. Every login of a uid must go
	// through Login for the policy to hold.
	Policy session.Policy
	// Logger receives the service's logs (default slog.Default()).
	Logger *slog.Logger
}

// Service is the online status of a cluster's users, as seen from one
// server. It is safe for concurrent use.
type Service struct {
	rdb redis.UniversalClient
	cfg Config
	inc string // this process's incarnation: new on every start

	log *slog.Logger

	mu       sync.Mutex
	node     *node.Node
	reapers  []func(ctx context.Context, frontendID string, force bool) error
	fe       *frontend // nil on backends
	ctx      context.Context
	cancel   context.CancelFunc
	wg       sync.WaitGroup
	attached bool
	closed   bool
}

// New returns a service on rdb, for an App to attach.
func New(rdb redis.UniversalClient, cfg Config) *Service {
	if cfg.Prefix == "" {
		cfg.Prefix = DefaultPrefix
	}
	if cfg.TTL <= 0 {
		cfg.TTL = 15 * time.Second
	}
	cfg.TTL = max(cfg.TTL, 300*time.Millisecond)
	if cfg.Timeout <= 0 {
		cfg.Timeout = 2 * time.Second
	}
	var b [8]byte
	if _, err := rand.Read(b[:]); err != nil {
		panic(err)
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	s := &Service{rdb: rdb, cfg: cfg, inc: hex.EncodeToString(b[:]), log: cfg.Logger.With("component", "online")}
	s.ctx, s.cancel = context.WithCancel(context.Background())
	return s
}

// Config returns the service's configuration, defaults filled in.
func (s *Service) Config() Config { return s.cfg }

// Client returns the Redis client.
func (s *Service) Client() redis.UniversalClient { return s.rdb }

// Prefix returns the key prefix.
func (s *Service) Prefix() string { return s.cfg.Prefix }

// TTL returns how long a crashed frontend's entries stay valid.
func (s *Service) TTL() time.Duration { return s.cfg.TTL }

// Node returns the node the service is attached to, or nil.
func (s *Service) Node() *node.Node {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.node
}

// AliveKey returns the key that exists while frontend frontendID is alive.
// Other stores that keep
// per-frontend state (runtime/globalchannel) ignore the state of frontends
// without it.
func (s *Service) AliveKey(frontendID string) string {
	return s.cfg.Prefix + "f:" + frontendID + ":alive"
}

// AliveKeyAffixes returns what comes before and after a frontend id in
// its AliveKey, for scripts that build alive keys themselves.
func (s *Service) AliveKeyAffixes() (before, after string) {
	return s.cfg.Prefix + "f:", ":alive"
}

func (s *Service) ownKey(uid string) string   { return s.cfg.Prefix + "own:" + uid }
func (s *Service) frontsKey() string          { return s.cfg.Prefix + "fronts" }
func (s *Service) countKey(fid string) string { return s.cfg.Prefix + "f:" + fid + ":c" }

// OnReap registers fn to delete the state another store keeps for a
// frontend that is gone: it runs when the reaper finds a frontend dead
// (force false: fn must change nothing if the frontend is alive again)
// and when a frontend attaches or closes (force true, for its own state).
// Register before Attach.
func (s *Service) OnReap(fn func(ctx context.Context, frontendID string, force bool) error) {
	s.mu.Lock()
	s.reapers = append(s.reapers, fn)
	s.mu.Unlock()
}

// Attach connects the service to a server's node, before the node starts
// (the App does it):
// the node's PushToUIDs and KickByUID then reach only the frontends
// holding the uids; on a frontend the service records its sessions and
// keeps it alive in Redis (first deleting what an earlier run of the same
// frontend id left behind); every attached server reaps crashed frontends.
func (s *Service) Attach(n *node.Node) error {
	s.mu.Lock()
	switch {
	case s.closed:
		s.mu.Unlock()
		return errors.New("online: closed")
	case s.attached:
		s.mu.Unlock()
		return errors.New("online: already attached")
	}
	s.attached = true
	s.node = n
	s.mu.Unlock()
	if n.Server().Frontend() {
		fe := newFrontend(s, n.Self().ID)
		ctx, cancel := context.WithTimeout(s.ctx, 4*s.cfg.Timeout)
		err := fe.start(ctx)
		cancel()
		if err != nil {
			s.mu.Lock()
			s.attached, s.node = false, nil
			s.mu.Unlock()
			return fmt.Errorf("online: attach %s: %w", n.Self().ID, err)
		}
		s.mu.Lock()
		s.fe = fe
		s.mu.Unlock()
		svc := n.Server().Sessions()
		svc.OnBind(func(ss *session.Session, _ string) { fe.changed(ss, true) })
		svc.OnUnbind(func(ss *session.Session, _ string) { fe.changed(ss, false) })
		svc.OnClosed(func(ss *session.Session, _ string) { fe.changed(ss, false) })
		s.wg.Add(1)
		go fe.run()
	}
	n.SetLocator(s.Locate)
	s.wg.Add(1)
	go s.reapLoop()
	return nil
}

// Close stops the service. On a frontend it first writes the last session
// changes and then deletes the frontend's entries and liveness key: call
// it after the node's Close, which closes the sessions.
func (s *Service) Close() error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	s.closed = true
	fe, n := s.fe, s.node
	s.mu.Unlock()
	if n != nil {
		n.SetLocator(nil)
	}
	var err error
	if fe != nil {
		err = fe.stop()
	}
	s.cancel()
	s.wg.Wait()
	return err
}

// Kill stops the service at once, leaving its entries in Redis to expire:
// what a crash looks like to the rest of the cluster. For tests.
func (s *Service) Kill() {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return
	}
	s.closed = true
	fe := s.fe
	s.mu.Unlock()
	if fe != nil {
		fe.mu.Lock()
		fe.stopped = true
		fe.mu.Unlock()
		close(fe.stopCh)
	}
	s.cancel()
	s.wg.Wait()
}

// Locate groups uids by the live frontends holding their sessions (a uid
// with sessions on two frontends is in both groups; an offline uid in
// none). It is the node's cluster.Locator once attached.
func (s *Service) Locate(ctx context.Context, uids []string) (map[string][]string, error) {
	if len(uids) == 0 {
		return map[string][]string{}, nil
	}
	ctx, cancel := context.WithTimeout(ctx, s.cfg.Timeout)
	defer cancel()
	args := make([]any, 0, len(uids)+1)
	args = append(args, s.cfg.Prefix)
	for _, u := range uids {
		args = append(args, u)
	}
	res, err := locateScript.Run(ctx, s.rdb, nil, args...).StringSlice()
	if err != nil {
		return nil, fmt.Errorf("online: locate: %w", err)
	}
	groups := map[string][]string{}
	for i := 0; i+1 < len(res); i += 2 {
		groups[res[i+1]] = append(groups[res[i+1]], res[i])
	}
	return groups, nil
}

// Frontends returns the ids of the live frontends holding sessions of uid,
// sorted.
func (s *Service) Frontends(ctx context.Context, uid string) ([]string, error) {
	groups, err := s.Locate(ctx, []string{uid})
	if err != nil {
		return nil, err
	}
	out := make([]string, 0, len(groups))
	for fid := range groups {
		out = append(out, fid)
	}
	slices.Sort(out)
	return out, nil
}

// Online reports whether uid has a session on a live frontend.
func (s *Service) Online(ctx context.Context, uid string) (bool, error) {
	fids, err := s.Frontends(ctx, uid)
	return len(fids) > 0, err
}

// Kick kicks every session of uid, on whichever frontends hold them, and
// returns how many it kicked.
func (s *Service) Kick(ctx context.Context, uid, reason string) (int, error) {
	n := s.Node()
	if n == nil {
		return 0, errors.New("online: not attached")
	}
	return n.BackendSessions().KickByUID(ctx, "", uid, reason)
}

// reapLoop deletes the entries of crashed frontends, every TTL.
func (s *Service) reapLoop() {
	defer s.wg.Done()
	t := time.NewTicker(s.cfg.TTL)
	defer t.Stop()
	for {
		select {
		case <-t.C:
		case <-s.ctx.Done():
			return
		}
		if err := s.ReapOnce(s.ctx); err != nil && s.ctx.Err() == nil {
			s.log.Warn("reaping crashed frontends", "error", err)
		}
	}
}

// ReapOnce deletes the entries of every frontend whose liveness key has
// expired. Attached services do it every TTL.
func (s *Service) ReapOnce(ctx context.Context) error {
	rctx, cancel := context.WithTimeout(ctx, s.cfg.Timeout)
	fids, err := s.rdb.SMembers(rctx, s.frontsKey()).Result()
	if err != nil {
		cancel()
		return err
	}
	pipe := s.rdb.Pipeline()
	exists := make([]*redis.IntCmd, len(fids))
	for i, fid := range fids {
		exists[i] = pipe.Exists(rctx, s.AliveKey(fid))
	}
	if len(fids) > 0 {
		if _, err := pipe.Exec(rctx); err != nil {
			cancel()
			return err
		}
	}
	cancel()
	var errs []error
	for i, fid := range fids {
		if exists[i].Val() == 0 {
			s.log.Info("reaping the entries of a crashed frontend", "frontend", fid)
			errs = append(errs, s.reap(ctx, fid, false))
		}
	}
	return errors.Join(errs...)
}

// reapBatch is how many uids one reap script handles.
const reapBatch = 500

// reap deletes frontend fid's entries: those of the other stores (OnReap),
// then its online entries. Unless force is set it stops, changing nothing
// more, when the frontend is alive again.
func (s *Service) reap(ctx context.Context, fid string, force bool) error {
	s.mu.Lock()
	reapers := slices.Clone(s.reapers)
	s.mu.Unlock()
	for _, fn := range reapers {
		if err := fn(ctx, fid, force); err != nil {
			return err
		}
	}
	return s.reapOnline(ctx, fid, force)
}

// reapOnline deletes frontend fid's online entries; unless force is set it
// stops, changing nothing more, when the frontend is alive again.
func (s *Service) reapOnline(ctx context.Context, fid string, force bool) error {
	f := "0"
	if force {
		f = "1"
	}
	var cursor uint64
	for {
		sctx, cancel := context.WithTimeout(ctx, s.cfg.Timeout)
		keys, next, err := s.rdb.HScan(sctx, s.countKey(fid), cursor, "", reapBatch).Result()
		if err == nil && len(keys) > 0 {
			args := []any{s.cfg.Prefix, fid, f}
			for i := 0; i < len(keys); i += 2 { // field, value pairs
				args = append(args, keys[i])
			}
			var ok int
			ok, err = reapBatchScript.Run(sctx, s.rdb, nil, args...).Int()
			if err == nil && ok == 0 {
				cancel()
				return nil // alive again
			}
		}
		cancel()
		if err != nil {
			return err
		}
		if cursor = next; cursor == 0 {
			break
		}
	}
	sctx, cancel := context.WithTimeout(ctx, s.cfg.Timeout)
	defer cancel()
	return reapFinishScript.Run(sctx, s.rdb, nil, s.cfg.Prefix, fid, f).Err()
}
