package app

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
	"google.golang.org/grpc"
	"google.golang.org/grpc/backoff"

	"github.com/pomelo-go/pomelo/runtime/cluster"
	"github.com/pomelo-go/pomelo/runtime/etcdmember"
	"github.com/pomelo-go/pomelo/runtime/online"
	"github.com/pomelo-go/pomelo/runtime/session"
)

// storeTimeout bounds connecting to etcd and Redis at start, and how long
// Start waits for the servers of the process to see each other in etcd.
const storeTimeout = 10 * time.Second

// stores are the connections of one process to etcd and Redis, shared by
// its servers, and each server's etcd membership; nil when not used.
type stores struct {
	etcd    *clientv3.Client
	redis   *redis.Client
	members map[string]*etcdmember.Membership // by server id
}

// open connects to the stores opts asks for, checks that they answer, and
// makes the etcd membership of each server of ids.
func (st *stores) open(opts Options, ids []string) error {
	ctx, cancel := context.WithTimeout(context.Background(), storeTimeout)
	defer cancel()
	fail := func(where string, err error) error {
		st.close()
		return fmt.Errorf("%s: %w", where, err)
	}
	if len(opts.EtcdEndpoints) > 0 {
		where := "etcd at " + strings.Join(opts.EtcdEndpoints, ",")
		cli, err := clientv3.New(clientv3.Config{
			Endpoints:   opts.EtcdEndpoints,
			DialTimeout: 5 * time.Second,
			Logger:      zap.NewNop(),
			// Reconnect quickly when etcd comes back after an outage:
			// grpc's default backoff grows to two minutes.
			DialOptions: []grpc.DialOption{grpc.WithConnectParams(grpc.ConnectParams{
				Backoff:           backoff.Config{BaseDelay: 100 * time.Millisecond, Multiplier: 1.6, Jitter: 0.2, MaxDelay: 2 * time.Second},
				MinConnectTimeout: 5 * time.Second,
			})},
		})
		if err != nil {
			return fail(where, err)
		}
		st.etcd = cli
		if _, err := cli.Get(ctx, opts.EtcdPrefix, clientv3.WithPrefix(), clientv3.WithCountOnly()); err != nil {
			return fail(where, err)
		}
		st.members = map[string]*etcdmember.Membership{}
		for _, id := range ids {
			m, err := etcdmember.New(ctx, etcdmember.Config{Client: cli, Prefix: opts.EtcdPrefix, Logger: opts.Logger.With("server", id)})
			if err != nil {
				return fail(where, err)
			}
			st.members[id] = m
		}
	}
	if opts.RedisAddr != "" {
		st.redis = redis.NewClient(&redis.Options{Addr: opts.RedisAddr})
		if err := st.redis.Ping(ctx).Err(); err != nil {
			return fail("redis at "+opts.RedisAddr, err)
		}
	}
	return nil
}

// online returns a new online status service for one server, on the
// shared client: one session per uid in the whole cluster, the earlier one
// kicked. The server's App closes it.
func (st *stores) online(opts Options, log *slog.Logger) *online.Service {
	return online.New(st.redis, online.Config{Prefix: opts.RedisPrefix, Policy: session.KickOld, Logger: log})
}

// close closes the etcd memberships and the connections, once no server
// uses them.
func (st *stores) close() error {
	var errs []error
	for _, m := range st.members {
		errs = append(errs, m.Close())
	}
	st.members = nil
	if st.etcd != nil {
		errs = append(errs, st.etcd.Close())
		st.etcd = nil
	}
	if st.redis != nil {
		errs = append(errs, st.redis.Close())
		st.redis = nil
	}
	return errors.Join(errs...)
}

// awaitLocalMembers waits until every server of the process sees every
// other one in its membership: registrations reach the others through etcd
// watches.
func (a *App) awaitLocalMembers() error {
	deadline := time.Now().Add(storeTimeout)
	for {
		var missing string
		for _, s := range a.Servers() {
			members := s.Members("")
			for _, o := range a.Servers() {
				if !slices.ContainsFunc(members, func(m cluster.ServerInfo) bool { return m.ID == o.ID() }) {
					missing = fmt.Sprintf("%s does not see %s", s.ID(), o.ID())
				}
			}
		}
		if missing == "" {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("etcd membership: %s after %v", missing, storeTimeout)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// watchMembers logs the servers of other processes as they join and leave
// m, as the probed membership does, until the returned function is called.
func watchMembers(m cluster.Membership, local []string, log *slog.Logger) (cancel func()) {
	var mu sync.Mutex
	seen := map[string]cluster.ServerInfo{}
	return m.Subscribe(func(list []cluster.ServerInfo) {
		mu.Lock()
		defer mu.Unlock()
		now := map[string]cluster.ServerInfo{}
		for _, s := range list {
			if slices.Contains(local, s.ID) {
				continue
			}
			now[s.ID] = s
			if _, ok := seen[s.ID]; !ok {
				log.Info("cluster: server is up", "id", s.ID, "type", s.Type, "rpc", s.RPCAddr())
			}
		}
		for id, s := range seen {
			if _, ok := now[id]; !ok {
				log.Info("cluster: server is down", "id", s.ID, "type", s.Type, "rpc", s.RPCAddr())
			}
		}
		seen = now
	})
}
