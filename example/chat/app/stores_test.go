package app_test

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
	"google.golang.org/protobuf/types/known/structpb"

	"github.com/pomelo-go/pomelo"
	"github.com/pomelo-go/pomelo/example/chat/app"
	chatv1 "github.com/pomelo-go/pomelo/example/chat/gen/chat/v1"
	"github.com/pomelo-go/pomelo/internal/testservers"
	"github.com/pomelo-go/pomelo/runtime/cluster"
	"github.com/pomelo-go/pomelo/runtime/etcdmember"
	"github.com/pomelo-go/pomelo/runtime/online"
)

// testStores are the etcd and Redis of a test, with clients to look into
// them, and the Options that put a cluster on them under prefixes of the
// test's own.
type testStores struct {
	etcd  *clientv3.Client
	redis *redis.Client
	opts  app.Options
}

// startStores returns the test's etcd and Redis, or the one asked for
// (the test skips when its program is missing).
func startStores(t *testing.T, useEtcd, useRedis bool) *testStores {
	t.Helper()
	prefix := testservers.Prefix(t)
	st := &testStores{}
	if useEtcd {
		e := testservers.SharedEtcd(t)
		cli, err := clientv3.New(clientv3.Config{Endpoints: []string{e.Endpoint}, DialTimeout: 5 * time.Second, Logger: zap.NewNop()})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { cli.Close() })
		st.etcd = cli
		st.opts.EtcdEndpoints, st.opts.EtcdPrefix = []string{e.Endpoint}, "/"+prefix
	}
	if useRedis {
		r := testservers.SharedRedis(t)
		rdb := redis.NewClient(&redis.Options{Addr: r.Addr})
		t.Cleanup(func() { rdb.Close() })
		st.redis = rdb
		st.opts.RedisAddr, st.opts.RedisPrefix = r.Addr, prefix
	}
	return st
}

// registered returns the ids of the servers registered in etcd, sorted.
func (st *testStores) registered(t *testing.T) []string {
	t.Helper()
	res, err := st.etcd.Get(testCtx(t), st.opts.EtcdPrefix, clientv3.WithPrefix(), clientv3.WithKeysOnly())
	if err != nil {
		t.Fatal(err)
	}
	var ids []string
	for _, kv := range res.Kvs {
		ids = append(ids, strings.TrimPrefix(string(kv.Key), st.opts.EtcdPrefix))
	}
	slices.Sort(ids)
	return ids
}

// redisKeys returns the Redis keys of the cluster.
func (st *testStores) redisKeys(t *testing.T) []string {
	t.Helper()
	var keys []string
	iter := st.redis.Scan(testCtx(t), 0, st.opts.RedisPrefix+"*", 100).Iterator()
	for iter.Next(testCtx(t)) {
		keys = append(keys, iter.Val())
	}
	if err := iter.Err(); err != nil {
		t.Fatal(err)
	}
	return keys
}

// startOn starts the servers of ids (the default ones when empty) on the
// test's etcd and Redis.
func (st *testStores) startOn(t *testing.T, ids ...string) *app.App {
	opts := st.opts
	opts.Servers = ids
	return startApp(t, opts)
}

// memberIDs returns the ids of the servers in a membership.
func memberIDs(members []cluster.ServerInfo) []string {
	var ids []string
	for _, s := range members {
		ids = append(ids, s.ID)
	}
	return ids
}

