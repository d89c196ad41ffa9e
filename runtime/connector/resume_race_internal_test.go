package connector

// Session resume under races and hostile input (docs/PROTOCOL.md section
// 10): requests sent again run once, a closing session is never resumed,
// shutdown closes every suspended session, the messages of a session run
// in order across its connections, and racing or hostile handshakes.

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pomelo-go/pomelo/runtime"
	"github.com/pomelo-go/pomelo/runtime/session"
	"github.com/pomelo-go/pomelo/runtime/wire"
)

// nextResponse reads a DATA package that is a RESPONSE and returns its id
// and body.
func (c *rawTCP) nextResponse(t *testing.T) (uint64, string) {
	t.Helper()
	for {
		typ, body := c.next(t)
		if typ != wire.TypeData {
			continue // a heartbeat
		}
		m, err := wire.DecodeMessage(body)
		if err != nil {
			t.Fatal(err)
		}
		if m.Type == wire.Response {
			return m.ID, string(m.Body)
		}
	}
}

func (h *answeringHandler) servedIDs() []uint64 {
	h.mu.Lock()
	defer h.mu.Unlock()
	return slices.Clone(h.served)
}

// The replay carries the answer of request 1; pushes sent after the resume
// evict it from the buffer before the client's copy of request 1 arrives.
// The server must still not run request 1 a second time.
func TestRequestSentAgainRunsOnceAfterItsAnswerLeftTheBuffer(t *testing.T) {
	h := &answeringHandler{release: make(chan struct{})}
	_, svc, addr := startTCP(t, Config{ResumeBufferPackages: 4, ResumeWindow: time.Hour}, h)
	suspended, _ := suspendEvents(svc)
	a := dialRaw(t, addr)
	r1, _ := a.resumeHandshake(t, `{}`)
	a.ack(t)
	a.sendMessage(t, &wire.Message{Type: wire.Request, ID: 1, Route: "t.h.a"}, 0)
	if id, _ := a.nextResponse(t); id != 1 {
		t.Fatalf("response %d, want 1", id)
	}
	a.nc.Close() // the answer was written, but say it was lost
	sid := recv(t, "suspended", suspended)

	b := dialRaw(t, addr)
	r2 := b.resumeWith(t, r1.Sys.Resume.Token, 0)
	if r2.Sys.Resume == nil || !r2.Sys.Resume.Resumed {
		t.Fatalf("resume: %+v", r2.Sys.Resume)
	}
	b.ack(t)
	if id, _ := b.nextResponse(t); id != 1 {
		t.Fatalf("replayed response %d, want 1", id)
	}
	for i := range 8 { // more than the buffer keeps
		push(t, svc, sid, fmt.Sprint(i))
	}
	// The client sends again the request it had no answer for, then a new one.
	b.sendMessage(t, &wire.Message{Type: wire.Request, ID: 1, Route: "t.h.a"}, 0)
	b.sendMessage(t, &wire.Message{Type: wire.Request, ID: 2, Route: "t.h.a"}, 0)
	if id, _ := b.nextResponse(t); id != 2 {
		t.Fatalf("response %d after the resent request, want 2 (request 1 answered twice)", id)
	}
	if got := h.servedIDs(); !slices.Equal(got, []uint64{1, 2}) {
		t.Fatalf("requests run %v, want [1 2]: request 1 ran twice", got)
	}
}

// closingHook makes the closed hooks of svc block until release is closed,
// and reports each session whose close has begun.
func closingHook(svc *session.Service) (closing chan uint64, release chan struct{}) {
	closing, release = make(chan uint64, 4), make(chan struct{})
	svc.OnClosed(func(s *session.Session, _ string) {
		closing <- s.ID()
		<-release
	})
	return closing, release
}

