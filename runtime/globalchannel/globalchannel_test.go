package globalchannel_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/structpb"

	"github.com/pomelo-go/pomelo/internal/clustertest"
	"github.com/pomelo-go/pomelo/internal/testservers"
	"github.com/pomelo-go/pomelo/runtime"
	"github.com/pomelo-go/pomelo/runtime/channel"
	"github.com/pomelo-go/pomelo/runtime/client"
	"github.com/pomelo-go/pomelo/runtime/globalchannel"
	"github.com/pomelo-go/pomelo/runtime/online"
	"github.com/pomelo-go/pomelo/runtime/testkit"
)

func TestMain(m *testing.M) { testservers.Main(m) }

// env is 2 connectors and 2 chat backends, each with online status and
// global channels on the shared Redis under the test's own prefix. The
// first chat backend delivers through a counting Delivery.
type env struct {
	*clustertest.Cluster
	rdb    *redis.Client
	prefix string
	calls  *calls

	mu sync.Mutex
	on map[string]*online.Service
	gc map[string]*globalchannel.Service
}

// calls counts deliveries: frontend id -> uid lists, one per call.
type calls struct {
	mu sync.Mutex
	by map[string][][]string
}

func (c *calls) take() map[string][][]string {
	c.mu.Lock()
	defer c.mu.Unlock()
	by := c.by
	c.by = map[string][][]string{}
	return by
}

func start(t testing.TB, ttl time.Duration) *env {
	t.Helper()
	r := testservers.SharedRedis(t)
	e := &env{
		rdb:    redis.NewClient(&redis.Options{Addr: r.Addr}),
		prefix: testservers.Prefix(t),
		calls:  &calls{by: map[string][][]string{}},
		on:     map[string]*online.Service{},
		gc:     map[string]*globalchannel.Service{},
	}
	t.Cleanup(func() { e.rdb.Close() })
	t.Cleanup(func() { // after the cluster's own cleanup
		e.mu.Lock()
		defer e.mu.Unlock()
		for _, on := range e.on {
			on.Close()
		}
	})
	log := slog.New(slog.NewTextHandler(t.Output(), nil))
	e.Cluster = clustertest.Start(t, clustertest.Options{
		Servers: []clustertest.Spec{{Type: "connector", Count: 2, Frontend: true}, {Type: "chat", Count: 2}},
		Setup: func(m *clustertest.Member) error {
			on := online.New(e.rdb, online.Config{Prefix: e.prefix, TTL: ttl, Logger: log})
			var cfg globalchannel.Config
			if m.Info.ID == "chat-1" {
				cfg.Delivery = channel.DeliveryFunc(
					func(ctx context.Context, fid, route string, msg proto.Message, uids []string) ([]string, error) {
						e.calls.mu.Lock()
						e.calls.by[fid] = append(e.calls.by[fid], slices.Sorted(slices.Values(uids)))
						e.calls.mu.Unlock()
						return m.Node.PushToFrontend(ctx, fid, route, msg, uids)
					})
			}
			gc := globalchannel.New(on, cfg)
			e.mu.Lock()
			e.on[m.Info.ID], e.gc[m.Info.ID] = on, gc
			e.mu.Unlock()
			if m.Info.Frontend {
				handle(t, m.Server, "connector.entry.bind", func(ctx context.Context, s runtime.Session, in *structpb.Struct) (*structpb.Struct, error) {
					return &structpb.Struct{}, s.Bind(ctx, in.Fields["uid"].GetStringValue())
				})
			}
			return on.Attach(m.Node)
		},
	})
	return e
}

func (e *env) channels(id string) *globalchannel.Service {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.gc[id]
}

// handle registers a free-form JSON route on a test server.
var handle = testkit.HandleStruct

// user is a connected, bound client that counts its "onRoom" pushes.
type user struct {
	c     *client.Client
	front string
	got   atomic.Int32
}

func login(t *testing.T, m *clustertest.Member, uid string) *user {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	c, err := client.Dial(ctx, m.WSURL())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	u := &user{c: c, front: m.Info.ID}
	c.OnPush("onRoom", func([]byte) { u.got.Add(1) })
	in, _ := structpb.NewStruct(map[string]any{"uid": uid})
	if err := c.Request(ctx, "connector.entry.bind", in, &structpb.Struct{}); err != nil {
		t.Fatal(err)
	}
	return u
}

