package app

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
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
// its servers; nil when not used.
type stores struct {
	etcd  *clientv3.Client
	redis *redis.Client
}

// open connects to the stores opts asks for, and checks that they answer.
func (st *stores) open(opts Options) error {
	ctx, cancel := context.WithTimeout(context.Background(), storeTimeout)
	defer cancel()
	if len(opts.EtcdEndpoints) > 0 {
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
			return fmt.Errorf("etcd at %s: %w", strings.Join(opts.EtcdEndpoints, ","), err)
		}
		st.etcd = cli
		if _, err := cli.Get(ctx, opts.EtcdPrefix, clientv3.WithPrefix(), clientv3.WithCountOnly()); err != nil {
			st.close()
			return fmt.Errorf("etcd at %s: %w", strings.Join(opts.EtcdEndpoints, ","), err)
		}
	}
	if opts.RedisAddr != "" {
		st.redis = redis.NewClient(&redis.Options{Addr: opts.RedisAddr})
		if err := st.redis.Ping(ctx).Err(); err != nil {
			st.close()
			return fmt.Errorf("redis at %s: %w", opts.RedisAddr, err)
		}
	}
	return nil
}

// membership returns a new etcd membership for one server, on the shared
// client.
func (st *stores) membership(opts Options, log *slog.Logger) (*etcdmember.Membership, error) {
	ctx, cancel := context.WithTimeout(context.Background(), storeTimeout)
	defer cancel()
	m, err := etcdmember.New(ctx, etcdmember.Config{Client: st.etcd, Prefix: opts.EtcdPrefix, Logger: log})
	if err != nil {
		return nil, fmt.Errorf("etcd at %s: %w", strings.Join(opts.EtcdEndpoints, ","), err)
	}
	return m, nil
}

// online returns a new online status service for one server, on the
// shared client: one session per uid in the whole cluster, the earlier one
// kicked.
func (st *stores) online(opts Options, log *slog.Logger) *online.Service {
	return online.New(st.redis, online.Config{Prefix: opts.RedisPrefix, Policy: session.KickOld, Logger: log})
}

// close closes the connections, once nothing uses them.
func (st *stores) close() error {
	var errs []error
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
		for _, s := range a.servers {
			for _, o := range a.servers {
				if _, ok := s.Node.Member(o.Info.ID); !ok {
					missing = fmt.Sprintf("%s does not see %s", s.Info.ID, o.Info.ID)
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
func watchMembers(m cluster.Membership, local []*Server, log *slog.Logger) (cancel func()) {
	here := map[string]bool{}
	for _, s := range local {
		here[s.Info.ID] = true
	}
	var mu sync.Mutex
	seen := map[string]cluster.ServerInfo{}
	return m.Subscribe(func(list []cluster.ServerInfo) {
		mu.Lock()
		defer mu.Unlock()
		now := map[string]cluster.ServerInfo{}
		for _, s := range list {
			if here[s.ID] {
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
