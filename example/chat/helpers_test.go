package main

import (
	"context"
	"io"
	"log/slog"
	"net"
	"strconv"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/pomelo-go/pomelo/example/chat/app"
	chatv1 "github.com/pomelo-go/pomelo/example/chat/gen/chat/v1"
	"github.com/pomelo-go/pomelo/runtime/client"
	"github.com/pomelo-go/pomelo/runtime/cluster"
)

// testCluster is the example's cluster for tests run in this process: the
// ports are left to the system (Options.EphemeralPorts).
func testCluster() *cluster.File {
	s := func(id, typ string, frontend bool) cluster.ServerInfo {
		info := cluster.ServerInfo{ID: id, Type: typ, Host: "127.0.0.1", RPCPort: 1, Frontend: frontend}
		if frontend {
			info.WSPort = 1
		}
		return info
	}
	return &cluster.File{
		Secret: "test-secret",
		Servers: []cluster.ServerInfo{
			s("gate-1", app.TypeGate, true),
			s("connector-1", app.TypeConnector, true),
			s("connector-2", app.TypeConnector, true),
			s("chat-1", app.TypeChat, false),
			s("chat-2", app.TypeChat, false),
		},
	}
}

func testLogger(t *testing.T) *slog.Logger {
	if testing.Verbose() {
		return slog.New(slog.NewTextHandler(tlogWriter{t}, nil))
	}
	return slog.New(slog.NewTextHandler(io.Discard, nil))
}

type tlogWriter struct{ t *testing.T }

func (w tlogWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimSuffix(string(p), "\n"))
	return len(p), nil
}

// startApp starts the servers of opts (testCluster by default) in this
// process and stops them when the test ends.
func startApp(t *testing.T, opts app.Options) *app.App {
	t.Helper()
	if opts.Cluster == nil {
		opts.Cluster = testCluster()
		opts.EphemeralPorts = true
	}
	if opts.Logger == nil {
		opts.Logger = testLogger(t)
	}
	a, err := app.Start(opts)
	if err != nil {
		t.Fatalf("app.Start: %v", err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
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

// chatter is a Go client that went through the gate and entered a room.
type chatter struct {
	c     *client.Client
	users []string
	chats chan *chatv1.ChatMessage
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

// enterRoom asks the gate of a for a connector, connects to it and enters
// room rid as name.
func enterRoom(t *testing.T, a *app.App, name, rid string) *chatter {
	t.Helper()
	g := dial(t, wsURL(a.Server("gate-1").Info()))
	entry, err := chatv1.NewGateHandlerClient(g).QueryEntry(testCtx(t), &chatv1.QueryEntryRequest{Uid: name})
	g.Close()
	if err != nil {
		t.Fatalf("queryEntry %s: %v", name, err)
	}
	u := &chatter{
		c:     dial(t, "ws://"+net.JoinHostPort(entry.GetHost(), strconv.Itoa(int(entry.GetPort())))+"/"),
		chats: make(chan *chatv1.ChatMessage, 100),
	}
	client.Subscribe(u.c, chatv1.ChatPushOnChat, func(m *chatv1.ChatMessage) { u.chats <- m })
	res, err := chatv1.NewEntryHandlerClient(u.c).Enter(testCtx(t), &chatv1.EnterRequest{Username: name, Rid: rid})
	if err != nil {
		t.Fatalf("%s enters %s: %v", name, rid, err)
	}
	u.users = res.GetUsers()
	return u
}

// say sends content to the whole room and checks that every listener,
// the sender included, receives it.
func (u *chatter) say(t *testing.T, from, content string, listeners ...*chatter) {
	t.Helper()
	if _, err := chatv1.NewChatHandlerClient(u.c).Send(testCtx(t), &chatv1.SendRequest{Content: content, Target: "*"}); err != nil {
		t.Fatalf("%s says %q: %v", from, content, err)
	}
	want := &chatv1.ChatMessage{Msg: content, From: from, Target: "*"}
	for _, l := range append([]*chatter{u}, listeners...) {
		select {
		case got := <-l.chats:
			if !proto.Equal(got, want) {
				t.Fatalf("got onChat %v, want %v", got, want)
			}
		case <-time.After(15 * time.Second):
			t.Fatalf("no onChat %v", want)
		}
	}
}
