package connector

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pomelo-go/pomelo/runtime"
	"github.com/pomelo-go/pomelo/runtime/session"
	"github.com/pomelo-go/pomelo/runtime/wire"
)

// answeringHandler answers every request over the session's connection:
// "ok" when served, the error's name when rejected. Route "t.h.block" waits
// for release.
type answeringHandler struct {
	release chan struct{}
	mu      sync.Mutex
	served  []uint64
}

func (h *answeringHandler) Handshake(context.Context, *session.Session, *wire.HandshakeRequest) (json.RawMessage, error) {
	return nil, nil
}

func (h *answeringHandler) ServeMessage(_ context.Context, s *session.Session, m *wire.Message) {
	h.mu.Lock()
	h.served = append(h.served, m.ID)
	h.mu.Unlock()
	if m.Route == "t.h.block" {
		<-h.release
	}
	h.answer(s, m.ID, "ok")
}

func (h *answeringHandler) Reject(s *session.Session, m *wire.Message, err error) {
	h.answer(s, m.ID, runtime.AsError(err).Name)
}

func (h *answeringHandler) answer(s *session.Session, id uint64, text string) {
	pkg, _ := wire.AppendMessagePackage(nil, &wire.Message{Type: wire.Response, ID: id, Body: []byte(text)})
	s.Conn().Send(pkg)
}

// handshakeRaw completes the handshake and ack of c.
func handshakeRaw(t *testing.T, c *rawTCP) {
	t.Helper()
	c.send(t, wire.TypeHandshake, []byte(rawHandshake))
	if typ, _ := c.next(t); typ != wire.TypeHandshake {
		t.Fatal("no handshake reply")
	}
	c.send(t, wire.TypeHandshakeAck, nil)
	if typ, _ := c.next(t); typ != wire.TypeHeartbeat {
		t.Fatal("no heartbeat after ack")
	}
}

// onlyConn returns the connector's one connection.
func onlyConn(t *testing.T, c *Connector) *conn {
	t.Helper()
	var cn *conn
	waitFor(t, "the connection", func() bool {
		c.mu.Lock()
		defer c.mu.Unlock()
		for x := range c.conns {
			cn = x
		}
		return cn != nil
	})
	return cn
}

// With MaxInFlight 3 and a blocked request, the reader takes three more
// requests and stops reading. A kick (or a shutdown) then answers the
// running request with its result and the three waiting ones CLOSED, in
// order, then sends the KICK; the requests still unread in the socket are
// neither run nor answered.
func TestKickAnswersRunningAndWaitingRequestsBeforeTheKick(t *testing.T) {
	for _, how := range []string{"kick", "shutdown"} {
		t.Run(how, func(t *testing.T) { answersBeforeTheKick(t, how == "shutdown") })
	}
}

func answersBeforeTheKick(t *testing.T, shutdown bool) {
	h := &answeringHandler{release: make(chan struct{})}
	c, svc, addr := startTCP(t, Config{MaxInFlight: 3, Heartbeat: time.Minute}, h)
	rc := dialRaw(t, addr)
	handshakeRaw(t, rc)
	var pkgs []byte
	for id := uint64(1); id <= 6; id++ {
		route := "t.h.echo"
		if id == 1 {
			route = "t.h.block"
		}
		pkgs, _ = wire.AppendMessagePackage(pkgs, &wire.Message{Type: wire.Request, ID: id, Route: route, Body: []byte("{}")})
	}
	if _, err := rc.nc.Write(pkgs); err != nil {
		t.Fatal(err)
	}
	cn := onlyConn(t, c)
	waitFor(t, "the reader to pause", func() bool {
		cn.inMu.Lock()
		defer cn.inMu.Unlock()
		return cn.paused && len(cn.inbox)-cn.inHead == 3
	})
	stopped := make(chan error, 1)
	if shutdown {
		go func() {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			stopped <- c.Shutdown(ctx, "bye")
		}()
	} else {
		var sess *session.Session
		svc.Range(func(s *session.Session) bool { sess = s; return false })
		stopped <- svc.Kick(sess.ID(), "bye")
	}
	waitFor(t, "the connection to stop accepting", func() bool {
		cn.inMu.Lock()
		defer cn.inMu.Unlock()
		return cn.stopping
	})
	close(h.release)

	var got []string
	kicked := false
	for !kicked {
		rc.nc.SetReadDeadline(time.Now().Add(5 * time.Second))
		typ, body, err := rc.r.Next()
		if err != nil {
			t.Fatalf("connection ended before the KICK (after %v): %v", got, err)
		}
		switch typ {
		case wire.TypeKick:
			kicked = true
		case wire.TypeData:
			m, err := wire.DecodeMessage(body)
			if err != nil {
				t.Fatal(err)
			}
			got = append(got, string(rune('0'+m.ID))+":"+string(m.Body))
		}
	}
	want := []string{"1:ok", "2:CLOSED", "3:CLOSED", "4:CLOSED"}
	if len(got) != len(want) {
		t.Fatalf("responses before the KICK %v, want %v", got, want)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("responses before the KICK %v, want %v", got, want)
		}
	}
	rc.nc.SetReadDeadline(time.Now().Add(5 * time.Second))
	if typ, body, err := rc.r.Next(); !errors.Is(err, io.EOF) {
		t.Fatalf("after the KICK: %v %q %v, want the end of the connection", typ, body, err)
	}
	rc.nc.Close()
	if err := <-stopped; err != nil {
		t.Fatal(err)
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	if len(h.served) != 1 || h.served[0] != 1 {
		t.Fatalf("served %v, want only the request running at the kick", h.served)
	}
}

