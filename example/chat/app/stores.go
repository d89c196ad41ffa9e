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

	"github.com/pomelo-go/pomelo/runtime/cluster"
	"github.com/pomelo-go/pomelo/runtime/etcdmember"
)

// stores are each server's etcd membership and the process's Redis client,
// shared by the servers' online status; nil when not used.
type stores struct {
	members map[string]*etcdmember.Membership // by server id
	redis   *redis.Client
	unwatch func() // stops watchMembers
}

// open connects to the stores opts asks for, checking that they answer:
// an etcd membership for each server of ids, one Redis client.
func (st *stores) open(opts Options, ids []string) error {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if len(opts.EtcdEndpoints) > 0 {
		st.members = map[string]*etcdmember.Membership{}
		for _, id := range ids {
			m, err := etcdmember.New(ctx, etcdmember.Config{Endpoints: opts.EtcdEndpoints, Prefix: opts.EtcdPrefix, Logger: opts.Logger.With("server", id)})
			if err != nil {
				st.close()
				return fmt.Errorf("etcd at %s: %w", strings.Join(opts.EtcdEndpoints, ","), err)
			}
			st.members[id] = m
		}
		st.unwatch = watchMembers(st.members[ids[0]], ids, opts.Logger)
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

// close closes the etcd memberships and the Redis client, once no server
// uses them.
func (st *stores) close() error {
	var errs []error
	if st.unwatch != nil {
		st.unwatch()
		st.unwatch = nil
	}
	for _, m := range st.members {
		errs = append(errs, m.Close())
	}
	if st.redis != nil {
		errs = append(errs, st.redis.Close())
	}
	st.members, st.redis = nil, nil
	return errors.Join(errs...)
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
				log.Info("cluster: server is up", "server", s.ID, "type", s.Type, "rpc", s.RPCAddr())
			}
		}
		for id, s := range seen {
			if _, ok := now[id]; !ok {
				log.Info("cluster: server is down", "server", s.ID, "type", s.Type, "rpc", s.RPCAddr())
			}
		}
		seen = now
	})
}
