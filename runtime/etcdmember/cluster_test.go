package etcdmember_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"google.golang.org/protobuf/types/known/structpb"

	"github.com/pomelo-go/pomelo/internal/clustertest"
	"github.com/pomelo-go/pomelo/internal/node"
	"github.com/pomelo-go/pomelo/internal/testservers"
	"github.com/pomelo-go/pomelo/runtime"
	"github.com/pomelo-go/pomelo/runtime/client"
	"github.com/pomelo-go/pomelo/runtime/cluster"
	"github.com/pomelo-go/pomelo/runtime/etcdmember"
	"github.com/pomelo-go/pomelo/runtime/testkit"
)

// etcdCluster is a test cluster whose servers each register in etcd under
// the test's own prefix, with a 2s lease.
type etcdCluster struct {
	*clustertest.Cluster
	etcd   *testservers.Etcd
	prefix string
}

func startEtcdCluster(t *testing.T, e *testservers.Etcd, specs ...clustertest.Spec) *etcdCluster {
	t.Helper()
	ec := &etcdCluster{etcd: e, prefix: "/" + testservers.Prefix(t)}
	log := slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelWarn}))
	ec.Cluster = clustertest.Start(t, clustertest.Options{
		Servers: specs,
		Membership: func(self cluster.ServerInfo) (cluster.Membership, error) {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			return etcdmember.New(ctx, etcdmember.Config{
				Endpoints:      []string{e.Endpoint},
				Prefix:         ec.prefix,
				LeaseTTL:       2 * time.Second,
				RequestTimeout: 2 * time.Second,
				Logger:         log,
			})
		},
		// Long enough for every server to see a leaving one go.
		ConfigureNode: func(cfg *node.Config) { cfg.DrainDelay = 300 * time.Millisecond },
		Setup: func(m *clustertest.Member) error {
			switch m.Info.Type {
			case "chat":
				handle(t, m.Server, "chat.h.whoami", func(ctx context.Context, s runtime.Session, in *structpb.Struct) (*structpb.Struct, error) {
					if ms := in.Fields["ms"].GetNumberValue(); ms > 0 {
						time.Sleep(time.Duration(ms) * time.Millisecond)
					}
					return obj(map[string]any{"server": m.Info.ID}), nil
				})
			case "connector":
				handle(t, m.Server, "connector.entry.bind", func(ctx context.Context, s runtime.Session, in *structpb.Struct) (*structpb.Struct, error) {
					return obj(nil), s.Bind(ctx, in.Fields["uid"].GetStringValue())
				})
			}
			return nil
		},
	})
	ec.waitMembers(t, specs)
	return ec
}

// waitMembers waits until every server sees every server of specs.
func (ec *etcdCluster) waitMembers(t testing.TB, specs []clustertest.Spec) {
	t.Helper()
	var want []string
	for _, s := range specs {
		for i := 1; i <= max(s.Count, 1); i++ {
			want = append(want, fmt.Sprintf("%s-%d", s.Type, i))
		}
	}
	slices.Sort(want)
	for _, m := range ec.Members("") {
		waitFor(t, m.Info.ID+" sees everyone", func() bool { return slices.Equal(ids(m.Node.Members("")), want) })
	}
}

// handle registers a free-form JSON route on a test server.
var handle = testkit.HandleStruct

// obj builds a free-form JSON object.
var obj = testkit.Struct

func waitFor(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within 15s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// users dials n clients to the frontend and binds them to "user-<i>".
func users(t testing.TB, fe *clustertest.Member, n int) []*client.Client {
	t.Helper()
	out := make([]*client.Client, n)
	for i := range out {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		c, err := client.Dial(ctx, fe.WSURL())
		if err == nil {
			err = c.Request(ctx, "connector.entry.bind", obj(map[string]any{"uid": fmt.Sprintf("user-%d", i)}), &structpb.Struct{})
		}
		cancel()
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		out[i] = c
	}
	return out
}

func whoami(c *client.Client, ms float64) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	out := &structpb.Struct{}
	err := c.Request(ctx, "chat.h.whoami", obj(map[string]any{"ms": ms}), out)
	return out.Fields["server"].GetStringValue(), err
}

// load sends requests from every client, one at a time each, until stop is
// called; stop returns the number of requests that succeeded and the
// failures.
func load(clients []*client.Client, ms float64) (stop func() (ok int64, failed []error)) {
	var (
		wg    sync.WaitGroup
		done  = make(chan struct{})
		okN   atomic.Int64
		mu    sync.Mutex
		fails []error
	)
	for _, c := range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-done:
					return
				default:
				}
				if _, err := whoami(c, ms); err != nil {
					mu.Lock()
					fails = append(fails, err)
					mu.Unlock()
				} else {
					okN.Add(1)
				}
			}
		}()
	}
	return func() (int64, []error) {
		close(done)
		wg.Wait()
		return okN.Load(), fails
	}
}

