package connector

// Wire-level tests of session resume (docs/PROTOCOL.md section 10) on raw
// TCP: tokens, replay bounds, the stock handshake left untouched.

import (
	"encoding/json"
	"fmt"
	"net"
	"testing"
	"time"

	"github.com/pomelo-go/pomelo/runtime"
	"github.com/pomelo-go/pomelo/runtime/session"
	"github.com/pomelo-go/pomelo/runtime/wire"
)

// resumeReply is the handshake reply of a resumable session.
type resumeReply struct {
	Code int `json:"code"`
	Sys  struct {
		Heartbeat int               `json:"heartbeat"`
		Resume    *wire.ResumeReply `json:"resume"`
	} `json:"sys"`
}

// resumeHandshake sends a handshake with sys.resume (raw JSON) and returns
// the parsed reply and its bytes.
func (c *rawTCP) resumeHandshake(t *testing.T, resume string) (resumeReply, []byte) {
	t.Helper()
	c.send(t, wire.TypeHandshake, fmt.Appendf(nil, `{"sys":{"type":"go-client","version":"0.1.0","resume":%s},"user":{}}`, resume))
	typ, body := c.next(t)
	if typ != wire.TypeHandshake {
		t.Fatalf("handshake reply is %s %q", typ, body)
	}
	var r resumeReply
	if err := json.Unmarshal(body, &r); err != nil {
		t.Fatal(err)
	}
	return r, body
}

// suspendedSession connects a client asking for a resumable session,
// acks, and drops the connection: it returns the handshake reply and the
// session, once suspended.
func suspendedSession(t *testing.T, addr net.Addr, suspended <-chan uint64) (resumeReply, uint64) {
	t.Helper()
	a := dialRaw(t, addr)
	r, _ := a.resumeHandshake(t, `{}`)
	a.ack(t)
	a.nc.Close()
	return r, recv(t, "suspended", suspended)
}

// resumeWith sends a handshake resuming the session of token, having
// received that many DATA packages, and returns the reply.
func (c *rawTCP) resumeWith(t *testing.T, token string, received uint64) resumeReply {
	t.Helper()
	r, _ := c.resumeHandshake(t, fmt.Sprintf(`{"token":%q,"received":%d}`, token, received))
	return r
}

// ack sends the HANDSHAKE_ACK and reads the server's HEARTBEAT.
func (c *rawTCP) ack(t *testing.T) {
	t.Helper()
	c.send(t, wire.TypeHandshakeAck, nil)
	if typ, _ := c.next(t); typ != wire.TypeHeartbeat {
		t.Fatalf("after the ack: %s, want HEARTBEAT", typ)
	}
}

// nextPush reads a DATA package and returns its body.
func (c *rawTCP) nextPush(t *testing.T) string {
	t.Helper()
	typ, body := c.next(t)
	if typ != wire.TypeData {
		t.Fatalf("got %s, want DATA", typ)
	}
	m, err := wire.DecodeMessage(body)
	if err != nil {
		t.Fatal(err)
	}
	return string(m.Body)
}

// suspendEvents reports the sessions suspended and resumed.
func suspendEvents(svc *session.Service) (suspended, resumed chan uint64) {
	suspended, resumed = make(chan uint64, 16), make(chan uint64, 16)
	svc.OnSuspended(func(s *session.Session) { suspended <- s.ID() })
	svc.OnResumed(func(s *session.Session) { resumed <- s.ID() })
	return suspended, resumed
}

func recv[T any](t *testing.T, what string, ch <-chan T) T {
	t.Helper()
	select {
	case v := <-ch:
		return v
	case <-time.After(5 * time.Second):
		t.Fatalf("timed out waiting for %s", what)
		panic("unreachable")
	}
}

func push(t *testing.T, svc *session.Service, sid uint64, body string) {
	t.Helper()
	if _, err := svc.PushBodyToSIDs("onMsg", rawBody(body), []uint64{sid}); err != nil {
		t.Fatal(err)
	}
}

// rawBody is a push body that is the same bytes for any serializer.
type rawBody string

func (b rawBody) Encode(runtime.Serializer) ([]byte, error) { return []byte(b), nil }

