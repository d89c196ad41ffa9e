package pomelo_test

// Sessions that survive a dropped connection, end to end: the Go client
// against an App, through a TCP proxy that the test cuts (the connection,
// not the server) in the middle of a stream of pushes and requests.

import (
	"context"
	"slices"
	"sync"
	"testing"
	"time"

	"google.golang.org/protobuf/types/known/structpb"

	"github.com/pomelo-go/pomelo"
	"github.com/pomelo-go/pomelo/internal/cutproxy"
	"github.com/pomelo-go/pomelo/runtime"
	"github.com/pomelo-go/pomelo/runtime/channel"
	"github.com/pomelo-go/pomelo/runtime/client"
	"github.com/pomelo-go/pomelo/runtime/cluster"
	"github.com/pomelo-go/pomelo/runtime/session"
	"github.com/pomelo-go/pomelo/runtime/testkit"
)

// newCutProxy forwards loopback TCP connections to target until cut
// (internal/cutproxy); it closes when the test ends.
func newCutProxy(t *testing.T, target string) *cutproxy.Proxy {
	t.Helper()
	p, err := cutproxy.New(target)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Close() })
	return p
}

// resumeCluster is one frontend with the test routes: login (bind, join
// the room), echo (counting runs per n; n = 0 waits for hold), and onLeave
// pushed to the room when a session closes.
type resumeCluster struct {
	app    *pomelo.App
	room   *channel.Channel
	hold   chan struct{}
	held   chan struct{}
	mu     sync.Mutex
	runs   map[int]int
	closed chan string // uids of closed sessions
	susp   chan string
	res    chan string
}

func startResumeCluster(t *testing.T, cfg func(*pomelo.Config)) *resumeCluster {
	t.Helper()
	rc := &resumeCluster{hold: make(chan struct{}), held: make(chan struct{}, 1), runs: map[int]int{},
		closed: make(chan string, 16), susp: make(chan string, 16), res: make(chan string, 16)}
	c := testkit.Start(t, testkit.Config{
		Servers:   []testkit.Spec{{Type: "connector", Frontend: true}},
		Configure: cfg,
		Setup: func(m *testkit.Member) error {
			rc.app = m.App
			rc.room = m.App.Channels().GetOrCreate("room", channel.ChannelConfig{LeaveOnClose: true})
			testkit.HandleStruct(t, m.App, "connector.h.login", func(ctx context.Context, s runtime.Session, in *structpb.Struct) (*structpb.Struct, error) {
				if err := s.Bind(ctx, in.Fields["uid"].GetStringValue()); err != nil {
					return nil, err
				}
				return &structpb.Struct{}, rc.room.AddSession(s)
			})
			testkit.HandleStruct(t, m.App, "connector.h.echo", func(ctx context.Context, s runtime.Session, in *structpb.Struct) (*structpb.Struct, error) {
				n := int(in.Fields["n"].GetNumberValue())
				rc.mu.Lock()
				rc.runs[n]++
				rc.mu.Unlock()
				if n == 0 {
					rc.held <- struct{}{}
					<-rc.hold
				}
				return in, nil
			})
			svc := m.App.Sessions()
			svc.OnClosed(func(s *session.Session, _ string) {
				uid := s.UID()
				rc.closed <- uid
				rc.room.PushMessage(context.Background(), "onLeave", testkit.Struct(map[string]any{"uid": uid}))
			})
			svc.OnSuspended(func(s *session.Session) { rc.susp <- s.UID() })
			svc.OnResumed(func(s *session.Session) { rc.res <- s.UID() })
			return nil
		},
	})
	_ = c
	return rc
}

func waitValue[T comparable](t *testing.T, what string, ch <-chan T, want T) {
	t.Helper()
	deadline := time.After(10 * time.Second)
	for {
		select {
		case v := <-ch:
			if v == want {
				return
			}
		case <-deadline:
			t.Fatalf("timed out waiting for %s", what)
		}
	}
}

func login(t *testing.T, ctx context.Context, c *client.Client, uid string) {
	t.Helper()
	if err := c.Request(ctx, "connector.h.login", testkit.Struct(map[string]any{"uid": uid}), nil); err != nil {
		t.Fatalf("login %s: %v", uid, err)
	}
}

// states records the states a client reports.
type states struct {
	mu  sync.Mutex
	all []client.State
	ch  chan client.State
}

func newStates() *states { return &states{ch: make(chan client.State, 64)} }

func (s *states) on(st client.State) {
	s.mu.Lock()
	s.all = append(s.all, st)
	s.mu.Unlock()
	s.ch <- st
}

func (s *states) list() []client.State {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.all)
}