// A session whose close has begun (its window ended, or it was kicked, and
// the closed hooks are still running: they may call backends) cannot be
// resumed: the client is answered resumed:false at once rather than
// resumed:true followed by the end of its connection.
func TestClosingSessionIsNotResumed(t *testing.T) {
	for _, how := range []string{"kick", "window"} {
		t.Run(how, func(t *testing.T) {
			window := time.Hour
			if how == "window" {
				window = 50 * time.Millisecond
			}
			_, svc, addr := startTCP(t, Config{ResumeWindow: window}, newRecordHandler())
			suspended, _ := suspendEvents(svc)
			closing, release := closingHook(svc)
			defer close(release)
			a := dialRaw(t, addr)
			r1, _ := a.resumeHandshake(t, `{}`)
			a.ack(t)
			a.nc.Close()
			sid := recv(t, "suspended", suspended)
			if how == "kick" {
				go svc.Kick(sid, "relogin")
			}
			if got := recv(t, "the close to begin", closing); got != sid {
				t.Fatalf("closing %d, want %d", got, sid)
			}
			b := dialRaw(t, addr)
			r2 := b.resumeWith(t, r1.Sys.Resume.Token, 0)
			if r2.Sys.Resume == nil || r2.Sys.Resume.Resumed {
				t.Fatalf("resume of a closing session: %+v", r2.Sys.Resume)
			}
		})
	}
}

// A resume whose handshake is read while the connector shuts down takes
// the session's token out of the connector's map; Shutdown, which closes
// the suspended sessions it finds there, may then miss it. The refused
// resume closes that session itself, so that backends hear closed now
// rather than when a window that outlives the server ends.
func TestResumeRefusedByShutdownClosesTheSession(t *testing.T) {
	c, svc, addr := startTCP(t, Config{ResumeWindow: time.Hour}, newRecordHandler())
	suspended, _ := suspendEvents(svc)
	closed := make(chan uint64, 4)
	svc.OnClosed(func(s *session.Session, _ string) { closed <- s.ID() })
	r1, sid := suspendedSession(t, addr, suspended)
	c.mu.Lock()
	c.closed = true // Shutdown has begun, and looked at the tokens already
	c.mu.Unlock()
	if l, _ := c.grantResume(nil, r1.Sys.Resume.Token, 0, runtime.JSON); l != nil {
		t.Fatal("resume granted during shutdown")
	}
	if got := recv(t, "the session closed", closed); got != sid {
		t.Fatalf("closed %d, want %d", got, sid)
	}
}

// The messages of a session run one at a time, in arrival order, across
// its connections: a request read on a connection whose predecessor's
// request is still running waits for it, also when a connection in
// between (resumed, then dropped again) ran nothing.
func TestResumedSessionRunsRequestsAfterThoseOfEveryEarlierConnection(t *testing.T) {
	h := &answeringHandler{release: make(chan struct{})}
	c, svc, addr := startTCP(t, Config{ResumeWindow: time.Hour}, h)
	suspended, resumed := suspendEvents(svc)
	resume := func(tok string) (*rawTCP, string) {
		t.Helper()
		b := dialRaw(t, addr)
		r := b.resumeWith(t, tok, 0)
		if !r.Sys.Resume.Resumed {
			t.Fatalf("resume: %+v", r.Sys.Resume)
		}
		b.ack(t)
		recv(t, "resumed", resumed)
		return b, r.Sys.Resume.Token
	}
	a := dialRaw(t, addr)
	r, _ := a.resumeHandshake(t, `{}`)
	a.ack(t)
	first := onlyConn(t, c)
	a.sendMessage(t, &wire.Message{Type: wire.Request, ID: 1, Route: "t.h.block"}, 0)
	waitFor(t, "request 1 to run", func() bool { return len(h.servedIDs()) == 1 })
	a.nc.Close()
	recv(t, "suspended", suspended)
	b, tok := resume(r.Sys.Resume.Token) // runs nothing, and drops again
	b.nc.Close()
	recv(t, "suspended", suspended)
	d, _ := resume(tok)
	var last *conn
	waitFor(t, "the resumed connection", func() bool {
		c.mu.Lock()
		defer c.mu.Unlock()
		for x := range c.conns {
			if !x.detached.Load() && x != first {
				last = x
			}
		}
		return last != nil
	})
	if got := last.after.Load(); got != first {
		t.Fatalf("the resumed connection's inbox waits for %p, want %p (the one still running request 1)", got, first)
	}
	d.sendMessage(t, &wire.Message{Type: wire.Request, ID: 2, Route: "t.h.a"}, 0)
	close(h.release)
	for _, want := range []uint64{1, 2} {
		if id, _ := d.nextResponse(t); id != want {
			t.Fatalf("response %d, want %d", id, want)
		}
	}
	if got := h.servedIDs(); !slices.Equal(got, []uint64{1, 2}) {
		t.Fatalf("requests run %v, want [1 2]", got)
	}
}