func TestStockHandshakeReplyIsUnchangedWithResumeOn(t *testing.T) {
	for _, cfg := range []Config{{}, {ResumeWindow: NoResume}} {
		_, _, addr := startTCP(t, cfg, newRecordHandler())
		c := dialRaw(t, addr)
		c.send(t, wire.TypeHandshake, []byte(rawHandshake))
		if _, body := c.next(t); string(body) != `{"code":200,"sys":{"heartbeat":10}}` {
			t.Errorf("stock reply %s", body)
		}
	}
}

func TestResumeOffAnswersWithoutResumeObject(t *testing.T) {
	_, _, addr := startTCP(t, Config{ResumeWindow: NoResume}, newRecordHandler())
	c := dialRaw(t, addr)
	if r, body := c.resumeHandshake(t, `{}`); r.Sys.Resume != nil {
		t.Errorf("reply with resume off: %s", body)
	}
}

func TestResumeReplaysWhatTheClientMissedAndRefusesUsedTokens(t *testing.T) {
	_, svc, addr := startTCP(t, Config{}, newRecordHandler())
	suspended, resumed := suspendEvents(svc)
	a := dialRaw(t, addr)
	r1, _ := a.resumeHandshake(t, `{}`)
	if r1.Sys.Resume == nil || r1.Sys.Resume.Resumed || len(r1.Sys.Resume.Token) != 22 {
		t.Fatalf("new resumable session: %+v", r1.Sys.Resume)
	}
	a.ack(t)
	var sid uint64
	svc.Range(func(s *session.Session) bool { sid = s.ID(); return false })
	push(t, svc, sid, `"1"`)
	push(t, svc, sid, `"2"`)
	if got := a.nextPush(t) + a.nextPush(t); got != `"1""2"` {
		t.Fatalf("pushes %s", got)
	}
	a.nc.Close() // dropped without a kick: suspended
	if got := recv(t, "suspended", suspended); got != sid {
		t.Fatalf("suspended %d, want %d", got, sid)
	}
	push(t, svc, sid, `"3"`) // kept while suspended
	if n := svc.Count(); n != 1 || svc.SuspendedCount() != 1 {
		t.Fatalf("sessions %d, suspended %d", n, svc.SuspendedCount())
	}

	// The client got only the first package: 2 and 3 come again, in order.
	b := dialRaw(t, addr)
	r2 := b.resumeWith(t, r1.Sys.Resume.Token, 1)
	if r2.Sys.Resume == nil || !r2.Sys.Resume.Resumed || r2.Sys.Resume.Token == r1.Sys.Resume.Token {
		t.Fatalf("resume: %+v", r2.Sys.Resume)
	}
	push(t, svc, sid, `"4"`) // between the reply and the ack: after the replay
	b.ack(t)
	if got := recv(t, "resumed", resumed); got != sid {
		t.Fatalf("resumed %d, want %d", got, sid)
	}
	push(t, svc, sid, `"5"`)
	var got string
	for range 4 {
		got += b.nextPush(t)
	}
	if got != `"2""3""4""5"` {
		t.Fatalf("after the resume: %s", got)
	}
	if svc.Count() != 1 || svc.SuspendedCount() != 0 {
		t.Fatalf("sessions %d, suspended %d", svc.Count(), svc.SuspendedCount())
	}

	// The used token is refused: a new session; the resumed one goes on.
	c := dialRaw(t, addr)
	r3 := c.resumeWith(t, r1.Sys.Resume.Token, 5)
	if r3.Sys.Resume == nil || r3.Sys.Resume.Resumed {
		t.Fatalf("a used token: %+v", r3.Sys.Resume)
	}
	if s, ok := svc.Get(sid); !ok || s.Closed() {
		t.Fatal("a refused token closed the session of its successor")
	}
}