func TestBackendJoinsAndReceivesRoutedRequests(t *testing.T) {
	t.Parallel()
	ec := startEtcdCluster(t, testservers.SharedEtcd(t), clustertest.Spec{Type: "connector", Frontend: true}, clustertest.Spec{Type: "chat"})
	fe := ec.Members("connector")[0]
	// The frontend registered the client ports it bound.
	if got, _ := ec.Members("chat")[0].Node.Member("connector-1"); got.WSPort != fe.Server.WSAddr().(*net.TCPAddr).Port || got.TCPPort == 0 {
		t.Fatalf("connector-1 registered as %+v", got)
	}
	clients := users(t, fe, 20)
	for i, c := range clients {
		if s, err := whoami(c, 0); err != nil || s != "chat-1" {
			t.Fatalf("user-%d: %q, %v before the join", i, s, err)
		}
	}
	if _, err := ec.Add("chat", false); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "frontend sees chat-2", func() bool { return len(fe.Node.Members("chat")) == 2 })
	moved := 0
	for i, c := range clients {
		want, _ := fe.Node.Route("chat", fmt.Sprintf("user-%d", i))
		s, err := whoami(c, 0)
		if err != nil || s != want.ID {
			t.Fatalf("user-%d: served by %q (%v), routed to %s", i, s, err, want.ID)
		}
		if s == "chat-2" {
			moved++
		}
	}
	if moved == 0 || moved == len(clients) {
		t.Fatalf("%d of %d users moved to the new backend", moved, len(clients))
	}
	t.Logf("%d of %d users moved to the new backend", moved, len(clients))
}

func TestBackendLeavesGracefullyUnderLoad(t *testing.T) {
	t.Parallel()
	ec := startEtcdCluster(t, testservers.SharedEtcd(t), clustertest.Spec{Type: "connector", Frontend: true}, clustertest.Spec{Type: "chat", Count: 3})
	fe := ec.Members("connector")[0]
	clients := users(t, fe, 24)
	stop := load(clients, 2)
	time.Sleep(300 * time.Millisecond)
	if err := ec.Stop("chat-1"); err != nil {
		t.Fatal(err)
	}
	time.Sleep(300 * time.Millisecond)
	ok, failed := stop()
	t.Logf("%d requests during the leave", ok)
	if len(failed) > 0 {
		t.Fatalf("%d of %d requests failed during a graceful leave; first: %v", len(failed), ok+int64(len(failed)), failed[0])
	}
	if got := ids(fe.Node.Members("chat")); !slices.Equal(got, []string{"chat-2", "chat-3"}) {
		t.Fatalf("frontend sees %v", got)
	}
	for i, c := range clients {
		if s, err := whoami(c, 0); err != nil || s == "chat-1" {
			t.Fatalf("user-%d after the leave: %q, %v", i, s, err)
		}
	}
}

func TestKilledBackendExpiresAndRequestsMove(t *testing.T) {
	t.Parallel()
	ec := startEtcdCluster(t, testservers.SharedEtcd(t), clustertest.Spec{Type: "connector", Frontend: true}, clustertest.Spec{Type: "chat", Count: 2})
	fe := ec.Members("connector")[0]
	clients := users(t, fe, 20)
	victim := -1
	for i := range clients {
		if s, _ := whoami(clients[i], 0); s == "chat-1" {
			victim = i
			break
		}
	}
	if victim < 0 {
		t.Fatal("no user on chat-1")
	}
	ec.Kill("chat-1") // stops serving, and stops keeping its lease alive
	// Until the lease expires chat-1 is still a member: its users fail
	// fast.
	if _, err := whoami(clients[victim], 0); !errors.Is(err, runtime.ErrUnavailable) {
		if len(fe.Node.Members("chat")) == 2 {
			t.Fatalf("request to the killed backend: %v, want UNAVAILABLE", err)
		}
	}
	waitFor(t, "chat-1's lease expires", func() bool { return slices.Equal(ids(fe.Node.Members("chat")), []string{"chat-2"}) })
	for i, c := range clients {
		if s, err := whoami(c, 0); err != nil || s != "chat-2" {
			t.Fatalf("user-%d after the expiry: %q, %v", i, s, err)
		}
	}
}

func TestEtcdRestartWhileServing(t *testing.T) {
	t.Parallel()
	e := testservers.StartEtcd(t)
	ec := startEtcdCluster(t, e, clustertest.Spec{Type: "connector", Frontend: true}, clustertest.Spec{Type: "chat", Count: 2})
	fe := ec.Members("connector")[0]
	clients := users(t, fe, 10)
	w := watch(t, fe.Membership)
	stop := load(clients, 1)
	time.Sleep(200 * time.Millisecond)
	e.Stop()
	time.Sleep(3 * time.Second) // longer than the leases' TTL
	if err := e.Start(); err != nil {
		t.Fatal(err)
	}
	time.Sleep(3 * time.Second) // the old leases would expire now if not kept
	ok, failed := stop()
	t.Logf("%d requests across the etcd restart", ok)
	if len(failed) > 0 {
		t.Fatalf("%d requests failed across the etcd restart; first: %v", len(failed), failed[0])
	}
	for _, m := range ec.Members("") {
		if got := ids(m.Node.Members("")); !slices.Equal(got, []string{"chat-1", "chat-2", "connector-1"}) {
			t.Fatalf("%s sees %v after the restart", m.Info.ID, got)
		}
	}
	// Nobody left and came back: the frontend's membership never changed.
	w.mu.Lock()
	if len(w.lists) != 1 {
		t.Fatalf("the frontend's members changed across the restart: %v", w.lists)
	}
	w.mu.Unlock()
	// Every registration is in etcd, with a live lease.
	cli := fe.Membership.(*etcdmember.Membership).Client()
	res, err := cli.Get(context.Background(), ec.prefix, clientv3.WithPrefix())
	if err != nil || len(res.Kvs) != 3 {
		t.Fatalf("registrations after the restart: %v, %v", res, err)
	}
	for _, kv := range res.Kvs {
		ttl, err := cli.TimeToLive(context.Background(), clientv3.LeaseID(kv.Lease))
		if err != nil || ttl.TTL <= 0 {
			t.Fatalf("%s: lease ttl %v, %v", kv.Key, ttl, err)
		}
	}
	// The watches work again: a new backend is seen.
	if _, err := ec.Add("chat", false); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "chat-3 seen", func() bool { return len(fe.Node.Members("chat")) == 3 })
}
