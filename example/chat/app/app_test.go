package app_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/structpb"

	"github.com/pomelo-go/pomelo"
	"github.com/pomelo-go/pomelo/example/chat/app"
	chatv1 "github.com/pomelo-go/pomelo/example/chat/gen/chat/v1"
	"github.com/pomelo-go/pomelo/runtime/client"
	"github.com/pomelo-go/pomelo/runtime/cluster"
	"github.com/pomelo-go/pomelo/runtime/connector"
)

// testCluster is the example's cluster with every port left to the system
// (Options.EphemeralPorts), plus an optional chat-3.
func testCluster() *cluster.File {
	s := func(id, typ string, frontend bool) cluster.ServerInfo {
		info := cluster.ServerInfo{ID: id, Type: typ, Host: "127.0.0.1", RPCPort: 1, Frontend: frontend}
		if frontend {
			info.WSPort = 1
		}
		if typ == app.TypeConnector {
			info.TCPPort = 1
		}
		return info
	}
	chat3 := s("chat-3", app.TypeChat, false)
	chat3.Metadata = map[string]string{app.MetadataOptional: "true"}
	return &cluster.File{
		Secret: "test-secret",
		Servers: []cluster.ServerInfo{
			s("gate-1", app.TypeGate, true),
			s("connector-1", app.TypeConnector, true),
			s("connector-2", app.TypeConnector, true),
			s("chat-1", app.TypeChat, false),
			s("chat-2", app.TypeChat, false),
			chat3,
		},
	}
}

func quietLogger() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