func TestResumedSessionGetsEveryPushAndResponseOnceAcrossACut(t *testing.T) {
	for _, tr := range []string{"ws", "tcp"} {
		t.Run(tr, func(t *testing.T) {
			// The buffer holds the whole stream: the client may be far
			// behind when the cut comes.
			rc := startResumeCluster(t, func(cfg *pomelo.Config) { cfg.Connector.ResumeBufferPackages = 1024 })
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			target, url := rc.app.TCPAddr().String(), func(addr string) string { return "tcp://" + addr }
			if tr == "ws" {
				target, url = rc.app.WSAddr().String(), func(addr string) string { return "ws://" + addr + "/" }
			}
			proxy := newCutProxy(t, target)

			other, err := client.Dial(ctx, url(target)) // a stock client, not through the proxy
			if err != nil {
				t.Fatal(err)
			}
			defer other.Close()
			leaves := other.Pushes("onLeave", 16)
			login(t, ctx, other, "other")

			st := newStates()
			a, err := client.Config{Resume: true, ReconnectMinDelay: time.Millisecond, OnState: st.on}.Dial(ctx, url(proxy.Addr()))
			if err != nil {
				t.Fatal(err)
			}
			defer a.Close()
			const pushes, requests = 300, 60
			got := a.Pushes("onChat", pushes)
			login(t, ctx, a, "a")

			// A request that is running across the cut: the client sends
			// it again after the resume; it runs once, answered once.
			heldDone := make(chan error, 1)
			go func() {
				out := &structpb.Struct{}
				err := a.Request(ctx, "connector.h.echo", testkit.Struct(map[string]any{"n": 0}), out)
				heldDone <- err
			}()
			<-rc.held

			reqDone := make(chan error, 1)
			go func() {
				for n := 1; n <= requests; n++ {
					out := &structpb.Struct{}
					if err := a.Request(ctx, "connector.h.echo", testkit.Struct(map[string]any{"n": n}), out); err != nil {
						reqDone <- err
						return
					}
					if int(out.Fields["n"].GetNumberValue()) != n {
						reqDone <- runtime.Errorf(runtime.ErrInternal, "request %d answered %v", n, out)
						return
					}
				}
				reqDone <- nil
			}()
			go func() {
				for i := 1; i <= pushes; i++ {
					rc.room.PushMessageExcept(ctx, "onChat", testkit.Struct(map[string]any{"i": i}), "other")
					if i == pushes/3 {
						proxy.Cut() // in the middle of the stream
					}
				}
			}()
			waitValue(t, "suspended", rc.susp, "a")
			waitValue(t, "resumed", rc.res, "a")
			close(rc.hold)
			if err := <-heldDone; err != nil {
				t.Fatalf("the request running across the cut: %v", err)
			}
			if err := <-reqDone; err != nil {
				t.Fatalf("requests: %v", err)
			}
			for i := 1; i <= pushes; i++ {
				var body []byte
				select {
				case body = <-got:
				case <-ctx.Done():
					t.Fatalf("push %d never came", i)
				}
				m := &structpb.Struct{}
				if err := runtime.JSON.Unmarshal(body, m); err != nil {
					t.Fatal(err)
				}
				if n := int(m.Fields["i"].GetNumberValue()); n != i {
					t.Fatalf("push %d is %d: lost, doubled or out of order", i, n)
				}
			}
			rc.mu.Lock()
			for n := 0; n <= requests; n++ {
				if rc.runs[n] != 1 {
					t.Errorf("request %d ran %d times", n, rc.runs[n])
				}
			}
			rc.mu.Unlock()
			if s := st.list(); !slices.Equal(s[:3], []client.State{client.StateConnected, client.StateReconnecting, client.StateResumed}) {
				t.Errorf("states %v", s)
			}
			if _, ok := rc.room.Member("a"); !ok {
				t.Error("the resumed session left the room")
			}
			select {
			case uid := <-rc.closed:
				t.Errorf("session of %q closed", uid)
			case b := <-leaves:
				t.Errorf("the other member saw onLeave %s", b)
			default:
			}
			if a.Received() < pushes+requests+2 {
				t.Errorf("Received() = %d", a.Received())
			}
		})
	}
}