func waitFor(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within 10s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func msg(text string) proto.Message {
	s, _ := structpb.NewStruct(map[string]any{"text": text})
	return s
}

func members(t testing.TB, g *globalchannel.Service, name string) []string {
	t.Helper()
	ms, err := g.Members(context.Background(), name)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, m := range ms {
		out = append(out, m.UID+"@"+m.FrontendID)
	}
	return out
}

// TestPushFromTwoBackendsExactlyOnce builds a channel with members on both
// frontends from both backends, and pushes from each: every member gets
// every push exactly once, through one call per frontend per push.
func TestPushFromTwoBackendsExactlyOnce(t *testing.T) {
	e := start(t, 0)
	ctx := context.Background()
	fe := e.Members("connector")
	users := map[string]*user{
		"u1": login(t, fe[0], "u1"), "u2": login(t, fe[0], "u2"),
		"u3": login(t, fe[1], "u3"), "u4": login(t, fe[1], "u4"),
	}
	g1, g2 := e.channels("chat-1"), e.channels("chat-2")
	for uid, g := range map[string]*globalchannel.Service{"u1": g1, "u3": g1, "u2": g2, "u4": g2} {
		if err := g.Add(ctx, "room", uid, users[uid].front); err != nil {
			t.Fatal(err)
		}
	}
	// Adding again, from the other backend, changes nothing.
	if err := g2.Add(ctx, "room", "u1", "connector-1"); err != nil {
		t.Fatal(err)
	}
	want := []string{"u1@connector-1", "u2@connector-1", "u3@connector-2", "u4@connector-2"}
	for _, g := range []*globalchannel.Service{g1, g2} {
		if got := members(t, g, "room"); !slices.Equal(got, want) {
			t.Fatalf("members = %v, want %v", got, want)
		}
	}
	if got, err := g2.MembersOn(ctx, "room", "connector-2"); err != nil || !slices.Equal(got, []string{"u3", "u4"}) {
		t.Fatalf("members on connector-2 = %v, %v", got, err)
	}

	failed, err := g1.Push(ctx, "room", "onRoom", msg("from chat-1"))
	if err != nil || len(failed) != 0 {
		t.Fatalf("push from chat-1: failed %v, err %v", failed, err)
	}
	got := e.calls.take()
	if len(got) != 2 || !slices.Equal(got["connector-1"][0], []string{"u1", "u2"}) || len(got["connector-1"]) != 1 ||
		!slices.Equal(got["connector-2"][0], []string{"u3", "u4"}) || len(got["connector-2"]) != 1 {
		t.Fatalf("deliveries of one push: %v, want one call per frontend", got)
	}
	// A typed push through the channel handle, from the other backend.
	onRoom := runtime.NewPushRoute[*structpb.Struct]("onRoom")
	if failed, err := onRoom.ToGroup(ctx, g2.Channel("room"), msg("from chat-2").(*structpb.Struct)); err != nil || len(failed) != 0 {
		t.Fatalf("push from chat-2: failed %v, err %v", failed, err)
	}
	waitFor(t, "two pushes each", func() bool {
		for _, u := range users {
			if u.got.Load() < 2 {
				return false
			}
		}
		return true
	})

	// u1 leaves; u3's session goes away (the push reports it).
	if err := g2.Channel("room").Leave(ctx, "u1", "connector-1"); err != nil {
		t.Fatal(err)
	}
	users["u3"].c.Close()
	waitFor(t, "u3 gone", func() bool { return len(fe[1].Server.Sessions().GetByUID("u3")) == 0 })
	failed, err = g1.Push(ctx, "room", "onRoom", msg("third"))
	if err != nil || !slices.Equal(failed, []string{"u3"}) {
		t.Fatalf("third push: failed %v, err %v; want [u3]", failed, err)
	}
	waitFor(t, "third push", func() bool { return users["u2"].got.Load() == 3 && users["u4"].got.Load() == 3 })
	time.Sleep(100 * time.Millisecond) // let a duplicate arrive, if any
	for uid, n := range map[string]int32{"u1": 2, "u2": 3, "u3": 2, "u4": 3} {
		if g := users[uid].got.Load(); g != n {
			t.Errorf("%s got %d pushes, want exactly %d", uid, g, n)
		}
	}

	if err := g1.Destroy(ctx, "room"); err != nil {
		t.Fatal(err)
	}
	if got := members(t, g2, "room"); len(got) != 0 {
		t.Fatalf("members after destroy: %v", got)
	}
	if keys := scan(t, e, "gc*"); len(keys) != 0 {
		t.Fatalf("keys left after destroy: %v", keys)
	}
	e.calls.take()
	if failed, err := g1.Push(ctx, "room", "onRoom", msg("void")); err != nil || len(failed) != 0 || len(e.calls.take()) != 0 {
		t.Fatalf("push to a destroyed channel: %v %v", failed, err)
	}
}

// scan lists the test's keys matching pattern (after its prefix).
func scan(t testing.TB, e *env, pattern string) []string {
	t.Helper()
	var keys []string
	iter := e.rdb.Scan(context.Background(), 0, e.prefix+pattern, 100).Iterator()
	for iter.Next(context.Background()) {
		keys = append(keys, iter.Val())
	}
	if err := iter.Err(); err != nil {
		t.Fatal(err)
	}
	return keys
}

func TestCrashedFrontendMembershipExpires(t *testing.T) {
	e := start(t, time.Second)
	ctx := context.Background()
	fe := e.Members("connector")
	login(t, fe[0], "a")
	login(t, fe[1], "b")
	g := e.channels("chat-1")
	for _, name := range []string{"r1", "r2"} {
		if err := g.Add(ctx, name, "a", "connector-1"); err != nil {
			t.Fatal(err)
		}
		if err := g.Add(ctx, name, "b", "connector-2"); err != nil {
			t.Fatal(err)
		}
	}
	e.mu.Lock()
	e.on["connector-2"].Kill()
	e.mu.Unlock()
	e.Kill("connector-2")
	waitFor(t, "b's membership ignored", func() bool {
		return slices.Equal(members(t, g, "r1"), []string{"a@connector-1"}) && slices.Equal(members(t, g, "r2"), []string{"a@connector-1"})
	})
	waitFor(t, "connector-2's memberships reaped", func() bool {
		n, err := e.rdb.Exists(ctx, e.prefix+"gc:2:r1:f:connector-2", e.prefix+"gc:2:r2:f:connector-2", e.prefix+"gcf:connector-2").Result()
		return err == nil && n == 0
	})
	if ok, _ := e.rdb.SIsMember(ctx, e.prefix+"gc:2:r1:fronts", "connector-2").Result(); ok {
		t.Fatal("connector-2 still listed in r1")
	}
	// Adding a member on the dead frontend fails.
	err := g.Add(ctx, "r1", "b", "connector-2")
	if !errors.Is(err, runtime.ErrUnavailable) {
		t.Fatalf("add on a dead frontend: %v", err)
	}
}

func TestNamesDoNotCollide(t *testing.T) {
	e := start(t, 0)
	ctx := context.Background()
	g := e.channels("chat-2")
	// Names and ids built to collide under a naive key layout.
	pairs := [][3]string{
		{"a", "x", "connector-1"},
		{"a:f:connector-1", "y", "connector-1"},
		{"1:a", "z", "connector-1"},
		{"a:fronts", "w", "connector-1"},
	}
	for _, p := range pairs {
		if err := g.Add(ctx, p[0], p[1], p[2]); err != nil {
			t.Fatal(err)
		}
	}
	for _, p := range pairs {
		if got := members(t, g, p[0]); !slices.Equal(got, []string{p[1] + "@" + p[2]}) {
			t.Errorf("channel %q: members %v", p[0], got)
		}
	}
	for _, bad := range [][3]string{{"", "u", "f"}, {"n", "", "f"}, {"n", "u", ""}} {
		if err := g.Add(ctx, bad[0], bad[1], bad[2]); !errors.Is(err, runtime.ErrBadRequest) {
			t.Errorf("Add(%q): %v", bad, err)
		}
	}
}

// BenchmarkPush pushes to a channel of n members spread over two
// frontends (without sessions: the frontends report them as failed), from
// a backend: one Redis script for the members, one call per frontend.
func BenchmarkPush(b *testing.B) {
	for _, n := range []int{10, 1000} {
		b.Run(fmt.Sprintf("members=%d", n), func(b *testing.B) {
			e := start(b, 0)
			ctx := context.Background()
			g := e.channels("chat-2")
			for i := range n {
				if err := g.Add(ctx, "bench", fmt.Sprintf("user-%d", i), fmt.Sprintf("connector-%d", 1+i%2)); err != nil {
					b.Fatal(err)
				}
			}
			m := msg("hello")
			b.ReportAllocs()
			for b.Loop() {
				failed, err := g.Push(ctx, "bench", "onRoom", m)
				if err != nil || len(failed) != n {
					b.Fatalf("failed %d, err %v", len(failed), err)
				}
			}
		})
	}
}
