package etcdmember_test

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/pomelo-go/pomelo/internal/testservers"
	"github.com/pomelo-go/pomelo/runtime/cluster"
	"github.com/pomelo-go/pomelo/runtime/etcdmember"
)

func TestMain(m *testing.M) { testservers.Main(m) }

// newMembership connects to etcd at endpoint under prefix with a 2s lease,
// closed when the test ends.
func newMembership(t testing.TB, endpoint, prefix string) *etcdmember.Membership {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	m, err := etcdmember.New(ctx, etcdmember.Config{
		Endpoints:      []string{endpoint},
		Prefix:         prefix,
		LeaseTTL:       2 * time.Second,
		RequestTimeout: 2 * time.Second,
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { m.Close() })
	return m
}

// watcher records every list a subscriber receives.
type watcher struct {
	mu    sync.Mutex
	lists [][]cluster.ServerInfo
	ch    chan struct{}
}

func watch(t testing.TB, m cluster.Membership) *watcher {
	w := &watcher{ch: make(chan struct{}, 1)}
	cancel := m.Subscribe(func(l []cluster.ServerInfo) {
		w.mu.Lock()
		w.lists = append(w.lists, l)
		w.mu.Unlock()
		select {
		case w.ch <- struct{}{}:
		default:
		}
	})
	t.Cleanup(cancel)
	return w
}

func ids(l []cluster.ServerInfo) []string {
	out := []string{}
	for _, s := range l {
		out = append(out, s.ID)
	}
	return out
}

func (w *watcher) last() []string {
	w.mu.Lock()
	defer w.mu.Unlock()
	if len(w.lists) == 0 {
		return nil
	}
	return ids(w.lists[len(w.lists)-1])
}

// waitIDs waits until the subscriber's latest list has exactly want.
func (w *watcher) waitIDs(t testing.TB, within time.Duration, want ...string) {
	t.Helper()
	deadline := time.After(within)
	for {
		if got := w.last(); got != nil && slices.Equal(got, want) {
			return
		}
		select {
		case <-w.ch:
		case <-deadline:
			t.Fatalf("members = %v, want %v", w.last(), want)
		}
	}
}

func serverInfo(id, typ string) cluster.ServerInfo {
	return cluster.ServerInfo{ID: id, Type: typ, Host: "127.0.0.1", RPCPort: 4000, Metadata: map[string]string{"zone": "a"}}
}

func TestRegisterWatchDeregister(t *testing.T) {
	t.Parallel()
	e := testservers.SharedEtcd(t)
	prefix := "/" + testservers.Prefix(t)
	a := newMembership(t, e.Endpoint, prefix)
	b := newMembership(t, e.Endpoint, prefix)
	wb := watch(t, b)
	wb.waitIDs(t, 5*time.Second) // called at once with the (empty) list

	if err := a.Register(serverInfo("chat-1", "chat")); err != nil {
		t.Fatal(err)
	}
	if err := a.Register(serverInfo("chat-1", "chat")); err == nil {
		t.Fatal("second Register succeeded")
	}
	wb.waitIDs(t, 5*time.Second, "chat-1")
	if got := b.Servers(); len(got) != 1 || got[0].Metadata["zone"] != "a" || got[0].RPCPort != 4000 {
		t.Fatalf("b sees %+v", got)
	}
	c := newMembership(t, e.Endpoint, prefix)
	if err := c.Register(serverInfo("connector-1", "connector")); err != nil {
		t.Fatal(err)
	}
	wb.waitIDs(t, 5*time.Second, "chat-1", "connector-1")
	// A late joiner reads the current members at once.
	if got := ids(newMembership(t, e.Endpoint, prefix).Servers()); !slices.Equal(got, []string{"chat-1", "connector-1"}) {
		t.Fatalf("new membership reads %v", got)
	}

	// Deregister removes the key and revokes the lease.
	res, err := a.Client().Get(context.Background(), prefix+"chat-1")
	if err != nil || len(res.Kvs) != 1 {
		t.Fatalf("key before deregister: %v %v", res, err)
	}
	lease := clientv3.LeaseID(res.Kvs[0].Lease)
	if err := a.Deregister(); err != nil {
		t.Fatal(err)
	}
	wb.waitIDs(t, 5*time.Second, "connector-1")
	ttl, err := a.Client().TimeToLive(context.Background(), lease)
	if err != nil || ttl.TTL != -1 {
		t.Fatalf("lease after deregister: ttl %v err %v, want revoked (-1)", ttl.TTL, err)
	}
	if err := a.Deregister(); err != nil {
		t.Fatalf("second Deregister: %v", err)
	}
	// A membership that deregistered can register again.
	if err := a.Register(serverInfo("chat-1", "chat")); err != nil {
		t.Fatal(err)
	}
	wb.waitIDs(t, 5*time.Second, "chat-1", "connector-1")
}

func TestCrashedServerExpires(t *testing.T) {
	t.Parallel()
	e := testservers.SharedEtcd(t)
	prefix := "/" + testservers.Prefix(t)
	a := newMembership(t, e.Endpoint, prefix)
	b := newMembership(t, e.Endpoint, prefix)
	wb := watch(t, b)
	if err := a.Register(serverInfo("chat-1", "chat")); err != nil {
		t.Fatal(err)
	}
	wb.waitIDs(t, 5*time.Second, "chat-1")
	// Kept alive well past its TTL.
	time.Sleep(3 * time.Second)
	if got := ids(b.Servers()); !slices.Equal(got, []string{"chat-1"}) {
		t.Fatalf("after 1.5 TTL: %v", got)
	}
	a.Close() // no deregistration: a crash
	wb.waitIDs(t, 10*time.Second)
}

func TestRegistersAgainWhenKeyOrLeaseIsLost(t *testing.T) {
	t.Parallel()
	e := testservers.SharedEtcd(t)
	prefix := "/" + testservers.Prefix(t)
	a := newMembership(t, e.Endpoint, prefix)
	b := newMembership(t, e.Endpoint, prefix)
	if err := a.Register(serverInfo("chat-1", "chat")); err != nil {
		t.Fatal(err)
	}
	cli := b.Client()
	ctx := context.Background()
	waitKey := func(what string, not clientv3.LeaseID) clientv3.LeaseID {
		t.Helper()
		deadline := time.Now().Add(10 * time.Second)
		for {
			res, err := cli.Get(ctx, prefix+"chat-1")
			if err == nil && len(res.Kvs) == 1 && clientv3.LeaseID(res.Kvs[0].Lease) != not {
				return clientv3.LeaseID(res.Kvs[0].Lease)
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s: key not registered again", what)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	lease := waitKey("start", 0)

	// Someone deletes the key: registered again.
	if _, err := cli.Delete(ctx, prefix+"chat-1"); err != nil {
		t.Fatal(err)
	}
	lease = waitKey("after delete", lease)

	// The lease is revoked (as when etcd loses it): a new lease.
	if _, err := cli.Revoke(ctx, lease); err != nil {
		t.Fatal(err)
	}
	lease = waitKey("after revoke", lease)

	// Still kept alive.
	time.Sleep(3 * time.Second)
	if got := waitKey("later", 0); got != lease {
		t.Fatalf("lease changed again without cause: %x -> %x", lease, got)
	}
	if got := ids(b.Servers()); !slices.Equal(got, []string{"chat-1"}) {
		t.Fatalf("b sees %v", got)
	}
}

func TestSkipsBadEntries(t *testing.T) {
	t.Parallel()
	e := testservers.SharedEtcd(t)
	prefix := "/" + testservers.Prefix(t)
	b := newMembership(t, e.Endpoint, prefix)
	wb := watch(t, b)
	cli := b.Client()
	ctx := context.Background()
	for k, v := range map[string]string{
		"garbage":  "{",
		"mismatch": `{"id":"other","type":"chat","host":"h","rpcPort":1}`,
		"noport":   `{"id":"noport","type":"chat","host":"h"}`,
		"good":     `{"id":"good","type":"chat","host":"h","rpcPort":1}`,
	} {
		if _, err := cli.Put(ctx, prefix+k, v); err != nil {
			t.Fatal(err)
		}
	}
	wb.waitIDs(t, 5*time.Second, "good")
	// A good entry overwritten with a bad one leaves.
	if _, err := cli.Put(ctx, prefix+"good", "nope"); err != nil {
		t.Fatal(err)
	}
	wb.waitIDs(t, 5*time.Second)
}

func TestNewFailsWithoutEtcd(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
	defer cancel()
	_, err := etcdmember.New(ctx, etcdmember.Config{Endpoints: []string{"http://127.0.0.1:1"}})
	if err == nil {
		t.Fatal("New succeeded without etcd")
	}
}

// TestRegistersAgainAfterEtcdLostItsData wipes etcd's data under running
// memberships: every server registers again and the watches follow the new
// history.
func TestRegistersAgainAfterEtcdLostItsData(t *testing.T) {
	t.Parallel()
	e := testservers.StartEtcd(t)
	prefix := "/" + testservers.Prefix(t)
	a := newMembership(t, e.Endpoint, prefix)
	b := newMembership(t, e.Endpoint, prefix)
	wb := watch(t, b)
	if err := a.Register(serverInfo("chat-1", "chat")); err != nil {
		t.Fatal(err)
	}
	if err := b.Register(serverInfo("connector-1", "connector")); err != nil {
		t.Fatal(err)
	}
	// Push the revision up, so that a watch resumed at the old revision
	// would wait for a long time in the new history.
	for i := range 50 {
		if _, err := a.Client().Put(context.Background(), "/other/"+fmt.Sprint(i), "x"); err != nil {
			t.Fatal(err)
		}
	}
	wb.waitIDs(t, 5*time.Second, "chat-1", "connector-1")
	e.Stop()
	if err := e.WipeData(); err != nil {
		t.Fatal(err)
	}
	if err := e.Start(); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(15 * time.Second)
	for {
		res, err := a.Client().Get(context.Background(), prefix, clientv3.WithPrefix(), clientv3.WithCountOnly())
		if err == nil && res.Count == 2 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("servers not registered again in the new etcd: %v %v", res, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
	// The watch follows the new history: a new server is seen.
	c := newMembership(t, e.Endpoint, prefix)
	if err := c.Register(serverInfo("chat-2", "chat")); err != nil {
		t.Fatal(err)
	}
	wb.waitIDs(t, 10*time.Second, "chat-1", "chat-2", "connector-1")
}
