package node_test

import (
	"context"
	"errors"
	"fmt"
	goruntime "runtime"
	"slices"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/protobuf/types/known/structpb"

	testingv1 "github.com/pomelo-go/pomelo/gen/pomelo/testing/v1"
	"github.com/pomelo-go/pomelo/internal/clustertest"
	"github.com/pomelo-go/pomelo/internal/node"
	"github.com/pomelo-go/pomelo/runtime"
	"github.com/pomelo-go/pomelo/runtime/channel"
	"github.com/pomelo-go/pomelo/runtime/client"
	"github.com/pomelo-go/pomelo/runtime/cluster"
	"github.com/pomelo-go/pomelo/runtime/testkit"
)

// handle registers a free-form JSON route on a test server.
var handle = testkit.HandleStruct

// obj builds a free-form JSON object.
var obj = testkit.Struct

type whoami struct {
	testingv1.UnimplementedEchoRemoteServer
	id string
}

func (w whoami) Whoami(_ context.Context, r *testingv1.WhoamiRequest) (*testingv1.WhoamiResponse, error) {
	return &testingv1.WhoamiResponse{ServerId: w.id, Note: r.Note}, nil
}

func (w whoami) Add(_ context.Context, r *testingv1.AddRequest) (*testingv1.AddResponse, error) {
	return &testingv1.AddResponse{Sum: r.A + r.B, ServerId: w.id}, nil
}

// chatCluster starts 2 connectors and 2 chat backends (plus 2 "echo"
// servers for remotes) with handlers that exercise the cluster.
type chatCluster struct {
	*clustertest.Cluster
	channels sync.Map // server id -> *channel.Service

	mu     sync.Mutex
	closed map[string][]cluster.SessionEvent // by backend id
}

// closedOn returns the session closes backend id heard of so far.
func (cc *chatCluster) closedOn(id string) []cluster.SessionEvent {
	cc.mu.Lock()
	defer cc.mu.Unlock()
	return slices.Clone(cc.closed[id])
}

func startChat(t *testing.T) *chatCluster {
	cc := &chatCluster{closed: map[string][]cluster.SessionEvent{}}
	cc.Cluster = clustertest.Start(t, clustertest.Options{
		Servers: []clustertest.Spec{
			{Type: "connector", Count: 2, Frontend: true},
			{Type: "chat", Count: 2},
			{Type: "echo", Count: 2},
		},
		Setup: func(m *clustertest.Member) error {
			switch m.Info.Type {
			case "chat":
				cc.setupChat(t, m)
			case "echo":
				return testingv1.RegisterEchoRemoteServer(m.Server, whoami{id: m.Info.ID})
			}
			return nil
		},
	})
	return cc
}