// Shutdown returns once the suspended sessions are closed too (their closed
// hooks have run), not only the connected ones: what runs after it (online
// status, the node) must see every session gone.
func TestShutdownReturnsAfterClosingTheSuspendedSessions(t *testing.T) {
	c, svc, addr := startTCP(t, Config{ResumeWindow: time.Hour}, newRecordHandler())
	suspended, _ := suspendEvents(svc)
	closed := make(chan uint64, 4)
	svc.OnClosed(func(s *session.Session, _ string) { closed <- s.ID() })
	a := dialRaw(t, addr)
	a.resumeHandshake(t, `{}`)
	a.ack(t)
	a.nc.Close()
	sid := recv(t, "suspended", suspended)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := c.Shutdown(ctx, "bye"); err != nil {
		t.Fatal(err)
	}
	select {
	case got := <-closed:
		if got != sid {
			t.Fatalf("closed %d, want %d", got, sid)
		}
	default:
		t.Fatal("Shutdown returned before the suspended session was closed")
	}
	if n := svc.Count(); n != 0 {
		t.Fatalf("%d sessions after Shutdown", n)
	}
}

// Hostile resume handshakes: a huge or bogus token is a new session
// (resumed:false) and touches no other session; a count that is negative,
// not an integer or beyond 64 bits is a malformed handshake (500, close).
func TestHostileResumeHandshakes(t *testing.T) {
	_, svc, addr := startTCP(t, Config{ResumeWindow: time.Hour}, newRecordHandler())
	victim := dialRaw(t, addr)
	victim.resumeHandshake(t, `{}`)
	victim.ack(t)
	var sid uint64
	svc.Range(func(s *session.Session) bool { sid = s.ID(); return false })
	for _, tok := range []string{strings.Repeat("A", 200<<10), "", "AAAAAAAAAAAAAAAAAAAAAA", `\u0000`} {
		c := dialRaw(t, addr)
		r, _ := c.resumeHandshake(t, fmt.Sprintf(`{"token":"%s","received":18446744073709551615}`, tok))
		if r.Code != 200 || r.Sys.Resume == nil || r.Sys.Resume.Resumed {
			t.Fatalf("token of %d bytes: %+v", len(tok), r)
		}
	}
	for _, n := range []string{"-1", "1.5", "1e3", "18446744073709551616", `"3"`, "{}"} {
		c := dialRaw(t, addr)
		r, _ := c.resumeHandshake(t, fmt.Sprintf(`{"token":"x","received":%s}`, n))
		if r.Code != 500 {
			t.Fatalf("received %s: code %d, want 500", n, r.Code)
		}
	}
	if svc.SuspendedCount() != 0 {
		t.Fatal("a hostile handshake suspended a session")
	}
	if s, ok := svc.Get(sid); !ok || s.Closed() || s.Suspended() {
		t.Fatal("a hostile handshake closed or suspended another session")
	}
}

// returnsHandler runs "t.h.wait" until its context ends, then reports it.
type returnsHandler struct {
	answeringHandler
	started, returned chan uint64
}

func (h *returnsHandler) ServeMessage(ctx context.Context, s *session.Session, m *wire.Message) {
	h.started <- m.ID
	<-ctx.Done()
	h.returned <- m.ID
}

