package node_test

// Regression tests for bugs found in code review: each failed before its
// fix. The comment on each test describes the bug it guards against.

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/protobuf/types/known/structpb"

	"github.com/pomelo-go/pomelo/internal/clustertest"
	"github.com/pomelo-go/pomelo/internal/node"
	"github.com/pomelo-go/pomelo/internal/server"
	"github.com/pomelo-go/pomelo/runtime"
	"github.com/pomelo-go/pomelo/runtime/cluster"
	"github.com/pomelo-go/pomelo/runtime/session"
)

// The design promises: "Messages of one session are handled in the order
// they arrived." The frontend does not wait for a forwarded NOTIFY, and the
// backend's Forward handler (sys.go:269-283) runs every request of a batch
// on its own pool goroutine: a notify and the message after it, from the
// same session, run concurrently on the backend, in any order.
func TestReviewForwardedNotifyAndNextMessageRunConcurrently(t *testing.T) {
	var mu sync.Mutex
	var order []string
	note := func(s string) { mu.Lock(); order = append(order, s); mu.Unlock() }
	cc := clustertest.Start(t, clustertest.Options{
		Servers: []clustertest.Spec{{Type: "connector", Frontend: true}, {Type: "chat"}},
		Setup: func(m *clustertest.Member) error {
			if m.Info.Type == "chat" {
				handle(t, m.Server, "chat.h.first", func(ctx context.Context, s runtime.Session, in *structpb.Struct) (*structpb.Struct, error) {
					time.Sleep(100 * time.Millisecond)
					note("first")
					return nil, nil
				})
				handle(t, m.Server, "chat.h.second", func(ctx context.Context, s runtime.Session, in *structpb.Struct) (*structpb.Struct, error) {
					note("second")
					return obj(map[string]any{"code": 200}), nil
				})
			}
			return nil
		},
	})
	c := dial(t, cc.Members("connector")[0])
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := c.Notify(ctx, "chat.h.first", obj(nil)); err != nil {
		t.Fatal(err)
	}
	call(t, c, "chat.h.second", nil)
	time.Sleep(300 * time.Millisecond)
	mu.Lock()
	defer mu.Unlock()
	if strings.Join(order, ",") != "first,second" {
		t.Fatalf("handled in the order %v; the client sent first, then second", order)
	}
}