func (cc *chatCluster) setupChat(t *testing.T, m *clustertest.Member) {
	chs := channel.NewService(channel.DeliveryFunc(m.Node.PushToFrontend), channel.Config{})
	cc.channels.Store(m.Info.ID, chs)
	m.Node.OnSessionClosed(func(ev cluster.SessionEvent) {
		cc.mu.Lock()
		cc.closed[m.Info.ID] = append(cc.closed[m.Info.ID], ev)
		cc.mu.Unlock()
		chs.SessionClosed(ev.Session.FrontendID, ev.Session.ID, ev.Session.UID) // as the App does
	})
	handle(t, m.Server, "chat.h.whoami", func(ctx context.Context, s runtime.Session, in *structpb.Struct) (*structpb.Struct, error) {
		v, _ := s.Get("room")
		return obj(map[string]any{"server": m.Info.ID, "uid": s.UID(), "frontend": s.FrontendID(), "room": v}), nil
	})
	handle(t, m.Server, "chat.h.login", func(ctx context.Context, s runtime.Session, in *structpb.Struct) (*structpb.Struct, error) {
		uid := in.Fields["uid"].GetStringValue()
		if err := s.Bind(ctx, uid); err != nil {
			return nil, err
		}
		if room := in.Fields["room"].GetStringValue(); room != "" {
			s.Set("room", room)
			if err := s.Push(ctx, "room"); err != nil {
				return nil, err
			}
		}
		return obj(map[string]any{"code": 200}), nil
	})
	handle(t, m.Server, "chat.h.join", func(ctx context.Context, s runtime.Session, in *structpb.Struct) (*structpb.Struct, error) {
		ch := chs.GetOrCreate(in.Fields["channel"].GetStringValue(), channel.ChannelConfig{})
		if err := ch.Add(s.UID(), s.FrontendID()); err != nil {
			return nil, err
		}
		return obj(map[string]any{"code": 200, "members": float64(ch.Len())}), nil
	})
	handle(t, m.Server, "chat.h.joinLeaving", func(ctx context.Context, s runtime.Session, in *structpb.Struct) (*structpb.Struct, error) {
		ch := chs.GetOrCreate(in.Fields["channel"].GetStringValue(), channel.ChannelConfig{LeaveOnClose: true})
		if err := ch.AddSession(s); err != nil {
			return nil, err
		}
		return obj(map[string]any{"code": 200, "members": float64(ch.Len())}), nil
	})
	handle(t, m.Server, "chat.h.say", func(ctx context.Context, s runtime.Session, in *structpb.Struct) (*structpb.Struct, error) {
		ch, ok := chs.Get(in.Fields["channel"].GetStringValue())
		if !ok {
			return nil, runtime.NewError(404, "no such channel")
		}
		failed, err := ch.PushMessage(ctx, "onSay", obj(map[string]any{"from": s.UID(), "text": in.Fields["text"].GetStringValue()}))
		if err != nil {
			return nil, err
		}
		return obj(map[string]any{"code": 200, "failed": float64(len(failed))}), nil
	})
	handle(t, m.Server, "chat.h.kickMe", func(ctx context.Context, s runtime.Session, in *structpb.Struct) (*structpb.Struct, error) {
		return nil, s.Kick(ctx, "kicked by "+m.Info.ID)
	})
	handle(t, m.Server, "chat.h.watch", func(ctx context.Context, s runtime.Session, in *structpb.Struct) (*structpb.Struct, error) {
		return obj(map[string]any{"code": 200}), m.Node.WatchSession(ctx, s.FrontendID(), s.ID())
	})
	handle(t, m.Server, "chat.h.broadcast", func(ctx context.Context, s runtime.Session, in *structpb.Struct) (*structpb.Struct, error) {
		return obj(map[string]any{"code": 200}), m.Node.Broadcast(ctx, "connector", "onNews", in, runtime.BroadcastOptions{BoundOnly: true})
	})
	handle(t, m.Server, "chat.h.slow", func(ctx context.Context, s runtime.Session, in *structpb.Struct) (*structpb.Struct, error) {
		select {
		case <-time.After(time.Duration(in.Fields["ms"].GetNumberValue()) * time.Millisecond):
		case <-ctx.Done():
		}
		return obj(map[string]any{"server": m.Info.ID}), nil
	})
	handle(t, m.Server, "chat.h.remote", func(ctx context.Context, s runtime.Session, in *structpb.Struct) (*structpb.Struct, error) {
		cl := testingv1.NewEchoRemoteClient(m.Node)
		bySession, err := cl.Whoami(ctx, &testingv1.WhoamiRequest{Note: "session"})
		if err != nil {
			return nil, err
		}
		byID, err := cl.WhoamiTo(ctx, "echo-2", &testingv1.WhoamiRequest{Note: "id"})
		if err != nil {
			return nil, err
		}
		all, err := cl.WhoamiAll(ctx, &testingv1.WhoamiRequest{Note: "all"})
		if err != nil {
			return nil, err
		}
		var ids []any
		for _, r := range all {
			if r.Err != nil {
				return nil, r.Err
			}
			ids = append(ids, r.Response.ServerId)
		}
		return obj(map[string]any{"bySession": bySession.ServerId, "byID": byID.ServerId, "all": ids}), nil
	})
}