// A request still running on a connection the session has left (it
// dropped, the session resumed on another) is cancelled when the session
// closes, as the requests of its current connection are: the session is
// gone, nothing waits for its answer.
func TestClosedSessionCancelsTheRequestsOfItsEarlierConnections(t *testing.T) {
	h := &returnsHandler{started: make(chan uint64, 4), returned: make(chan uint64, 4)}
	_, svc, addr := startTCP(t, Config{ResumeWindow: time.Hour}, h)
	suspended, resumed := suspendEvents(svc)
	a := dialRaw(t, addr)
	r, _ := a.resumeHandshake(t, `{}`)
	a.ack(t)
	a.sendMessage(t, &wire.Message{Type: wire.Request, ID: 1, Route: "t.h.wait"}, 0)
	recv(t, "request 1 to start", h.started)
	a.nc.Close()
	sid := recv(t, "suspended", suspended)
	b := dialRaw(t, addr)
	r, _ = b.resumeHandshake(t, fmt.Sprintf(`{"token":%q,"received":0}`, r.Sys.Resume.Token))
	if !r.Sys.Resume.Resumed {
		t.Fatalf("resume: %+v", r.Sys.Resume)
	}
	b.ack(t)
	recv(t, "resumed", resumed)
	if err := svc.Kick(sid, "bye"); err != nil {
		t.Fatal(err)
	}
	if got := recv(t, "request 1 to be cancelled", h.returned); got != 1 {
		t.Fatalf("returned %d", got)
	}
}

// A resume that arrives before the server noticed that the old connection
// dropped (it still looks connected) takes the session over: the old
// connection is closed, the packages after the client's count are
// replayed once, in order, and backends hear suspended then resumed.
func TestResumeTakesOverAConnectionNotSeenToDrop(t *testing.T) {
	_, svc, addr := startTCP(t, Config{ResumeWindow: time.Hour}, newRecordHandler())
	suspended, resumed := suspendEvents(svc)
	a := dialRaw(t, addr)
	r, _ := a.resumeHandshake(t, `{}`)
	a.ack(t)
	var sid uint64
	svc.Range(func(s *session.Session) bool { sid = s.ID(); return false })
	for i := range 3 {
		push(t, svc, sid, fmt.Sprint(i))
	}
	a.nextPush(t) // the client got the first only
	b := dialRaw(t, addr)
	r2 := b.resumeWith(t, r.Sys.Resume.Token, 1)
	if !r2.Sys.Resume.Resumed {
		t.Fatalf("resume: %+v", r2.Sys.Resume)
	}
	recv(t, "suspended", suspended)
	push(t, svc, sid, "3")
	b.ack(t)
	recv(t, "resumed", resumed)
	var got string
	for range 3 {
		got += b.nextPush(t)
	}
	if got != "123" {
		t.Fatalf("replay %q, want 123", got)
	}
	// The old connection is closed by the server (what it still had queued
	// may arrive first).
	a.nc.SetReadDeadline(time.Now().Add(5 * time.Second))
	for {
		if _, _, err := a.r.Next(); err != nil {
			if ne, ok := err.(interface{ Timeout() bool }); ok && ne.Timeout() {
				t.Fatal("the old connection was not closed")
			}
			break
		}
	}
	if s, ok := svc.Get(sid); !ok || s.Suspended() {
		t.Fatal("the session is not connected")
	}
}

// Resumes racing with one token: exactly one is granted; the others are new
// sessions, and the granted one goes on.
func TestRacingResumesWithOneTokenGrantOne(t *testing.T) {
	_, svc, addr := startTCP(t, Config{ResumeWindow: time.Hour}, newRecordHandler())
	suspended, _ := suspendEvents(svc)
	r, sid := suspendedSession(t, addr, suspended)
	const n = 8
	conns := make([]*rawTCP, n)
	for i := range conns {
		conns[i] = dialRaw(t, addr)
	}
	hs := fmt.Appendf(nil, `{"sys":{"type":"go-client","version":"0.1.0","resume":{"token":%q,"received":0}},"user":{}}`, r.Sys.Resume.Token)
	start := make(chan struct{})
	var wg sync.WaitGroup
	for _, c := range conns {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			pkg, _ := wire.AppendPackage(nil, wire.TypeHandshake, hs)
			c.nc.Write(pkg)
		}()
	}
	close(start)
	wg.Wait()
	var winner *rawTCP
	for _, c := range conns {
		_, body := c.next(t)
		var rr resumeReply
		if err := json.Unmarshal(body, &rr); err != nil {
			t.Fatal(err)
		}
		if rr.Sys.Resume.Resumed {
			if winner != nil {
				t.Fatal("two resumes granted with one token")
			}
			winner = c
		}
	}
	if winner == nil {
		t.Fatal("no resume granted")
	}
	winner.ack(t)
	push(t, svc, sid, "x")
	if got := winner.nextPush(t); got != "x" {
		t.Fatalf("push %q", got)
	}
}
