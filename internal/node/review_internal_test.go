package node

// Regression tests for bugs found in code review: each failed before its
// fix. The comment on each test describes the bug it guards against.

import (
	"context"
	"net"
	"testing"
	"time"

	sysv1 "github.com/pomelo-go/pomelo/gen/pomelo/sys/v1"
	"github.com/pomelo-go/pomelo/internal/server"
	"github.com/pomelo-go/pomelo/runtime"
	"github.com/pomelo-go/pomelo/runtime/cluster"
)

func reviewNode(t *testing.T, st *cluster.Static, id, typ string, frontend bool) *Node {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv, err := server.New(server.Config{ID: id, Type: typ, Frontend: frontend})
	if err != nil {
		t.Fatal(err)
	}
	info := cluster.ServerInfo{ID: id, Type: typ, Host: "127.0.0.1", RPCPort: ln.Addr().(*net.TCPAddr).Port, Frontend: frontend}
	n, err := Join(srv, Config{Self: info, Membership: st, Secret: "s", Listener: ln})
	if err != nil {
		t.Fatal(err)
	}
	if err := srv.Start(); err != nil {
		t.Fatal(err)
	}
	if err := n.Start(); err != nil {
		t.Fatal(err)
	}
	st.Add(info)
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		n.Close(ctx)
	})
	return n
}

// Watching a session that is already gone (it closed while the backend was
// deciding to watch it) is answered at once on the backend, but the
// frontend's watchHub.serve has added the id to h.subs (sessions.go:307-316)
// and nothing ever removes it: session ids are never reused, so
// onSessionClosed never fires for it. h.subs grows for as long as the
// backend's WatchSessions stream lives.
func TestReviewWatchOfClosedSessionLeaksSubscription(t *testing.T) {
	st := cluster.NewStatic()
	front := reviewNode(t, st, "connector-1", "connector", true)
	back := reviewNode(t, st, "chat-1", "chat", false)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	const n = 100
	for sid := uint64(1000); sid < 1000+n; sid++ {
		if err := back.WatchSession(ctx, "connector-1", sid); err != nil {
			t.Fatal(err)
		}
	}
	time.Sleep(200 * time.Millisecond)
	front.watchers.mu.Lock()
	left := len(front.watchers.subs)
	front.watchers.mu.Unlock()
	if left != 0 {
		t.Fatalf("the frontend keeps %d subscriptions to sessions that do not exist", left)
	}
}

// Node.onSessionClosed sends on a WatchSessions handler stream from
// whatever goroutine closes the session, with no check that the handler
// (watchHub.serve) is still running. When the watcher goes away (or the
// node closes) while sessions close, the Send races with connect-go's Close
// of the handler stream (both write the http.ResponseWriter) and can land
// after the handler returned.
func TestReviewWatchSendRacesHandlerReturn(t *testing.T) {
	for iter := 0; iter < 20; iter++ {
		st := cluster.NewStatic()
		front := reviewNode(t, st, "connector-1", "connector", true)
		back := reviewNode(t, st, "chat-1", "chat", false)
		svc := front.srv.Sessions()
		ctx := context.Background()
		var sids []uint64
		for i := 0; i < 200; i++ {
			s := svc.Create(reviewConn{})
			sids = append(sids, s.ID())
			if err := back.WatchSession(ctx, "connector-1", s.ID()); err != nil {
				t.Fatal(err)
			}
		}
		time.Sleep(50 * time.Millisecond)
		done := make(chan struct{})
		for _, sid := range sids {
			go func() {
				if s, ok := svc.Get(sid); ok {
					svc.CloseSession(s, "", false)
				}
			}()
		}
		go func() {
			back.watchers.closeAll() // the watcher goes away
			close(done)
		}()
		<-done
		time.Sleep(50 * time.Millisecond)
	}
}

type reviewConn struct{}

func (reviewConn) Send([]byte) error              { return nil }
func (reviewConn) Kick(string)                    {}
func (reviewConn) Close()                         {}
func (reviewConn) RemoteAddr() net.Addr           { return &net.TCPAddr{} }
func (reviewConn) Serializer() runtime.Serializer { return runtime.JSON }

// slowConn is a client whose send queue is full.
type slowConn struct{ reviewConn }

func (slowConn) Send([]byte) error {
	return runtime.Errorf(runtime.ErrClosed, "client send queue is full")
}

// channel.Delivery's contract (delivery.go:17-26) is that an error means the
// frontend could not be reached and every uid is then failed. Over RPC
// (channelRemote.PushMessage) a client that cannot take the push (slow
// consumer, closing) is that client's problem and no error. But when the
// channel lives on the frontend itself, PushToFrontend (push.go:37-38)
// returns session.Service.PushToUIDs' first Send error as is: the push
// "fails" with CLOSED although every other member got it and no uid is
// listed as failed. A handler that returns ch.PushMessage's error answers
// its own client with an error caused by some other, slow, user.
func TestReviewLocalPushReportsOtherClientsSendErrors(t *testing.T) {
	st := cluster.NewStatic()
	front := reviewNode(t, st, "connector-1", "connector", true)
	back := reviewNode(t, st, "chat-1", "chat", false)
	svc := front.srv.Sessions()
	if err := svc.Bind(svc.Create(slowConn{}).ID(), "slow"); err != nil {
		t.Fatal(err)
	}
	if err := svc.Bind(svc.Create(reviewConn{}).ID(), "fine"); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	msg := &sysv1.Session{Uid: "x"} // any message
	_, remoteErr := back.PushToFrontend(ctx, "connector-1", "onX", msg, []string{"slow", "fine"})
	_, localErr := front.PushToFrontend(ctx, "connector-1", "onX", msg, []string{"slow", "fine"})
	if (remoteErr == nil) != (localErr == nil) {
		t.Fatalf("the same push: over RPC err = %v, locally err = %v", remoteErr, localErr)
	}
}