func dial(t testing.TB, m *clustertest.Member) *client.Client {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	c, err := client.Dial(ctx, m.WSURL())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func call(t testing.TB, c *client.Client, route string, in map[string]any) *structpb.Struct {
	t.Helper()
	out, err := tryCall(c, route, in)
	if err != nil {
		t.Fatalf("%s: %v", route, err)
	}
	return out
}

func tryCall(c *client.Client, route string, in map[string]any) (*structpb.Struct, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	out := &structpb.Struct{}
	err := c.Request(ctx, route, obj(in), out)
	return out, err
}

func str(s *structpb.Struct, k string) string { return s.Fields[k].GetStringValue() }

func TestForwardBindPushSettingAndKick(t *testing.T) {
	cc := startChat(t)
	fe := cc.Members("connector")
	c := dial(t, fe[0])

	got := call(t, c, "chat.h.whoami", nil)
	if !strings.HasPrefix(str(got, "server"), "chat-") || str(got, "frontend") != "connector-1" || str(got, "uid") != "" {
		t.Fatalf("forwarded whoami = %v", got)
	}
	call(t, c, "chat.h.login", map[string]any{"uid": "ann", "room": "r1"})
	got = call(t, c, "chat.h.whoami", nil)
	if str(got, "uid") != "ann" || str(got, "room") != "r1" {
		t.Fatalf("after bind and push: %v", got)
	}
	if n := fe[0].Server.Sessions().BoundCount(); n != 1 {
		t.Fatalf("frontend bound sessions = %d, want 1", n)
	}
	if s := fe[0].Server.Sessions().GetByUID("ann"); len(s) != 1 {
		t.Fatalf("frontend sessions of ann = %d", len(s))
	} else if v, _ := s[0].Get("room"); v != "r1" {
		t.Fatalf("real session room = %q", v)
	}

	// The request that kicks its own session gets its answer before the KICK.
	if _, err := tryCall(c, "chat.h.kickMe", nil); err != nil {
		t.Fatalf("kickMe: %v, want its answer before the KICK", err)
	}
	select {
	case <-c.Done():
	case <-time.After(5 * time.Second):
		t.Fatal("client not closed after kick")
	}
	if r, ok := c.KickReason(); !ok || !strings.HasPrefix(r, "kicked by chat-") {
		t.Fatalf("kick reason = %q, %v", r, ok)
	}
	waitFor(t, func() bool { return fe[0].Server.Sessions().Count() == 0 })
}

func waitFor(t testing.TB, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition not met in 5s")
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestChannelPushAcrossFrontendsExactlyOnce(t *testing.T) {
	cc := startChat(t)
	fe := cc.Members("connector")
	users := []string{"u1", "u2", "u3", "u4"}
	clients := map[string]*client.Client{}
	counts := map[string]*atomic.Int32{}
	for i, u := range users {
		c := dial(t, fe[i%2])
		clients[u] = c
		n := &atomic.Int32{}
		counts[u] = n
		c.OnPush("onSay", func(body []byte) { n.Add(1) })
		call(t, c, "chat.h.login", map[string]any{"uid": u})
	}
	// The channel lives on whichever chat server each user is routed to;
	// use a route key so all joins hit one backend: join through one user
	// and add the others from the same backend by joining with their own
	// sessions (routed by uid, possibly to the other backend). To keep one
	// channel, pick users that route to the same backend.
	backendOf := map[string]string{}
	for _, u := range users {
		backendOf[u] = str(call(t, clients[u], "chat.h.whoami", nil), "server")
	}
	byBackend := map[string][]string{}
	for _, u := range users {
		byBackend[backendOf[u]] = append(byBackend[backendOf[u]], u)
	}
	// Every backend has its own channel "room": members of a backend's
	// channel may sit on both frontends.
	for _, u := range users {
		call(t, clients[u], "chat.h.join", map[string]any{"channel": "room"})
	}
	for b, members := range byBackend {
		speaker := members[0]
		res := call(t, clients[speaker], "chat.h.say", map[string]any{"channel": "room", "text": "hi from " + b})
		if f := res.Fields["failed"].GetNumberValue(); f != 0 {
			t.Fatalf("push failed for %v uids", f)
		}
	}
	// Re-joining must not duplicate.
	for _, u := range users {
		call(t, clients[u], "chat.h.join", map[string]any{"channel": "room"})
	}
	for b, members := range byBackend {
		call(t, clients[members[0]], "chat.h.say", map[string]any{"channel": "room", "text": "again from " + b})
	}
	waitFor(t, func() bool {
		for _, u := range users {
			if counts[u].Load() < 2 {
				return false
			}
		}
		return true
	})
	time.Sleep(100 * time.Millisecond)
	for _, u := range users {
		if n := counts[u].Load(); n != 2 {
			t.Errorf("%s got %d pushes, want exactly 2", u, n)
		}
	}
	// Members really sit on both frontends.
	if fe[0].Server.Sessions().BoundCount() == 0 || fe[1].Server.Sessions().BoundCount() == 0 {
		t.Fatal("users are not spread over both frontends")
	}
}

func TestBroadcastBoundOnly(t *testing.T) {
	cc := startChat(t)
	fe := cc.Members("connector")
	var bound, unbound atomic.Int32
	a := dial(t, fe[0])
	b := dial(t, fe[1])
	anon := dial(t, fe[1])
	a.OnPush("onNews", func([]byte) { bound.Add(1) })
	b.OnPush("onNews", func([]byte) { bound.Add(1) })
	anon.OnPush("onNews", func([]byte) { unbound.Add(1) })
	call(t, a, "chat.h.login", map[string]any{"uid": "a"})
	call(t, b, "chat.h.login", map[string]any{"uid": "b"})
	call(t, a, "chat.h.broadcast", map[string]any{"headline": "hello"})
	waitFor(t, func() bool { return bound.Load() == 2 })
	time.Sleep(100 * time.Millisecond)
	if unbound.Load() != 0 || bound.Load() != 2 {
		t.Fatalf("bound got %d, unbound got %d", bound.Load(), unbound.Load())
	}
}

func TestUserRemotesBySessionIDAndAll(t *testing.T) {
	cc := startChat(t)
	c := dial(t, cc.Members("connector")[0])
	call(t, c, "chat.h.login", map[string]any{"uid": "zed"})
	got := call(t, c, "chat.h.remote", nil)
	want, _ := cc.Members("chat")[0].Node.Route("echo", "zed")
	if str(got, "bySession") != want.ID {
		t.Errorf("by session went to %s, want %s (rendezvous of the uid)", str(got, "bySession"), want.ID)
	}
	if str(got, "byID") != "echo-2" {
		t.Errorf("by id went to %s", str(got, "byID"))
	}
	var all []string
	for _, v := range got.Fields["all"].GetListValue().GetValues() {
		all = append(all, v.GetStringValue())
	}
	sort.Strings(all)
	if fmt.Sprint(all) != "[echo-1 echo-2]" {
		t.Errorf("all = %v", all)
	}
}

func TestBackendWatchesSessionClose(t *testing.T) {
	cc := startChat(t)
	c := dial(t, cc.Members("connector")[1])
	call(t, c, "chat.h.login", map[string]any{"uid": "wat"})
	backend := str(call(t, c, "chat.h.whoami", nil), "server")
	call(t, c, "chat.h.watch", nil) // an explicit watch of a session watched already
	c.Close()
	waitFor(t, func() bool { return len(cc.closedOn(backend)) > 0 })
	time.Sleep(100 * time.Millisecond) // a second report would arrive meanwhile
	evs := cc.closedOn(backend)
	if len(evs) != 1 || evs[0].Session.FrontendID != "connector-2" || evs[0].Session.UID != "wat" {
		t.Fatalf("closed events = %+v, want one of wat on connector-2", evs)
	}
}

// watchGoroutines counts the goroutines of the backends' WatchSessions
// streams: receivers, and flushes of subscriptions.
func watchGoroutines() (receivers, flushes int) {
	buf := make([]byte, 1<<20)
	for {
		n := goruntime.Stack(buf, true)
		if n < len(buf) {
			buf = buf[:n]
			break
		}
		buf = make([]byte, 2*len(buf))
	}
	for _, g := range strings.Split(string(buf), "\n\n") {
		switch {
		case strings.Contains(g, "node.(*watchHub).receive"):
			receivers++
		case strings.Contains(g, "node.(*watchClient).flush"):
			flushes++
		}
	}
	return receivers, flushes
}

func TestBackendHearsCloseOfEverySessionItHandledOnce(t *testing.T) {
	cc := startChat(t)
	fe := cc.Members("connector")
	const users = 12
	type user struct {
		c       *client.Client
		backend string
		fe      string
	}
	var us []user
	for i := range users {
		c := dial(t, fe[i%2])
		call(t, c, "chat.h.login", map[string]any{"uid": fmt.Sprintf("once-%d", i)})
		var backend string
		for range 3 { // several requests: still one watch
			backend = str(call(t, c, "chat.h.whoami", nil), "server")
		}
		us = append(us, user{c, backend, fe[i%2].Info.ID})
	}
	// One stream per backend and frontend carries every subscription.
	if r, _ := watchGoroutines(); r > 2*2 {
		t.Fatalf("%d WatchSessions receivers for 2 backends and 2 frontends", r)
	}
	for _, u := range us {
		u.c.Close()
	}
	// The login may have run on the other backend (routed before the
	// bind): each backend hears of each session it handled once.
	heard := func(backend, uid, fe string) int {
		n := 0
		for _, ev := range cc.closedOn(backend) {
			if ev.Session.UID == uid && ev.Session.FrontendID == fe {
				n++
			}
		}
		return n
	}
	waitFor(t, func() bool {
		for i, u := range us {
			if heard(u.backend, fmt.Sprintf("once-%d", i), u.fe) == 0 {
				return false
			}
		}
		return true
	})
	time.Sleep(100 * time.Millisecond) // a second report would arrive meanwhile
	for i, u := range us {
		for _, b := range []string{"chat-1", "chat-2"} {
			if n := heard(b, fmt.Sprintf("once-%d", i), u.fe); n > 1 || (b == u.backend && n != 1) {
				t.Errorf("%s heard of once-%d's close %d times (its requests ran on %s)", b, i, n, u.backend)
			}
		}
	}
	// Nothing is left sending subscriptions.
	waitFor(t, func() bool { _, f := watchGoroutines(); return f == 0 })
}

func TestLeaveOnCloseChannelDropsADisconnectedMember(t *testing.T) {
	cc := startChat(t)
	fe := cc.Members("connector")
	// Two users that reach the same backend, where the channel lives.
	byBackend := map[string][]*client.Client{}
	uidOf := map[*client.Client]string{}
	var backend string
	for i := 0; backend == ""; i++ {
		if i == 20 {
			t.Fatal("no two users on one backend")
		}
		c := dial(t, fe[i%2])
		uid := fmt.Sprintf("lv-%d", i)
		call(t, c, "chat.h.login", map[string]any{"uid": uid})
		b := str(call(t, c, "chat.h.whoami", nil), "server")
		uidOf[c] = uid
		byBackend[b] = append(byBackend[b], c)
		if len(byBackend[b]) == 2 {
			backend = b
		}
	}
	stayer, leaver := byBackend[backend][0], byBackend[backend][1]
	pushes := &atomic.Int32{}
	stayer.OnPush("onSay", func([]byte) { pushes.Add(1) })
	call(t, stayer, "chat.h.joinLeaving", map[string]any{"channel": "lobby"})
	if n := call(t, leaver, "chat.h.joinLeaving", map[string]any{"channel": "lobby"}).Fields["members"].GetNumberValue(); n != 2 {
		t.Fatalf("lobby has %v members, want 2", n)
	}
	v, _ := cc.channels.Load(backend)
	lobby, _ := v.(*channel.Service).Get("lobby")

	leaver.Close()
	waitFor(t, func() bool { _, ok := lobby.Member(uidOf[leaver]); return !ok })
	if got := lobby.UIDs(); !slices.Equal(got, []string{uidOf[stayer]}) {
		t.Fatalf("lobby = %v, want only %s", got, uidOf[stayer])
	}
	// The push targets the stayer only: no delivery to the gone session fails.
	res := call(t, stayer, "chat.h.say", map[string]any{"channel": "lobby", "text": "still here?"})
	if f := res.Fields["failed"].GetNumberValue(); f != 0 {
		t.Fatalf("push failed for %v uids, want none", f)
	}
	waitFor(t, func() bool { return pushes.Load() == 1 })
}

func TestAddingBackendMovesFewUsers(t *testing.T) {
	const users = 3000
	for _, m := range []int{2, 4} {
		var servers []cluster.ServerInfo
		for i := 1; i <= m; i++ {
			servers = append(servers, cluster.ServerInfo{ID: fmt.Sprintf("chat-%d", i), Type: "chat"})
		}
		before := make([]string, users)
		for u := range users {
			before[u] = cluster.Rendezvous(fmt.Sprintf("user-%d", u), servers).ID
		}
		servers = append(servers, cluster.ServerInfo{ID: fmt.Sprintf("chat-%d", m+1), Type: "chat"})
		moved := 0
		for u := range users {
			after := cluster.Rendezvous(fmt.Sprintf("user-%d", u), servers).ID
			if after != before[u] {
				moved++
				if after != servers[m].ID {
					t.Fatalf("user-%d moved between old servers", u)
				}
			}
		}
		frac, ideal := float64(moved)/users, 1/float64(m+1)
		t.Logf("M=%d: adding a backend moved %.3f of %d users (ideal %.3f)", m, frac, users, ideal)
		if frac > ideal*1.25 {
			t.Errorf("moved %.3f of users, want about %.3f", frac, ideal)
		}
	}
}

func TestAddBackendLiveTakesItsShare(t *testing.T) {
	cc := startChat(t)
	c := dial(t, cc.Members("connector")[0])
	m, err := cc.Add("chat", false)
	if err != nil {
		t.Fatal(err)
	}
	// Unbound sessions route by frontend#sid: log in as users until one
	// lands on the new server.
	for i := 0; i < 200; i++ {
		uid := fmt.Sprintf("new-%d", i)
		want, _ := cc.Members("connector")[0].Node.Route("chat", uid)
		if want.ID == m.Info.ID {
			call(t, c, "chat.h.login", map[string]any{"uid": uid})
			if got := str(call(t, c, "chat.h.whoami", nil), "server"); got != m.Info.ID {
				t.Fatalf("user routed to %s, want the new %s", got, m.Info.ID)
			}
			return
		}
	}
	t.Fatal("no uid routed to the new backend")
}

func TestBackendKilledUnderLoad(t *testing.T) {
	cc := startChat(t)
	fe := cc.Members("connector")
	const n = 40
	clients := make([]*client.Client, n)
	for i := range clients {
		clients[i] = dial(t, fe[i%2])
		call(t, clients[i], "chat.h.login", map[string]any{"uid": fmt.Sprintf("load-%d", i)})
	}
	victim := cc.Members("chat")[0].Info.ID
	var wg sync.WaitGroup
	var ok, failed atomic.Int32
	stop := make(chan struct{})
	for i := range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-stop:
					return
				default:
				}
				_, err := tryCall(clients[i], "chat.h.slow", map[string]any{"ms": 20})
				if err != nil {
					var re *runtime.Error
					if !errors.As(err, &re) {
						t.Errorf("client %d: not a server error response: %v", i, err)
						return
					}
					failed.Add(1)
				} else {
					ok.Add(1)
				}
			}
		}()
	}
	time.Sleep(300 * time.Millisecond)
	cc.Kill(victim)
	time.Sleep(500 * time.Millisecond)
	close(stop)
	wg.Wait()
	t.Logf("requests: %d ok, %d failed (around the kill)", ok.Load(), failed.Load())
	// After the kill every user routes to the survivor; requests succeed.
	for i, c := range clients {
		got := call(t, c, "chat.h.whoami", nil)
		if str(got, "server") == victim {
			t.Fatalf("client %d still served by the killed %s", i, victim)
		}
	}
}