// waitUntil polls cond; the limit only keeps a broken test from hanging.
func waitUntil(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// enterAt connects name straight to connector id of a and enters room rid.
func enterAt(t *testing.T, a *app.App, id, name, rid string) *user {
	t.Helper()
	info := a.Server(id).Info()
	u := connectTo(t, name, info.Host, int32(info.WSPort))
	res, err := chatv1.NewEntryHandlerClient(u.c).Enter(testCtx(t), &chatv1.EnterRequest{Username: name, Rid: rid})
	if err != nil {
		t.Fatalf("%s enters %s on %s: %v", name, rid, id, err)
	}
	u.users = res.GetUsers()
	return u
}

// roomOn returns a room id, starting with prefix, that rendezvous hashing
// over chat-1, chat-2 and chat-3 places on chat server id.
func roomOn(id, prefix string) string {
	servers := []cluster.ServerInfo{{ID: "chat-1"}, {ID: "chat-2"}, {ID: "chat-3"}}
	for i := 0; ; i++ {
		rid := fmt.Sprintf("%s-%d", prefix, i)
		if cluster.Rendezvous(rid, servers).ID == id {
			return rid
		}
	}
}

// sessionsOf counts the sessions of uid on each connector of a.
func sessionsOf(a *app.App, uid string) map[string]int {
	n := map[string]int{}
	for _, s := range a.Servers() {
		if s.Info().Type == app.TypeConnector {
			if k := len(s.Sessions().GetByUID(uid)); k > 0 {
				n[s.Info().ID] = k
			}
		}
	}
	return n
}

// TestEtcdRedis runs the example on etcd and Redis (Options.EtcdEndpoints
// and RedisAddr, the -etcd and -redis flags): the servers find each other
// in etcd, a user has one session in the whole cluster, and a chat server
// started later by another instance joins through etcd and takes new
// rooms; every server leaves etcd and Redis when it stops.
func TestEtcdRedis(t *testing.T) {
	st := startStores(t, true, true)
	a := st.startOn(t)
	ctx := testCtx(t)

	// The cluster comes up from etcd: every server registered itself, and
	// sees the others there.
	servers := []string{"chat-1", "chat-2", "connector-1", "connector-2", "gate-1"}
	if got := st.registered(t); !slices.Equal(got, servers) {
		t.Fatalf("registered in etcd: %q, want %q", got, servers)
	}
	for _, s := range a.Servers() {
		if _, etcd := a.Config(s.ID()).Membership.(*etcdmember.Membership); !etcd {
			t.Errorf("%s's membership is %T, not etcd", s.ID(), a.Config(s.ID()).Membership)
		}
		if got := memberIDs(s.Members("")); !slices.Equal(got, servers) {
			t.Errorf("%s sees %q, want %q", s.Info().ID, got, servers)
		}
		if a.Config(s.ID()).Online == nil {
			t.Errorf("%s has no online status", s.Info().ID)
		}
	}
	// A request the connector forwards to a chat server.
	echoer := connect(t, a, "echoer")
	body, _ := structpb.NewStruct(map[string]any{"ping": "etcd"})
	if got, err := chatv1.NewChatHandlerClient(echoer.c).Echo(ctx, body); err != nil || got.GetFields()["ping"].GetStringValue() != "etcd" {
		t.Fatalf("echo through the cluster = %v, %v", got, err)
	}

	// ann enters on connector-1, bob too; then ann enters again on
	// connector-2. Her first session is kicked for the relogin and she
	// keeps exactly one session, in the room, on connector-2.
	const uid = "ann*lobby"
	ann1 := enterAt(t, a, "connector-1", "ann", "lobby")
	bob := enterAt(t, a, "connector-1", "bob", "lobby")
	if got := next(t, "onAdd bob", ann1.adds); got != "bob" {
		t.Fatalf("ann got onAdd %q, want bob", got)
	}
	ann2 := enterAt(t, a, "connector-2", "ann", "lobby")
	if !slices.Equal(ann2.users, []string{"ann", "bob"}) {
		t.Errorf("users after the relogin: %q, want [ann bob]", ann2.users)
	}
	select {
	case <-ann1.c.Done():
	case <-ctx.Done():
		t.Fatal("ann's first session is still open")
	}
	if reason, ok := ann1.c.KickReason(); !ok || reason != "relogin" {
		t.Fatalf("ann's first session ended with %v, want a kick with reason relogin", ann1.c.Err())
	}
	on := online.New(st.redis, online.Config{Prefix: st.opts.RedisPrefix}) // a view of Redis
	defer on.Close()
	waitUntil(t, "ann's first session to be gone", func() bool {
		fes, err := on.Frontends(ctx, uid)
		return err == nil && slices.Equal(fes, []string{"connector-2"}) &&
			fmt.Sprint(sessionsOf(a, uid)) == fmt.Sprint(map[string]int{"connector-2": 1})
	})

	// A private message from bob on connector-1 reaches ann on connector-2,
	// and the room did not see her leave.
	bob.send("psst", "ann")
	want := &chatv1.ChatMessage{Msg: "psst", From: "bob", Target: "ann"}
	wantChat(t, ann2, want)
	wantChat(t, bob, want)
	ann2.send("hi all", "*")
	want = &chatv1.ChatMessage{Msg: "hi all", From: "ann", Target: "*"}
	wantChat(t, ann2, want)
	wantChat(t, bob, want)
	select {
	case u := <-bob.leaves:
		t.Errorf("bob got onLeave %q on a relogin", u)
	default:
	}

	// Another instance starts chat-3: it registers in etcd, the others see
	// it, and a new room that hashes to it opens there.
	b := st.startOn(t, "chat-3")
	for _, s := range a.Servers() {
		waitUntil(t, s.Info().ID+" to see chat-3", func() bool {
			return slices.Contains(memberIDs(s.Members("")), "chat-3")
		})
	}
	room := roomOn("chat-3", "new")
	carl := enterAt(t, a, "connector-1", "carl", room)
	dora := enterAt(t, a, "connector-2", "dora", room)
	if !slices.Equal(dora.users, []string{"carl", "dora"}) {
		t.Fatalf("dora sees users %q in %s, want [carl dora]", dora.users, room)
	}
	if got := next(t, "onAdd dora", carl.adds); got != "dora" {
		t.Fatalf("carl got onAdd %q, want dora", got)
	}
	found, err := chatv1.NewChatRemoteClient(a.Server("connector-1")).LookupTo(ctx, "chat-3", &chatv1.LookupRequest{Rid: room})
	if err != nil || !found.GetFound() || found.GetMembers() != 2 {
		t.Fatalf("chat-3 holds %s: %v, %v; want it, with 2 members", room, found, err)
	}
	dora.send("on chat-3", "*")
	want = &chatv1.ChatMessage{Msg: "on chat-3", From: "dora", Target: "*"}
	wantChat(t, dora, want)
	wantChat(t, carl, want)

	// chat-3 stops: it leaves etcd, the others stop routing to it, and its
	// room is gone with it.
	if err := b.Close(ctx); err != nil {
		t.Fatalf("closing chat-3: %v", err)
	}
	if got := st.registered(t); !slices.Equal(got, servers) {
		t.Fatalf("registered in etcd after chat-3 stopped: %q, want %q", got, servers)
	}
	for _, s := range a.Servers() {
		waitUntil(t, s.Info().ID+" to see chat-3 go", func() bool {
			return !slices.Contains(memberIDs(s.Members("")), "chat-3")
		})
	}
	if _, err := chatv1.NewChatHandlerClient(dora.c).Send(ctx, &chatv1.SendRequest{Content: "hello?", Target: "*"}); !errors.Is(err, pomelo.ErrNotFound) {
		t.Errorf("sending in a room whose server is gone: %v, want NOT_FOUND", err)
	}
	eve := enterAt(t, a, "connector-2", "eve", roomOn("chat-3", "later"))
	eve.send("anyone?", "*")
	wantChat(t, eve, &chatv1.ChatMessage{Msg: "anyone?", From: "eve", Target: "*"})

	// Stopping leaves nothing behind in etcd and Redis.
	if err := a.Close(ctx); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if got := st.registered(t); len(got) != 0 {
		t.Errorf("still registered in etcd after Close: %q", got)
	}
	if got := st.redisKeys(t); len(got) != 0 {
		t.Errorf("Redis keys left after Close: %q", got)
	}
}
