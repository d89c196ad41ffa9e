package connector

// Regression tests for bugs found in code review: each failed before its
// fix. The comment on each test describes the bug it guards against.

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net"
	"sync"
	"testing"
	"time"

	"google.golang.org/protobuf/types/known/structpb"

	"github.com/pomelo-go/pomelo/runtime/session"
	"github.com/pomelo-go/pomelo/runtime/wire"
)

// reviewHandler is a Handler whose ServeMessage can be made to block.
type reviewHandler struct {
	started chan *wire.Message // each ServeMessage call, when not nil
	release chan struct{}      // ServeMessage waits for it, when not nil
}

func (h *reviewHandler) Handshake(context.Context, *session.Session, *wire.HandshakeRequest) (json.RawMessage, error) {
	return nil, nil
}

func (h *reviewHandler) ServeMessage(_ context.Context, _ *session.Session, m *wire.Message) {
	if h.started != nil {
		h.started <- m
	}
	if h.release != nil {
		<-h.release
	}
}

func (h *reviewHandler) Reject(*session.Session, *wire.Message, error) {}

// nopTransport is a transport that never delivers anything.
type nopTransport struct{ done chan struct{} }

func (t nopTransport) readPackages(func(wire.PackageType, []byte) error) error {
	<-t.done
	return net.ErrClosed
}
func (t nopTransport) write([]byte, time.Duration) error { return nil }
func (t nopTransport) close()                            {}
func (t nopTransport) peerGone() bool                    { return false }
func (t nopTransport) closeNow()                         {}
func (t nopTransport) remoteAddr() net.Addr              { return stringAddr("test") }

// The inbox only resets its backing array when it drains completely; a
// client that always keeps one message queued behind the running one (any
// pipelining client whose round trip is shorter than the handler) makes
// cn.inbox grow by one slot per message, forever.
func TestReviewInboxGrowsWhileNeverEmpty(t *testing.T) {
	h := &reviewHandler{started: make(chan *wire.Message), release: make(chan struct{})}
	svc := session.NewService("f-1", session.AllowMany)
	c := New(Config{}, nil, svc, h)
	defer c.cancel()
	cn := newConn(c, nopTransport{done: make(chan struct{})})
	cn.start()
	defer cn.timer.Stop()

	const n = 10000
	cn.enqueue(&wire.Message{Type: wire.Notify, Route: "a.b.c"})
	<-h.started // message 0 runs
	for i := 1; i < n; i++ {
		cn.enqueue(&wire.Message{Type: wire.Notify, Route: "a.b.c"}) // queued behind the running one
		h.release <- struct{}{}                                      // the running one finishes
		<-h.started                                                  // the queued one runs
	}
	cn.inMu.Lock()
	size, waiting := len(cn.inbox), len(cn.inbox)-cn.inHead
	cn.inMu.Unlock()
	h.release <- struct{}{}
	if size > 2*c.cfg.MaxInFlight {
		t.Fatalf("inbox slice has %d slots for %d waiting messages (MaxInFlight %d): it grows with every message", size, waiting, c.cfg.MaxInFlight)
	}
}

// rawTCP is a minimal Pomelo client on raw TCP.
type rawTCP struct {
	nc net.Conn
	r  *wire.Reader
}

func dialRaw(t *testing.T, addr net.Addr) *rawTCP {
	t.Helper()
	nc, err := net.Dial("tcp", addr.String())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { nc.Close() })
	return &rawTCP{nc: nc, r: wire.NewReader(nc, 0)}
}

func (c *rawTCP) send(t *testing.T, typ wire.PackageType, body []byte) {
	t.Helper()
	pkg, err := wire.AppendPackage(nil, typ, body)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.nc.Write(pkg); err != nil {
		t.Fatal(err)
	}
}

func (c *rawTCP) next(t *testing.T) (wire.PackageType, []byte) {
	t.Helper()
	c.nc.SetReadDeadline(time.Now().Add(5 * time.Second))
	typ, body, err := c.r.Next()
	if err != nil {
		t.Fatal(err)
	}
	return typ, append([]byte(nil), body...)
}

const rawHandshake = `{"sys":{"type":"js-websocket","version":"0.0.1","rsa":{},"protoVersion":0},"user":{}}`