func TestDeadBackendFailsFast(t *testing.T) {
	cc := startChat(t)
	c := dial(t, cc.Members("connector")[0])
	for _, m := range cc.Members("chat") {
		m.Node.Kill() // crashed but still in the membership
	}
	start := time.Now()
	_, err := tryCall(c, "chat.h.whoami", nil)
	if !errors.Is(err, runtime.ErrUnavailable) {
		t.Fatalf("err = %v, want UNAVAILABLE", err)
	}
	if d := time.Since(start); d > 3*time.Second {
		t.Fatalf("dead backend took %v to fail", d)
	}
}

func TestHungBackendAnswersTimeout(t *testing.T) {
	release := make(chan struct{})
	defer close(release)
	cc := clustertest.Start(t, clustertest.Options{
		Servers:       []clustertest.Spec{{Type: "connector", Frontend: true}, {Type: "chat"}},
		ConfigureNode: func(cfg *node.Config) { cfg.ForwardTimeout = 200 * time.Millisecond },
		Setup: func(m *clustertest.Member) error {
			if m.Info.Type == "chat" {
				handle(t, m.Server, "chat.h.hang", func(ctx context.Context, s runtime.Session, in *structpb.Struct) (*structpb.Struct, error) {
					<-release // ignores its context on purpose
					return nil, nil
				})
			}
			return nil
		},
	})
	c := dial(t, cc.Members("connector")[0])
	_, err := tryCall(c, "chat.h.hang", nil)
	if !errors.Is(err, runtime.ErrTimeout) {
		t.Fatalf("err = %v, want TIMEOUT", err)
	}
}