func startApp(t *testing.T, opts app.Options) *app.App {
	t.Helper()
	if opts.Cluster == nil {
		opts.Cluster = testCluster()
	}
	opts.EphemeralPorts = true
	if opts.Logger == nil {
		opts.Logger = quietLogger()
	}
	a, err := app.Start(opts)
	if err != nil {
		t.Fatalf("app.Start: %v", err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := a.Close(ctx); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return a
}

func wsURL(s cluster.ServerInfo) string {
	return "ws://" + net.JoinHostPort(s.Host, strconv.Itoa(s.WSPort)) + "/"
}

func testCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func dial(t *testing.T, url string) *client.Client {
	t.Helper()
	c, err := client.Dial(testCtx(t), url)
	if err != nil {
		t.Fatalf("dial %s: %v", url, err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// queryEntry asks the gate for the connector of uid.
func queryEntry(t *testing.T, a *app.App, uid string) *chatv1.QueryEntryResponse {
	t.Helper()
	g := dial(t, wsURL(a.Server("gate-1").Info()))
	defer g.Close()
	res, err := chatv1.NewGateHandlerClient(g).QueryEntry(testCtx(t), &chatv1.QueryEntryRequest{Uid: uid})
	if err != nil {
		t.Fatalf("queryEntry %s: %v", uid, err)
	}
	return res
}

// user is a chat client that went through the gate and entered a room.
type user struct {
	t      *testing.T
	name   string
	c      *client.Client
	port   int32
	users  []string
	chats  chan *chatv1.ChatMessage
	adds   chan string
	leaves chan string
}

func connect(t *testing.T, a *app.App, name string) *user {
	t.Helper()
	entry := queryEntry(t, a, name)
	if entry.GetCode() != 200 || entry.GetHost() != "127.0.0.1" || entry.GetPort() == 0 {
		t.Fatalf("queryEntry(%s) = %v", name, entry)
	}
	return connectTo(t, name, entry.GetHost(), entry.GetPort())
}

// connectTo connects name to the connector at host:port, without the gate.
func connectTo(t *testing.T, name, host string, port int32) *user {
	t.Helper()
	u := connectURL(t, name, "ws://"+net.JoinHostPort(host, strconv.Itoa(int(port)))+"/")
	u.port = port
	return u
}

// connectURL connects name to the client URL of a connector (ws:// or
// tcp://), without the gate.
func connectURL(t *testing.T, name, url string) *user {
	t.Helper()
	u := &user{
		t: t, name: name,
		c:      dial(t, url),
		chats:  make(chan *chatv1.ChatMessage, 100),
		adds:   make(chan string, 100),
		leaves: make(chan string, 100),
	}
	client.Subscribe(u.c, chatv1.ChatPushOnChat, func(m *chatv1.ChatMessage) { u.chats <- m })
	client.Subscribe(u.c, chatv1.ChatPushOnAdd, func(m *chatv1.UserEvent) { u.adds <- m.GetUser() })
	client.Subscribe(u.c, chatv1.ChatPushOnLeave, func(m *chatv1.UserEvent) { u.leaves <- m.GetUser() })
	return u
}

func enter(t *testing.T, a *app.App, name, rid string) *user {
	t.Helper()
	u := connect(t, a, name)
	res, err := chatv1.NewEntryHandlerClient(u.c).Enter(testCtx(t), &chatv1.EnterRequest{Username: name, Rid: rid})
	if err != nil {
		t.Fatalf("%s enters %s: %v", name, rid, err)
	}
	if res.GetCode() != 200 {
		t.Fatalf("%s enters %s: code %d", name, rid, res.GetCode())
	}
	u.users = res.GetUsers()
	return u
}

func (u *user) send(content, target string) {
	u.t.Helper()
	res, err := chatv1.NewChatHandlerClient(u.c).Send(testCtx(u.t), &chatv1.SendRequest{Content: content, Target: target})
	if err != nil || res.GetCode() != 200 {
		u.t.Fatalf("%s sends %q to %s: %v, %v", u.name, content, target, res, err)
	}
}

// next returns the next value of ch, failing the test if none comes: the
// limit only keeps a broken test from hanging.
func next[T any](t *testing.T, what string, ch <-chan T) T {
	t.Helper()
	select {
	case v := <-ch:
		return v
	case <-time.After(15 * time.Second):
		t.Fatalf("no %s", what)
		panic("unreachable")
	}
}

func wantChat(t *testing.T, u *user, want *chatv1.ChatMessage) {
	t.Helper()
	if got := next(t, u.name+"'s onChat", u.chats); !proto.Equal(got, want) {
		t.Fatalf("%s got onChat %v, want %v", u.name, got, want)
	}
}

// nameOnOtherConnector returns a username that the gate sends to another
// connector than port.
func nameOnOtherConnector(t *testing.T, a *app.App, prefix string, port int32) string {
	t.Helper()
	for i := 0; i < 100; i++ {
		name := fmt.Sprintf("%s%d", prefix, i)
		if queryEntry(t, a, name).GetPort() != port {
			return name
		}
	}
	t.Fatal("every name lands on one connector")
	return ""
}

func TestChat(t *testing.T) {
	a := startApp(t, app.Options{})
	ctx := testCtx(t)

	ann := enter(t, a, "ann", "lobby")
	if !slices.Equal(ann.users, []string{"ann"}) {
		t.Fatalf("ann entered an empty room and sees users %q", ann.users)
	}
	if hb := ann.c.Handshake().Sys.Heartbeat; hb != 3 {
		t.Errorf("heartbeat = %ds, want the demo's 3s", hb)
	}
	// bob sits on the other connector: pushes cross frontends.
	bobName := nameOnOtherConnector(t, a, "bob", ann.port)
	bob := enter(t, a, bobName, "lobby")
	if !slices.Equal(bob.users, []string{"ann", bobName}) {
		t.Fatalf("%s sees users %q, want [ann %s]", bobName, bob.users, bobName)
	}
	if got := next(t, "onAdd", ann.adds); got != bobName {
		t.Fatalf("ann got onAdd %q, want %q", got, bobName)
	}

	// To everyone: both get it, the sender included.
	ann.send("hello", "*")
	want := &chatv1.ChatMessage{Msg: "hello", From: "ann", Target: "*"}
	wantChat(t, ann, want)
	wantChat(t, bob, want)

	// To one user, as a notify: that user and the sender.
	carl := enter(t, a, "carl", "lobby")
	next(t, "onAdd carl", ann.adds)
	next(t, "onAdd carl", bob.adds)
	if err := chatv1.NewChatHandlerClient(bob.c).SendNotify(ctx, &chatv1.SendRequest{Content: "psst", Target: "ann"}); err != nil {
		t.Fatal(err)
	}
	want = &chatv1.ChatMessage{Msg: "psst", From: bobName, Target: "ann"}
	wantChat(t, ann, want)
	wantChat(t, bob, want)
	// carl did not get it: the next message he gets is this one.
	carl.send("hi all", "*")
	want = &chatv1.ChatMessage{Msg: "hi all", From: "carl", Target: "*"}
	wantChat(t, carl, want)
	wantChat(t, ann, want)
	wantChat(t, bob, want)

	// Another room hears nothing of this one.
	dora := enter(t, a, "dora", "other")
	if !slices.Equal(dora.users, []string{"dora"}) {
		t.Fatalf("dora sees users %q in her own room", dora.users)
	}
	dora.send("anyone?", "*")
	wantChat(t, dora, &chatv1.ChatMessage{Msg: "anyone?", From: "dora", Target: "*"})

	// A closed connection leaves the room.
	bob.c.Close()
	if got := next(t, "onLeave", ann.leaves); got != bobName {
		t.Fatalf("ann got onLeave %q, want %q", got, bobName)
	}
	if got := next(t, "onLeave", carl.leaves); got != bobName {
		t.Fatalf("carl got onLeave %q, want %q", got, bobName)
	}
	if _, err := chatv1.NewChatHandlerClient(ann.c).Send(ctx, &chatv1.SendRequest{Content: "x", Target: bobName}); !errors.Is(err, pomelo.ErrNotFound) {
		t.Errorf("send to %s who left: %v, want NOT_FOUND", bobName, err)
	}
	// Nothing else reached dora.
	select {
	case m := <-dora.chats:
		t.Errorf("dora got %v from another room", m)
	case u := <-dora.adds:
		t.Errorf("dora got onAdd %q from another room", u)
	default:
	}
}

func TestEcho(t *testing.T) {
	a := startApp(t, app.Options{})
	u := connect(t, a, "echoer")
	body, err := structpb.NewStruct(map[string]any{"hello": "world", "n": 42, "list": []any{1, "two", true, nil}, "nested": map[string]any{"a": "b"}})
	if err != nil {
		t.Fatal(err)
	}
	// Before entering a room, and after.
	for range 2 {
		got, err := chatv1.NewChatHandlerClient(u.c).Echo(testCtx(t), body)
		if err != nil {
			t.Fatal(err)
		}
		if !proto.Equal(got, body) {
			t.Fatalf("echo = %v, want %v", got, body)
		}
		if _, err := chatv1.NewEntryHandlerClient(u.c).Enter(testCtx(t), &chatv1.EnterRequest{Username: "echoer", Rid: "r"}); err != nil {
			t.Fatal(err)
		}
	}
}

// TestRelogin enters a user again on the same connector and on the other
// one, with the membership in the cluster file or in etcd, and the single
// session kept by the connectors or in Redis (TestEtcdRedis has both).
func TestRelogin(t *testing.T) {
	t.Run("cluster file", func(t *testing.T) { testRelogin(t, app.Options{}) })
	t.Run("etcd", func(t *testing.T) {
		opts := startStores(t, true, false).opts
		opts.DrainDelay = 100 * time.Millisecond
		testRelogin(t, opts)
	})
	t.Run("redis", func(t *testing.T) { testRelogin(t, startStores(t, false, true).opts) })
}

func testRelogin(t *testing.T, opts app.Options) {
	a := startApp(t, opts)
	ann := enter(t, a, "ann", "lobby")
	watcher := enter(t, a, "watcher", "lobby")

	for _, where := range []string{"same connector", "other connector"} {
		// A second session of ann: through the gate (the same connector),
		// or straight to the other connector.
		var ann2 *user
		if where == "same connector" {
			ann2 = connect(t, a, "ann")
		} else {
			ann2 = &user{t: t, name: "ann", chats: make(chan *chatv1.ChatMessage, 100)}
			for _, s := range a.Servers() {
				if s.Info().Type == app.TypeConnector && int32(s.Info().WSPort) != ann.port {
					ann2.c = dial(t, wsURL(s.Info()))
					ann2.port = int32(s.Info().WSPort)
				}
			}
			client.Subscribe(ann2.c, chatv1.ChatPushOnChat, func(m *chatv1.ChatMessage) { ann2.chats <- m })
		}
		res, err := chatv1.NewEntryHandlerClient(ann2.c).Enter(testCtx(t), &chatv1.EnterRequest{Username: "ann", Rid: "lobby"})
		if err != nil {
			t.Fatalf("%s: relogin: %v", where, err)
		}
		if !slices.Equal(res.GetUsers(), []string{"ann", "watcher"}) {
			t.Errorf("%s: users after relogin = %q, want [ann watcher]", where, res.GetUsers())
		}
		<-ann.c.Done()
		if reason, ok := ann.c.KickReason(); !ok || reason != "relogin" {
			t.Errorf("%s: old session ended with %v, want a kick with reason relogin", where, ann.c.Err())
		}
		// The new session works, and the room did not see ann leave.
		ann2.send("back", "*")
		want := &chatv1.ChatMessage{Msg: "back", From: "ann", Target: "*"}
		wantChat(t, ann2, want)
		wantChat(t, watcher, want)
		select {
		case u := <-watcher.leaves:
			t.Errorf("%s: watcher got onLeave %q on a relogin", where, u)
		default:
		}
		ann = ann2
	}
	// The same name in another room is another user.
	other := enter(t, a, "ann", "elsewhere")
	other.send("hi", "*")
	wantChat(t, other, &chatv1.ChatMessage{Msg: "hi", From: "ann", Target: "*"})
	ann.send("still here", "*")
	wantChat(t, ann, &chatv1.ChatMessage{Msg: "still here", From: "ann", Target: "*"})
}

func TestBadRequests(t *testing.T) {
	a := startApp(t, app.Options{})
	u := connect(t, a, "x")
	ctx := testCtx(t)
	entry := chatv1.NewEntryHandlerClient(u.c)
	for _, req := range []*chatv1.EnterRequest{
		{Username: "", Rid: "r"},
		{Username: "a", Rid: ""},
		{Username: "a*b", Rid: "r"},
		{Username: string(make([]byte, 33)), Rid: "r"},
	} {
		if _, err := entry.Enter(ctx, req); !errors.Is(err, pomelo.ErrBadRequest) {
			t.Errorf("Enter(%q, %q) = %v, want BAD_REQUEST", req.GetUsername(), req.GetRid(), err)
		}
	}
	if _, err := chatv1.NewChatHandlerClient(u.c).Send(ctx, &chatv1.SendRequest{Content: "x", Target: "*"}); !errors.Is(err, pomelo.ErrNotBound) {
		t.Errorf("send before entering: %v, want NOT_BOUND", err)
	}
	if _, err := entry.Enter(ctx, &chatv1.EnterRequest{Username: "x", Rid: "r"}); err != nil {
		t.Fatal(err)
	}
	if _, err := entry.Enter(ctx, &chatv1.EnterRequest{Username: "y", Rid: "r"}); !errors.Is(err, pomelo.ErrBadRequest) {
		t.Errorf("entering as another user on one connection: %v, want BAD_REQUEST", err)
	}
	g := dial(t, wsURL(a.Server("gate-1").Info()))
	if _, err := chatv1.NewGateHandlerClient(g).QueryEntry(ctx, &chatv1.QueryEntryRequest{}); !errors.Is(err, pomelo.ErrBadRequest) {
		t.Errorf("queryEntry without a uid: %v, want BAD_REQUEST", err)
	}
}

func TestMinClientVersion(t *testing.T) {
	a := startApp(t, app.Options{MinClientVersion: "0.2.0"})
	for _, tc := range []struct {
		version string
		ok      bool
	}{
		{"0.1.9", false},
		{"", false},
		{"0.2.0", true},
		{"1.0", true},
	} {
		for _, id := range []string{"gate-1", "connector-1"} {
			c, err := client.Config{ClientType: "js-websocket", ClientVersion: tc.version}.Dial(testCtx(t), wsURL(a.Server(id).Info()))
			var he *client.HandshakeError
			switch {
			case tc.ok && err != nil:
				t.Errorf("%s, version %q: %v", id, tc.version, err)
			case !tc.ok && (!errors.As(err, &he) || he.Code != 501):
				t.Errorf("%s, version %q: %v, want a handshake refused with 501", id, tc.version, err)
			}
			if c != nil {
				c.Close()
			}
		}
	}
}

func TestConnectionLimitsReachEveryFrontend(t *testing.T) {
	a := startApp(t, app.Options{MaxConnections: 1, HandshakeTimeout: 7 * time.Second, HeartbeatTimeout: 9 * time.Second})
	for _, id := range []string{"gate-1", "connector-1"} {
		cfg := a.Config(id).Connector
		if cfg.MaxConnections != 1 || cfg.HandshakeTimeout != 7*time.Second || cfg.HeartbeatTimeout != 9*time.Second {
			t.Errorf("%s: MaxConnections %d, HandshakeTimeout %v, HeartbeatTimeout %v; want 1, 7s, 9s",
				id, cfg.MaxConnections, cfg.HandshakeTimeout, cfg.HeartbeatTimeout)
		}
	}
	first, err := client.Dial(testCtx(t), wsURL(a.Server("connector-1").Info()))
	if err != nil {
		t.Fatal(err)
	}
	defer first.Close()
	if c, err := client.Dial(testCtx(t), wsURL(a.Server("connector-1").Info())); err == nil {
		c.Close()
		t.Fatal("a second connection accepted with MaxConnections 1")
	}
}

func TestDefaultConnectionCapApplies(t *testing.T) {
	a := startApp(t, app.Options{})
	if got := a.Config("connector-1").Connector.MaxConnections; got != connector.DefaultMaxConnections {
		t.Fatalf("MaxConnections %d, want the default %d", got, connector.DefaultMaxConnections)
	}
}

// Each connector also serves raw TCP, for native Pomelo clients: a user on
// TCP and one on WebSocket share a room, and the addresses printed at start
// list both ports of every connector.
func TestConnectorsServeRawTCP(t *testing.T) {
	a := startApp(t, app.Options{})
	var out bytes.Buffer
	a.PrintAddresses(&out)
	for _, id := range []string{"connector-1", "connector-2"} {
		info := a.Server(id).Info()
		if info.TCPPort == 0 {
			t.Fatalf("%s has no TCP port", id)
		}
		tcp := "tcp://" + net.JoinHostPort(info.Host, strconv.Itoa(info.TCPPort))
		if !strings.Contains(out.String(), wsURL(info)[:len(wsURL(info))-1]+"  "+tcp) {
			t.Errorf("the addresses printed lack %s's WebSocket and TCP ports %s:\n%s", id, tcp, out.String())
		}
	}
	native := connectURL(t, "nat", "tcp://"+a.Server("connector-2").TCPAddr().String())
	res, err := chatv1.NewEntryHandlerClient(native.c).Enter(testCtx(t), &chatv1.EnterRequest{Username: "nat", Rid: "mixed"})
	if err != nil || !slices.Equal(res.GetUsers(), []string{"nat"}) {
		t.Fatalf("enter over TCP: %v, %v", res, err)
	}
	web := enter(t, a, "web", "mixed")
	if got := next(t, "onAdd web", native.adds); got != "web" {
		t.Fatalf("the TCP user got onAdd %q, want web", got)
	}
	native.send("over tcp", "*")
	want := &chatv1.ChatMessage{Msg: "over tcp", From: "nat", Target: "*"}
	wantChat(t, native, want)
	wantChat(t, web, want)
}

// Every server of the process serves its admin listener, ready, and the
// addresses printed at start list it.
func TestEveryServerServesItsAdminListener(t *testing.T) {
	a := startApp(t, app.Options{AdminAddr: "127.0.0.1:0"})
	var out bytes.Buffer
	a.PrintAddresses(&out)
	for _, s := range a.Servers() {
		ad := s.AdminAddr()
		if ad == nil {
			t.Fatalf("%s has no admin listener", s.ID())
		}
		u := "http://" + ad.String()
		if !strings.Contains(out.String(), "admin "+u+"/metrics") {
			t.Errorf("the addresses printed lack %s's admin listener:\n%s", s.ID(), out.String())
		}
		res, err := http.Get(u + "/readyz")
		if err != nil {
			t.Fatal(err)
		}
		res.Body.Close()
		if res.StatusCode != http.StatusOK {
			t.Errorf("%s /readyz: %d", s.ID(), res.StatusCode)
		}
	}
}