func TestSuspendedSessionLeavesWhenItsWindowEnds(t *testing.T) {
	rc := startResumeCluster(t, func(cfg *pomelo.Config) { cfg.Connector.ResumeWindow = 100 * time.Millisecond })
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	proxy := newCutProxy(t, rc.app.TCPAddr().String())
	other, err := client.Dial(ctx, "tcp://"+rc.app.TCPAddr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()
	leaves := other.Pushes("onLeave", 16)
	login(t, ctx, other, "other")
	st := newStates()
	a, err := client.Config{Resume: true, ReconnectMinDelay: time.Millisecond, ReconnectMaxDelay: 5 * time.Millisecond, OnState: st.on}.Dial(ctx, "tcp://"+proxy.Addr())
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	login(t, ctx, a, "a")

	proxy.Refuse(true)
	proxy.Cut()
	waitValue(t, "suspended", rc.susp, "a")
	waitValue(t, "closed at the end of the window", rc.closed, "a")
	select {
	case b := <-leaves:
		m := &structpb.Struct{}
		runtime.JSON.Unmarshal(b, m)
		if m.Fields["uid"].GetStringValue() != "a" {
			t.Fatalf("onLeave %s", b)
		}
	case <-ctx.Done():
		t.Fatal("no onLeave")
	}
	if _, ok := rc.room.Member("a"); ok {
		t.Error("the closed session is still in the room")
	}
	// The client comes back too late: its token is refused, a new session.
	proxy.Refuse(false)
	waitValue(t, "lost", st.ch, client.StateLost)
	select {
	case <-a.Done():
		t.Fatalf("the client gave up: %v", a.Err())
	default:
	}
	if err := a.Request(ctx, "connector.h.echo", testkit.Struct(map[string]any{"n": 1}), nil); err != nil {
		t.Fatalf("request on the new session: %v", err)
	}
}

func TestStockClientSessionClosesWhenItsConnectionDrops(t *testing.T) {
	rc := startResumeCluster(t, nil)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	proxy := newCutProxy(t, rc.app.TCPAddr().String())
	a, err := client.Dial(ctx, "tcp://"+proxy.Addr())
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	login(t, ctx, a, "a")
	proxy.Cut()
	waitValue(t, "closed", rc.closed, "a")
	<-a.Done()
	select {
	case uid := <-rc.susp:
		t.Fatalf("stock session of %q suspended", uid)
	default:
	}
}

func TestBackendHearsSuspendResumeAndCloseOfItsSessions(t *testing.T) {
	type event struct {
		kind string
		sid  uint64
	}
	events := make(chan event, 16)
	var front *pomelo.App
	testkit.Start(t, testkit.Config{
		Servers: []testkit.Spec{{Type: "connector", Frontend: true}, {Type: "room"}},
		Setup: func(m *testkit.Member) error {
			if m.Info.Type == "connector" {
				front = m.App
				return nil
			}
			testkit.HandleStruct(t, m.App, "room.h.hello", func(ctx context.Context, s runtime.Session, in *structpb.Struct) (*structpb.Struct, error) {
				return in, nil
			})
			m.App.OnSessionSuspended(func(ev cluster.SessionEvent) { events <- event{"suspended", ev.Session.ID} })
			m.App.OnSessionResumed(func(ev cluster.SessionEvent) { events <- event{"resumed", ev.Session.ID} })
			m.App.OnSessionClosed(func(ev cluster.SessionEvent) { events <- event{"closed", ev.Session.ID} })
			return nil
		},
	})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	proxy := newCutProxy(t, front.TCPAddr().String())
	a, err := client.Config{Resume: true, ReconnectMinDelay: time.Millisecond, ReconnectMaxDelay: 5 * time.Millisecond}.Dial(ctx, "tcp://"+proxy.Addr())
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	if err := a.Request(ctx, "room.h.hello", testkit.Struct(nil), nil); err != nil {
		t.Fatal(err)
	}
	var sid uint64
	front.Sessions().Range(func(s *session.Session) bool { sid = s.ID(); return false })
	next := func(want string) {
		t.Helper()
		select {
		case ev := <-events:
			if ev != (event{want, sid}) {
				t.Fatalf("backend heard %v, want %s of session %d", ev, want, sid)
			}
		case <-ctx.Done():
			t.Fatalf("backend never heard %s", want)
		}
	}
	// Refused until the backend has heard of the suspension: its watch,
	// sent in the background, may reach the frontend after the drop.
	proxy.Refuse(true)
	proxy.Cut()
	next("suspended")
	proxy.Refuse(false)
	next("resumed")
	if err := a.Request(ctx, "room.h.hello", testkit.Struct(nil), nil); err != nil {
		t.Fatalf("after the resume: %v", err)
	}
	if err := front.Sessions().Kick(sid, "bye"); err != nil {
		t.Fatal(err)
	}
	next("closed")
	select {
	case ev := <-events:
		t.Fatalf("after closed: %v", ev)
	default:
	}
}

// A resumable client's Close is leaving: over WebSocket a close with code
// 1000, over raw TCP a KICK from the client before the close. The session
// closes at once; it is not suspended.
func TestResumableClientCloseLeavesAtOnce(t *testing.T) {
	rc := startResumeCluster(t, func(cfg *pomelo.Config) { cfg.Connector.ResumeWindow = time.Hour })
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for _, url := range []string{"ws://" + rc.app.WSAddr().String() + "/", "tcp://" + rc.app.TCPAddr().String()} {
		a, err := client.Config{Resume: true}.Dial(ctx, url)
		if err != nil {
			t.Fatal(err)
		}
		uid := "a-" + url[:2]
		login(t, ctx, a, uid)
		a.Close()
		waitValue(t, "closed", rc.closed, uid)
		select {
		case s := <-rc.susp:
			t.Fatalf("%s: session of %q suspended after the client closed", url, s)
		default:
		}
	}
}