// Node.RemoteConn caches one connection per server id and setMembers only
// drops the ids that left the view (node.go:298-303); the forwarder's
// unaryClients likewise. A server that comes back under the same id at
// another address (a restarted pod, an etcd key overwritten before the old
// lease expired, a static file reloaded) is never reached again.
func TestReviewServerBackUnderSameIDAtNewAddressUnreachable(t *testing.T) {
	var setup func(m *clustertest.Member) error
	setup = func(m *clustertest.Member) error {
		if m.Info.Type == "chat" {
			handle(t, m.Server, "chat.h.whoami", func(ctx context.Context, s runtime.Session, in *structpb.Struct) (*structpb.Struct, error) {
				return obj(map[string]any{"server": m.Info.ID, "port": float64(m.Info.RPCPort)}), nil
			})
		}
		return nil
	}
	cc := clustertest.Start(t, clustertest.Options{
		Servers: []clustertest.Spec{{Type: "connector", Frontend: true}, {Type: "chat"}},
		Setup:   setup,
	})
	c := dial(t, cc.Members("connector")[0])
	call(t, c, "chat.h.whoami", nil)

	// chat-1 crashes, and comes back at once under its id, on another port.
	old := cc.Members("chat")[0]
	old.Node.Kill()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	info := cluster.ServerInfo{ID: old.Info.ID, Type: "chat", Host: "127.0.0.1", RPCPort: ln.Addr().(*net.TCPAddr).Port}
	srv, err := server.New(server.Config{ID: info.ID, Type: "chat"})
	if err != nil {
		t.Fatal(err)
	}
	node, err := node.Join(srv, node.Config{Self: info, Membership: cc.Membership, Secret: "testkit-secret", Listener: ln})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { node.Close(context.Background()) })
	if err := setup(&clustertest.Member{Info: info, Server: srv, Node: node}); err != nil {
		t.Fatal(err)
	}
	if err := srv.Start(); err != nil {
		t.Fatal(err)
	}
	if err := node.Start(); err != nil {
		t.Fatal(err)
	}
	cc.Membership.Add(info) // replaces chat-1's entry: same id, new port

	var lastErr error
	for i := 0; i < 20; i++ {
		if _, lastErr = tryCall(c, "chat.h.whoami", nil); lastErr == nil {
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("the restarted chat-1 is in the membership at port %d but unreachable: %v", info.RPCPort, lastErr)
}

// A backend that watches a session never hears of its close when the
// WatchSessions stream to the frontend breaks (the frontend crashed or
// restarted, a connection reset): watchHub.receive just drops the client
// (sessions.go:384-395) and nothing remembers which sessions were watched,
// so OnSessionClosed never runs for them.
func TestReviewWatchedSessionsForgottenWhenWatchStreamBreaks(t *testing.T) {
	closed := make(chan cluster.SessionEvent, 4)
	cc := clustertest.Start(t, clustertest.Options{
		Servers: []clustertest.Spec{{Type: "connector", Frontend: true}, {Type: "chat"}},
		Setup: func(m *clustertest.Member) error {
			if m.Info.Type == "chat" {
				m.Node.OnSessionClosed(func(ev cluster.SessionEvent) { closed <- ev })
				handle(t, m.Server, "chat.h.watch", func(ctx context.Context, s runtime.Session, in *structpb.Struct) (*structpb.Struct, error) {
					return obj(map[string]any{"code": 200}), m.Node.WatchSession(ctx, s.FrontendID(), s.ID())
				})
			}
			return nil
		},
	})
	front := cc.Members("connector")[0]
	c := dial(t, front)
	call(t, c, "chat.h.watch", nil)
	cc.Kill(front.Info.ID) // the frontend crashes: its sessions are gone
	select {
	case <-closed:
	case <-time.After(3 * time.Second):
		t.Fatal("the watched session's frontend is gone, but the backend never got a close event")
	}
}

// reviewConn is a session.Conn that accepts everything.
type reviewConn struct{}

func (reviewConn) Send([]byte) error              { return nil }
func (reviewConn) Kick(string)                    {}
func (reviewConn) Close()                         {}
func (reviewConn) RemoteAddr() net.Addr           { return &net.TCPAddr{} }
func (reviewConn) Serializer() runtime.Serializer { return runtime.JSON }

// Node.onSessionClosed, an OnClosed hook of the frontend's session service,
// does a blocking WatchSessions stream Send (sessions.go:341-345) in the
// goroutine that closes the session (a connection's reader or writer, a
// bind under KickOld, Connector.Shutdown). When the watching backend does
// not keep up (its OnSessionClosed functions are slow, or it hangs), HTTP/2
// flow control blocks that Send, and with it CloseSession on the frontend.
func TestReviewSlowWatcherBlocksCloseSessionOnFrontend(t *testing.T) {
	release := make(chan struct{})
	var once sync.Once
	unblock := func() { once.Do(func() { close(release) }) }
	cc := clustertest.Start(t, clustertest.Options{
		Servers: []clustertest.Spec{{Type: "connector", Frontend: true}, {Type: "chat"}},
		Setup: func(m *clustertest.Member) error {
			if m.Info.Type == "chat" {
				m.Node.OnSessionClosed(func(cluster.SessionEvent) { <-release }) // a slow application callback
			}
			return nil
		},
	})
	defer unblock()
	front, back := cc.Members("connector")[0], cc.Members("chat")[0]
	svc := front.Server.Sessions()
	raw := make([]byte, 48<<10) // incompressible: cluster messages over 16 KiB are gzipped
	rand.Read(raw)
	big := hex.EncodeToString(raw)
	var sessions []*session.Session
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	for i := 0; i < 100; i++ { // ~10 MB of events, over the 4 MB HTTP/2 stream window
		s := svc.Create(reviewConn{})
		if err := s.SetSettings(map[string]string{"blob": big}, true); err != nil {
			t.Fatal(err)
		}
		if err := back.Node.WatchSession(ctx, front.Info.ID, s.ID()); err != nil {
			t.Fatal(err)
		}
		sessions = append(sessions, s)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		for _, s := range sessions {
			svc.CloseSession(s, "", false)
		}
	}()
	select {
	case <-done:
	case <-time.After(3 * time.Second):
		unblock()
		<-done
		t.Fatal("closing sessions on the frontend blocked on a slow watching backend")
	}
}