// A kick waits for the running request a grace, then cancels its context:
// a handler that honours it is answered (CLOSED, by the chain) before the
// KICK; one that ignores it does not hold the connection open: after a
// second grace the connection closes without its answer.
func TestKickBoundsTheRunningRequest(t *testing.T) {
	for _, honours := range []bool{true, false} {
		t.Run(map[bool]string{true: "handler honours cancel", false: "handler ignores cancel"}[honours], func(t *testing.T) {
			h := &stuckHandler{honours: honours, release: make(chan struct{})}
			defer close(h.release)
			c, svc, addr := startTCP(t, Config{Heartbeat: time.Minute, closeGrace: 100 * time.Millisecond}, h)
			_ = c
			rc := dialRaw(t, addr)
			handshakeRaw(t, rc)
			pkg, _ := wire.AppendMessagePackage(nil, &wire.Message{Type: wire.Request, ID: 1, Route: "t.h.stuck", Body: []byte("{}")})
			if _, err := rc.nc.Write(pkg); err != nil {
				t.Fatal(err)
			}
			waitFor(t, "the request to run", func() bool { return h.running.Load() })
			var sess *session.Session
			svc.Range(func(s *session.Session) bool { sess = s; return false })
			if err := svc.Kick(sess.ID(), "bye"); err != nil {
				t.Fatal(err)
			}
			var got []string
			for {
				// A safety bound, far above the two 100 ms graces.
				rc.nc.SetReadDeadline(time.Now().Add(5 * time.Second))
				typ, body, err := rc.r.Next()
				if err != nil {
					if !errors.Is(err, io.EOF) {
						t.Fatalf("after %v: %v, want the connection closed", got, err)
					}
					break
				}
				got = append(got, fmt.Sprintf("%d:%s", typ, body))
			}
			want := []string{"4:\x04\x01CLOSED", "5:{\"reason\":\"bye\"}"}
			if !honours {
				want = nil // closed without an answer or a KICK
			}
			if fmt.Sprintf("%q", got) != fmt.Sprintf("%q", want) {
				t.Fatalf("packages %q, want %q", got, want)
			}
		})
	}
}

// stuckHandler runs route t.h.stuck until its context ends (honours) or
// until release (ignores the context), then answers the context's fate.
type stuckHandler struct {
	answeringHandler
	honours bool
	release chan struct{}
	running atomic.Bool
}

func (h *stuckHandler) ServeMessage(ctx context.Context, s *session.Session, m *wire.Message) {
	h.running.Store(true)
	if h.honours {
		<-ctx.Done()
		h.answer(s, m.ID, runtime.ErrClosed.Name)
		return
	}
	<-h.release
}

// Shutdown, unlike a kick, lets the running request run past the close
// grace: its own ctx bounds it. With a 20 ms grace, a request released
// 300 ms into a Shutdown with a 10 s ctx is answered with its result.
func TestShutdownLetsTheRunningRequestOutlastTheKickGrace(t *testing.T) {
	h := &answeringHandler{release: make(chan struct{})}
	c, _, addr := startTCP(t, Config{Heartbeat: time.Minute, closeGrace: 20 * time.Millisecond}, h)
	rc := dialRaw(t, addr)
	handshakeRaw(t, rc)
	pkg, _ := wire.AppendMessagePackage(nil, &wire.Message{Type: wire.Request, ID: 1, Route: "t.h.block", Body: []byte("{}")})
	if _, err := rc.nc.Write(pkg); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the request to run", func() bool {
		h.mu.Lock()
		defer h.mu.Unlock()
		return len(h.served) == 1
	})
	stopped := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		stopped <- c.Shutdown(ctx, "bye")
	}()
	time.Sleep(300 * time.Millisecond) // many graces
	close(h.release)
	rc.nc.SetReadDeadline(time.Now().Add(5 * time.Second))
	typ, body, err := rc.r.Next()
	if err != nil || typ != wire.TypeData {
		t.Fatalf("first package after the shutdown: %v %q %v, want the answer", typ, body, err)
	}
	if m, _ := wire.DecodeMessage(body); string(m.Body) != "ok" {
		t.Fatalf("answer %q, want the request's result", m.Body)
	}
	if err := <-stopped; err != nil {
		t.Fatal(err)
	}
}

// A client that fills its inbox behind a request that waits for its
// context, then hangs up, is noticed although the reader is paused (it
// reads nothing): its session ends and the waiting request's context is
// cancelled, instead of both staying for as long as the request waits.
func TestPausedReaderNoticesTheClientLeaving(t *testing.T) {
	h := &stuckHandler{honours: true, release: make(chan struct{})}
	defer close(h.release)
	c, _, addr := startTCP(t, Config{MaxInFlight: 3, Heartbeat: time.Minute, HeartbeatTimeout: 100 * time.Millisecond, closeGrace: 50 * time.Millisecond}, h)
	rc := dialRaw(t, addr)
	handshakeRaw(t, rc)
	var pkgs []byte
	for id := uint64(1); id <= 6; id++ {
		pkgs, _ = wire.AppendMessagePackage(pkgs, &wire.Message{Type: wire.Request, ID: id, Route: "t.h.stuck", Body: []byte("{}")})
	}
	if _, err := rc.nc.Write(pkgs); err != nil {
		t.Fatal(err)
	}
	cn := onlyConn(t, c)
	waitFor(t, "the reader to pause", func() bool {
		cn.inMu.Lock()
		defer cn.inMu.Unlock()
		return cn.paused
	})
	rc.nc.Close()
	waitFor(t, "the connection to end", func() bool { return c.Count() == 0 })
	select {
	case <-cn.inCtx.Done():
	default:
		t.Fatal("the running request's context is still live")
	}
}
