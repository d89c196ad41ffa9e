package pomelo_test

import (
	"context"
	"slices"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/pomelo-go/pomelo"
	testingv1 "github.com/pomelo-go/pomelo/gen/pomelo/testing/v1"
	"github.com/pomelo-go/pomelo/internal/testservers"
	"github.com/pomelo-go/pomelo/runtime/client"
	"github.com/pomelo-go/pomelo/runtime/cluster"
	"github.com/pomelo-go/pomelo/runtime/etcdmember"
	"github.com/pomelo-go/pomelo/runtime/online"
)

func TestMain(m *testing.M) { testservers.Main(m) }

func TestGlobalChannelsNeedTheOnlineStatus(t *testing.T) {
	app, err := pomelo.New(pomelo.Config{ID: "echo-1", Type: "echo", RPCAddr: "127.0.0.1:1", Insecure: true, Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	if app.GlobalChannels() != nil {
		t.Fatal("GlobalChannels without Config.Online is not nil")
	}
}

// A cluster run by StartCluster on an etcd membership and a Redis online
// status: the servers find each other in etcd, pushes by uid and global
// channels reach the user through Redis, and Close leaves both stores.
func TestStartClusterRunsOnEtcdMembershipAndRedisOnlineStatus(t *testing.T) {
	etcd, rds := testservers.SharedEtcd(t), testservers.SharedRedis(t)
	prefix := testservers.Prefix(t)
	rdb := redis.NewClient(&redis.Options{Addr: rds.Addr})
	defer rdb.Close()
	f, err := cluster.LoadFile(writeFile(t, 1, 2, 3))
	if err != nil {
		t.Fatal(err)
	}
	var members []*etcdmember.Membership
	defer func() {
		for _, m := range members {
			m.Close()
		}
	}()
	configure := func(cfg *pomelo.Config) {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		m, err := etcdmember.New(ctx, etcdmember.Config{Endpoints: []string{etcd.Endpoint}, Prefix: prefix, LeaseTTL: 2 * time.Second, Logger: quiet})
		if err != nil {
			t.Fatal(err)
		}
		members = append(members, m)
		cfg.Membership = m
		cfg.Online = online.New(rdb, online.Config{Prefix: prefix, Logger: quiet})
	}
	c, err := pomelo.StartCluster(f, pomelo.ClusterConfig{EphemeralPorts: true, Configure: configure, Logger: quiet}, register)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	front, back := c.App("connector-1"), c.App("echo-1")
	// Each server sees the other in etcd once StartCluster returns.
	if len(front.Members("echo")) != 1 || len(back.Members("connector")) != 1 {
		t.Fatalf("after StartCluster the frontend sees %v, the backend %v", front.Members(""), back.Members(""))
	}

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	cl, err := client.Dial(ctx, "ws://"+front.WSAddr().String()+"/")
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	pushed := make(chan string, 4)
	client.Subscribe(cl, testingv1.EchoPushOnEcho, func(ev *testingv1.EchoEvent) { pushed <- ev.Text })
	if _, err := testingv1.NewEchoHandlerClient(cl).Echo(ctx, &testingv1.EchoRequest{Text: "bob"}); err != nil {
		t.Fatal(err)
	}
	next := func(want string) {
		t.Helper()
		for {
			select {
			case got := <-pushed:
				if got == want {
					return
				}
			case <-ctx.Done():
				t.Fatalf("no push %q", want)
			}
		}
	}
	next("bob") // the echo's own room push

	reader := online.New(rdb, online.Config{Prefix: prefix, Logger: quiet})
	defer reader.Close()
	if fes, err := reader.Frontends(ctx, "bob"); err != nil || !slices.Equal(fes, []string{"connector-1"}) {
		t.Fatalf("bob's frontends in Redis: %v, %v", fes, err)
	}
	if failed, err := testingv1.EchoPushOnEcho.ToUIDs(ctx, back, []string{"bob", "nobody"}, &testingv1.EchoEvent{Text: "direct"}); err != nil || !slices.Equal(failed, []string{"nobody"}) {
		t.Fatalf("push by uid: failed %v, %v", failed, err)
	}
	next("direct")
	global := back.GlobalChannels()
	if err := global.Add(ctx, "hall", "bob", "connector-1"); err != nil {
		t.Fatal(err)
	}
	if failed, err := testingv1.EchoPushOnEcho.ToGroup(ctx, global.Channel("hall"), &testingv1.EchoEvent{Text: "global"}); err != nil || len(failed) != 0 {
		t.Fatalf("push to a global channel: failed %v, %v", failed, err)
	}
	next("global")

	if err := c.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if on, err := reader.Online(ctx, "bob"); err != nil || on {
		t.Fatalf("bob online after the cluster closed: %v, %v", on, err)
	}
	if ms, err := global.Members(ctx, "hall"); err != nil || len(ms) != 0 {
		t.Fatalf("global channel members after the cluster closed: %v, %v", ms, err)
	}
	ecli, err := clientv3.New(clientv3.Config{Endpoints: []string{etcd.Endpoint}, DialTimeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer ecli.Close()
	if res, err := ecli.Get(ctx, prefix, clientv3.WithPrefix(), clientv3.WithCountOnly()); err != nil || res.Count != 0 {
		t.Fatalf("etcd registrations after the cluster closed: %v, %v", res, err)
	}
}