func TestResumeRefusesACountItCannotReplay(t *testing.T) {
	_, svc, addr := startTCP(t, Config{ResumeBufferPackages: 2}, newRecordHandler())
	closed := make(chan uint64, 4)
	svc.OnClosed(func(s *session.Session, _ string) { closed <- s.ID() })
	for _, tc := range []struct {
		name     string
		received uint64
	}{{"more than sent", 5}, {"older than kept", 0}} {
		t.Run(tc.name, func(t *testing.T) {
			a := dialRaw(t, addr)
			r1, _ := a.resumeHandshake(t, `{}`)
			a.ack(t)
			var sid uint64
			svc.Range(func(s *session.Session) bool {
				if !s.Suspended() {
					sid = max(sid, s.ID())
				}
				return true
			})
			for i := range 3 {
				push(t, svc, sid, fmt.Sprint(i))
				a.nextPush(t)
			}
			a.nc.Close()
			b := dialRaw(t, addr)
			r2 := b.resumeWith(t, r1.Sys.Resume.Token, tc.received)
			if r2.Sys.Resume == nil || r2.Sys.Resume.Resumed {
				t.Fatalf("resume from %d of 3 sent, 2 kept: %+v", tc.received, r2.Sys.Resume)
			}
			for recv(t, "the old session closed", closed) != sid {
			}
		})
	}
}

func TestSuspendedSessionOverflowEndsTheWindow(t *testing.T) {
	_, svc, addr := startTCP(t, Config{ResumeBufferPackages: 4, ResumeWindow: time.Hour}, newRecordHandler())
	suspended, _ := suspendEvents(svc)
	closed := make(chan uint64, 4)
	svc.OnClosed(func(s *session.Session, _ string) { closed <- s.ID() })
	a := dialRaw(t, addr)
	r1, _ := a.resumeHandshake(t, `{}`)
	a.ack(t)
	var sid uint64
	svc.Range(func(s *session.Session) bool { sid = s.ID(); return false })
	for i := range 10 { // more than the buffer while connected: the oldest go
		push(t, svc, sid, fmt.Sprint(i))
		a.nextPush(t)
	}
	a.nc.Close()
	recv(t, "suspended", suspended)
	for i := range 4 { // fits: the packages from before the drop make room
		push(t, svc, sid, fmt.Sprint(10+i))
	}
	select {
	case <-closed:
		t.Fatal("closed before the buffer overflowed")
	default:
	}
	push(t, svc, sid, "14")
	if got := recv(t, "closed by the overflow", closed); got != sid {
		t.Fatalf("closed %d, want %d", got, sid)
	}
	b := dialRaw(t, addr)
	if r2 := b.resumeWith(t, r1.Sys.Resume.Token, 10); r2.Sys.Resume.Resumed {
		t.Fatal("resumed a session closed by its overflow")
	}
}

func TestSuspendedSessionClosesWhenItsWindowEnds(t *testing.T) {
	_, svc, addr := startTCP(t, Config{ResumeWindow: 50 * time.Millisecond}, newRecordHandler())
	suspended, _ := suspendEvents(svc)
	closed := make(chan uint64, 4)
	svc.OnClosed(func(s *session.Session, _ string) { closed <- s.ID() })
	r1, sid := suspendedSession(t, addr, suspended)
	if got := recv(t, "closed at the end of the window", closed); got != sid {
		t.Fatalf("closed %d, want %d", got, sid)
	}
	b := dialRaw(t, addr)
	if r2 := b.resumeWith(t, r1.Sys.Resume.Token, 0); r2.Sys.Resume.Resumed {
		t.Fatal("resumed after the window")
	}
}

func TestKickedResumableSessionClosesAtOnce(t *testing.T) {
	_, svc, addr := startTCP(t, Config{ResumeWindow: time.Hour}, newRecordHandler())
	suspended, _ := suspendEvents(svc)
	a := dialRaw(t, addr)
	r1, _ := a.resumeHandshake(t, `{}`)
	a.ack(t)
	var sid uint64
	svc.Range(func(s *session.Session) bool { sid = s.ID(); return false })
	if err := svc.Kick(sid, "bye"); err != nil {
		t.Fatal(err)
	}
	if typ, body := a.next(t); typ != wire.TypeKick {
		t.Fatalf("got %s %q, want KICK", typ, body)
	}
	if svc.Count() != 0 {
		t.Fatalf("%d sessions after the kick", svc.Count())
	}
	select {
	case <-suspended:
		t.Fatal("a kicked session was suspended")
	default:
	}
	b := dialRaw(t, addr)
	if r2 := b.resumeWith(t, r1.Sys.Resume.Token, 0); r2.Sys.Resume.Resumed {
		t.Fatal("resumed a kicked session")
	}
}

