package session_test

import (
	"context"
	"errors"
	"net"
	"slices"
	"sync"
	"testing"

	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/pomelo-go/pomelo/runtime"
	"github.com/pomelo-go/pomelo/runtime/session"
	"github.com/pomelo-go/pomelo/runtime/wire"
)

// fakeConn records what the service does to a connection.
type fakeConn struct {
	mu     sync.Mutex
	ser    runtime.Serializer
	sent   [][]byte
	kicked []string
	closed int
	events *[]string
}

func (c *fakeConn) Send(b []byte) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.sent = append(c.sent, b)
	return nil
}
func (c *fakeConn) Kick(reason string) {
	c.mu.Lock()
	c.kicked = append(c.kicked, reason)
	c.mu.Unlock()
	if c.events != nil {
		*c.events = append(*c.events, "conn-kick:"+reason)
	}
}
func (c *fakeConn) Close() {
	c.mu.Lock()
	c.closed++
	c.mu.Unlock()
	if c.events != nil {
		*c.events = append(*c.events, "conn-close")
	}
}
func (c *fakeConn) RemoteAddr() net.Addr { return &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 9} }
func (c *fakeConn) Serializer() runtime.Serializer {
	if c.ser == nil {
		return runtime.JSON
	}
	return c.ser
}

func newSession(t *testing.T, svc *session.Service) (*session.Session, *fakeConn) {
	t.Helper()
	c := &fakeConn{}
	return svc.Create(c), c
}

func TestBindPolicies(t *testing.T) {
	t.Run("allow many", func(t *testing.T) {
		svc := session.NewService("fe", session.AllowMany)
		a, _ := newSession(t, svc)
		b, _ := newSession(t, svc)
		if err := svc.Bind(a.ID(), "u"); err != nil {
			t.Fatal(err)
		}
		if err := svc.Bind(b.ID(), "u"); err != nil {
			t.Fatal(err)
		}
		if n := len(svc.GetByUID("u")); n != 2 || svc.BoundCount() != 2 {
			t.Fatalf("sessions of u = %d, bound %d", n, svc.BoundCount())
		}
		if err := svc.Bind(a.ID(), "u"); err != nil {
			t.Fatalf("re-binding the same uid: %v", err)
		}
		if err := svc.Bind(a.ID(), "other"); !errors.Is(err, runtime.ErrBadRequest) {
			t.Fatalf("binding a bound session to another uid: %v", err)
		}
	})
	t.Run("reject new", func(t *testing.T) {
		svc := session.NewService("fe", session.RejectNew)
		a, _ := newSession(t, svc)
		b, bc := newSession(t, svc)
		svc.Bind(a.ID(), "u")
		err := svc.Bind(b.ID(), "u")
		if !errors.Is(err, session.ErrDuplicateLogin) {
			t.Fatalf("second bind: %v", err)
		}
		if b.UID() != "" || len(bc.kicked) != 0 {
			t.Fatal("rejected session changed")
		}
	})
	t.Run("kick old", func(t *testing.T) {
		svc := session.NewService("fe", session.KickOld)
		a, ac := newSession(t, svc)
		b, _ := newSession(t, svc)
		svc.Bind(a.ID(), "u")
		if err := svc.Bind(b.ID(), "u"); err != nil {
			t.Fatal(err)
		}
		if !slices.Equal(ac.kicked, []string{session.KickReasonRelogin}) {
			t.Fatalf("old session kicks: %v", ac.kicked)
		}
		if got := svc.GetByUID("u"); len(got) != 1 || got[0] != b {
			t.Fatalf("sessions of u after relogin: %v", got)
		}
		if _, ok := svc.Get(a.ID()); ok {
			t.Fatal("kicked session still registered")
		}
	})
}

func TestCloseOrderAndEvents(t *testing.T) {
	svc := session.NewService("fe", session.AllowMany)
	var events []string
	c := &fakeConn{events: &events}
	s := svc.Create(c)
	svc.OnBind(func(s *session.Session, uid string) { events = append(events, "bind:"+uid) })
	svc.OnUnbind(func(s *session.Session, uid string) { events = append(events, "unbind:"+uid) })
	svc.OnClosed(func(cs *session.Session, reason string) {
		_, still := svc.Get(cs.ID())
		if still {
			t.Error("closed hook ran before the session was removed")
		}
		events = append(events, "closed:"+reason)
	})
	svc.Bind(s.ID(), "u")
	svc.Unbind(s.ID(), "")
	svc.Bind(s.ID(), "v")
	if err := svc.Kick(s.ID(), "bye"); err != nil {
		t.Fatal(err)
	}
	svc.CloseSession(s, "again", true) // closing twice does nothing
	want := []string{"bind:u", "unbind:u", "bind:v", "closed:bye", "conn-kick:bye"}
	if !slices.Equal(events, want) {
		t.Fatalf("events %v, want %v", events, want)
	}
	if svc.Count() != 0 || svc.BoundCount() != 0 || len(svc.GetByUID("v")) != 0 {
		t.Fatal("state left after close")
	}
	if err := svc.Bind(s.ID(), "w"); !errors.Is(err, runtime.ErrNotFound) {
		t.Fatalf("bind after close: %v", err)
	}
}