func startTCP(t *testing.T, cfg Config, h Handler) (*Connector, *session.Service, net.Addr) {
	t.Helper()
	svc := session.NewService("f-1", session.AllowMany)
	c := New(cfg, nil, svc, h)
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go c.ServeTCP(l)
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		c.Shutdown(ctx, "")
	})
	return c, svc, l.Addr()
}

func waitFor(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// A session exists from the moment the TCP connection is accepted, and
// conn.Send does not look at the state: a broadcast (boundOnly=false)
// reaches a connection that has not even sent its handshake. The client gets
// a DATA package before the handshake reply (Pomelo's hybridsocket drops
// sends unless WORKING), and Serializer() races with onHandshake writing
// cn.ser.
func TestReviewBroadcastReachesConnectionBeforeHandshake(t *testing.T) {
	_, svc, addr := startTCP(t, Config{}, &reviewHandler{})
	c := dialRaw(t, addr)
	waitFor(t, "the session", func() bool { return svc.Count() == 1 })
	news, _ := structpb.NewStruct(map[string]any{"text": "hello"})
	if err := svc.Broadcast("onNews", news, false, nil); err != nil {
		t.Fatal(err)
	}
	c.send(t, wire.TypeHandshake, []byte(rawHandshake))
	if typ, body := c.next(t); typ != wire.TypeHandshake {
		t.Fatalf("first package from the server is %s %q, want the HANDSHAKE reply", typ, body)
	}
}

// When the server kicks a session (relogin, shutdown, slow consumer) while
// earlier packages are still being flushed, any package the client sends in
// the meantime makes onPackage return net.ErrClosed (state CLOSED), and
// readLoop's deferred finish() closes the transport at once: the queued
// packages and the KICK are thrown away. (tcpTransport.close, CloseWrite then
// Close with unread input, has the same effect through a RST.)
func TestReviewKickLostWhenClientSendsDuringFlush(t *testing.T) {
	_, svc, addr := startTCP(t, Config{Heartbeat: time.Minute}, &reviewHandler{})
	c := dialRaw(t, addr)
	handshakeRaw(t, c)
	var sess *session.Session
	svc.Range(func(s *session.Session) bool { sess = s; return false })

	// 2 MiB of pushes the client does not read yet: the writer blocks.
	body := make([]byte, 60<<10)
	m := wire.Message{Type: wire.Push, Route: "onBig", Body: body}
	pkg, err := wire.AppendMessagePackage(nil, &m)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 34; i++ {
		if err := sess.Conn().Send(pkg); err != nil {
			t.Fatal(err)
		}
	}
	if err := svc.Kick(sess.ID(), "relogin"); err != nil {
		t.Fatal(err)
	}
	// The client, not knowing yet, sends a heartbeat.
	c.send(t, wire.TypeHeartbeat, nil)
	time.Sleep(200 * time.Millisecond)

	var kicked bool
	for {
		c.nc.SetReadDeadline(time.Now().Add(5 * time.Second))
		typ, _, err := c.r.Next()
		if err != nil {
			if !errors.Is(err, io.EOF) {
				t.Logf("read ended with %v", err)
			}
			break
		}
		if typ == wire.TypeKick {
			kicked = true
		}
	}
	if !kicked {
		t.Fatal("the client never received the KICK")
	}
}

// Shutdown takes a context, but kicks every session synchronously first:
// a close hook that blocks (cluster's watch hub does a blocking stream Send
// in one) makes Shutdown ignore its context.
func TestReviewShutdownIgnoresContextWhileCloseHooksBlock(t *testing.T) {
	c, svc, addr := startTCP(t, Config{}, &reviewHandler{})
	block := make(chan struct{})
	var once sync.Once
	defer once.Do(func() { close(block) })
	svc.OnClosed(func(*session.Session, string) { <-block })
	dialRaw(t, addr)
	waitFor(t, "the session", func() bool { return svc.Count() == 1 })

	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- c.Shutdown(ctx, "bye") }()
	select {
	case <-done:
	case <-time.After(2 * time.Second):
		once.Do(func() { close(block) })
		<-done
		t.Fatal("Shutdown did not return when its context expired")
	}
}