// Suspended sessions are capped at MaxConnections: a client that connects
// and drops in a loop cannot pile them up. The drop beyond the cap closes
// its session at once, as without resume.
func TestDropsBeyondMaxConnectionsSuspendedSessionsCloseAtOnce(t *testing.T) {
	_, svc, addr := startTCP(t, Config{ResumeWindow: time.Hour, MaxConnections: 1}, newRecordHandler())
	suspended, _ := suspendEvents(svc)
	closed := make(chan uint64, 4)
	svc.OnClosed(func(s *session.Session, _ string) { closed <- s.ID() })

	a := dialRaw(t, addr)
	a.resumeHandshake(t, `{}`)
	a.ack(t)
	a.nc.Close()
	first := recv(t, "the first drop suspended", suspended)

	b := dialRaw(t, addr) // the connection cap counts connections only: admitted
	b.resumeHandshake(t, `{}`)
	b.ack(t)
	b.nc.Close()
	second := recv(t, "the second session closed", closed)
	if second == first {
		t.Fatalf("closed the suspended session %d, want the second one", first)
	}
	if n := svc.SuspendedCount(); n != 1 {
		t.Fatalf("%d sessions suspended, want 1", n)
	}
	select {
	case sid := <-suspended:
		t.Fatalf("session %d suspended beyond the cap", sid)
	default:
	}
}

// The report of a resume that runs after the resumed connection dropped
// again (a write failing right after the ack) leaves the session
// suspended in the session service, not connected: each report reads the
// link's state as it is then.
func TestLateResumeReportLeavesADroppedSessionSuspended(t *testing.T) {
	_, svc, addr := startTCP(t, Config{ResumeWindow: time.Hour}, newRecordHandler())
	suspended, resumed := suspendEvents(svc)
	r1, sid := suspendedSession(t, addr, suspended)
	b := dialRaw(t, addr)
	if r2 := b.resumeWith(t, r1.Sys.Resume.Token, 0); !r2.Sys.Resume.Resumed {
		t.Fatal("not resumed")
	}
	b.ack(t)
	recv(t, "resumed", resumed)
	s, _ := svc.Get(sid)
	l := s.Conn().(*link)
	// The drop's state change, and then the resume's report, late.
	l.mu.Lock()
	l.state = linkSuspended
	l.mu.Unlock()
	l.report()
	if n := svc.SuspendedCount(); n != 1 {
		t.Fatalf("%d sessions suspended after the late report, want 1", n)
	}
	recv(t, "suspended again", suspended)
}

// A leave (a WebSocket close with code 1000) read on a connection the
// session has already moved off (a resume came in before the server saw
// the old connection drop) is that old connection's end only: the resumed
// session stays.
func TestLeaveOnAReplacedConnectionKeepsTheResumedSession(t *testing.T) {
	c, svc, addr := startTCP(t, Config{ResumeWindow: time.Hour}, newRecordHandler())
	closed := make(chan uint64, 4)
	svc.OnClosed(func(s *session.Session, _ string) { closed <- s.ID() })
	a := dialRaw(t, addr)
	r1, _ := a.resumeHandshake(t, `{}`)
	a.ack(t)
	old := onlyConn(t, c)
	sid := old.session().ID()
	b := dialRaw(t, addr) // while a's connection is still open
	if r2 := b.resumeWith(t, r1.Sys.Resume.Token, 0); !r2.Sys.Resume.Resumed {
		t.Fatal("not resumed")
	}
	b.ack(t)
	old.drop(true) // the old connection's reader read a close 1000
	push(t, svc, sid, "after")
	if got := b.nextPush(t); got != "after" {
		t.Fatalf("push after the old connection's leave: %q", got)
	}
	select {
	case id := <-closed:
		t.Fatalf("session %d closed by a leave on the connection it had moved off", id)
	default:
	}
}