func TestKickByUIDAndUnbindErrors(t *testing.T) {
	svc := session.NewService("fe", session.AllowMany)
	a, ac := newSession(t, svc)
	b, bc := newSession(t, svc)
	c, cc := newSession(t, svc)
	svc.Bind(a.ID(), "u")
	svc.Bind(b.ID(), "u")
	svc.Bind(c.ID(), "x")
	if err := svc.Unbind(c.ID(), "u"); !errors.Is(err, runtime.ErrBadRequest) {
		t.Fatalf("unbind with the wrong uid: %v", err)
	}
	if n := svc.KickByUID("u", "ban"); n != 2 {
		t.Fatalf("kicked %d", n)
	}
	if len(ac.kicked) != 1 || len(bc.kicked) != 1 || len(cc.kicked) != 0 {
		t.Fatal("wrong sessions kicked")
	}
	if err := svc.Unbind(c.ID(), ""); err != nil {
		t.Fatal(err)
	}
	if err := svc.Unbind(c.ID(), ""); !errors.Is(err, runtime.ErrNotBound) {
		t.Fatalf("unbind of an unbound session: %v", err)
	}
}

// testOrigin records what a Local view asks of the real session.
type testOrigin struct {
	session.Origin
	pushes []map[string]string
}

func (o *testOrigin) PushSettings(ctx context.Context, fid string, sid uint64, kv map[string]string, replace bool) error {
	o.pushes = append(o.pushes, kv)
	return o.Origin.PushSettings(ctx, fid, sid, kv, replace)
}

func TestLocalSetIsLocalUntilPush(t *testing.T) {
	svc := session.NewService("fe", session.AllowMany)
	s, _ := newSession(t, svc)
	s.SetSettings(map[string]string{"rid": "r1", "lvl": "3"}, true)
	o := &testOrigin{Origin: svc.Origin()}
	ctx := context.Background()

	l := session.NewLocal(s.Snapshot(), o)
	l.Set("rid", "r2")
	l.Set("extra", "x")
	l.Remove("lvl")
	if v, _ := s.Get("rid"); v != "r1" {
		t.Fatal("Set on the view changed the real session")
	}
	other := session.NewLocal(s.Snapshot(), o)
	if v, _ := other.Get("lvl"); v != "3" {
		t.Fatal("a view's Remove leaked into another view's snapshot")
	}
	if err := l.Push(ctx, "rid"); err != nil {
		t.Fatal(err)
	}
	if got := s.Settings(); got["rid"] != "r2" || got["lvl"] != "3" || got["extra"] != "" {
		t.Fatalf("after Push(rid): %v", got)
	}
	if err := l.PushAll(ctx); err != nil {
		t.Fatal(err)
	}
	if got := s.Settings(); len(got) != 2 || got["rid"] != "r2" || got["extra"] != "x" {
		t.Fatalf("after PushAll: %v", got)
	}
	if err := l.Bind(ctx, "ann"); err != nil || l.UID() != "ann" || s.UID() != "ann" {
		t.Fatalf("bind through view: %v uid=%q real=%q", err, l.UID(), s.UID())
	}
	if err := l.Send(ctx, "onX", wrapperspb.String("hi")); err != nil {
		t.Fatal(err)
	}
	if err := l.Kick(ctx, "done"); err != nil {
		t.Fatal(err)
	}
	if err := l.Push(ctx); !errors.Is(err, runtime.ErrNotFound) {
		t.Fatalf("push to a closed session: %v", err)
	}
	wrong := session.NewLocal(session.Snapshot{ID: 1, FrontendID: "elsewhere"}, svc.Origin())
	if err := wrong.Bind(ctx, "x"); !errors.Is(err, runtime.ErrNotFound) {
		t.Fatalf("a frontend acting on another frontend's session: %v", err)
	}
}

func TestPushEncodesOncePerSerializer(t *testing.T) {
	svc := session.NewService("fe", session.AllowMany)
	d, err := wire.NewDict([]string{"a.b.c"}, []string{"onChat"})
	if err != nil {
		t.Fatal(err)
	}
	svc.SetDict(d)
	var conns []*fakeConn
	var sessions []*session.Session
	for i := 0; i < 6; i++ {
		c := &fakeConn{ser: runtime.JSON}
		if i%2 == 1 {
			c.ser = runtime.Protobuf
		}
		conns = append(conns, c)
		sessions = append(sessions, svc.Create(c))
	}
	n, err := svc.PushToSessions("onChat", wrapperspb.String("hello"), sessions)
	if err != nil || n != 6 {
		t.Fatalf("pushed to %d: %v", n, err)
	}
	// Sessions with the same serializer share one encoded package.
	if &conns[0].sent[0][0] != &conns[2].sent[0][0] || &conns[1].sent[0][0] != &conns[3].sent[0][0] {
		t.Fatal("push encoded more than once per serializer")
	}
	if &conns[0].sent[0][0] == &conns[1].sent[0][0] {
		t.Fatal("JSON and protobuf sessions share bytes")
	}
	var m wire.Message
	wire.SplitPackages(conns[0].sent[0], 0, func(_ wire.PackageType, body []byte) error {
		m, err = wire.DecodeMessage(body)
		return err
	})
	code, _ := d.Code("onChat")
	if m.Type != wire.Push || !m.Compressed || m.RouteCode != code || string(m.Body) != `"hello"` {
		t.Fatalf("push message %+v body %q", m, m.Body)
	}
	failed, _ := svc.PushToUIDs("onChat", wrapperspb.String("x"), []string{"nobody"})
	if !slices.Equal(failed, []string{"nobody"}) {
		t.Fatalf("failed uids %v", failed)
	}
}
