package server_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net"
	goruntime "runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/coder/websocket"
	"google.golang.org/protobuf/types/known/structpb"

	testingv1 "github.com/pomelo-go/pomelo/gen/pomelo/testing/v1"
	"github.com/pomelo-go/pomelo/internal/server"
	"github.com/pomelo-go/pomelo/runtime"
	"github.com/pomelo-go/pomelo/runtime/client"
	"github.com/pomelo-go/pomelo/runtime/connector"
	"github.com/pomelo-go/pomelo/runtime/filter"
	"github.com/pomelo-go/pomelo/runtime/session"
	"github.com/pomelo-go/pomelo/runtime/wire"
)

// echo implements the generated testing handler on an "echo" frontend.
type echo struct {
	testingv1.UnimplementedEchoHandlerServer
	logged atomic.Int32
	order  chan int64
}

func (e *echo) Echo(ctx context.Context, s runtime.Session, r *testingv1.EchoRequest) (*testingv1.EchoResponse, error) {
	switch r.Text {
	case "panic":
		panic("boom")
	case "sleep":
		select {
		case <-time.After(2 * time.Second):
		case <-ctx.Done():
		}
	case "flood":
		// Push far more than a client that never reads can take.
		big := strings.Repeat("x", 32<<10)
		for i := 0; i < 1000; i++ {
			if err := s.Send(ctx, "onEcho", &testingv1.EchoEvent{Text: big}); err != nil {
				return nil, err
			}
		}
	}
	return &testingv1.EchoResponse{Code: 200, Text: strings.Repeat(r.Text, max(1, int(r.Repeat)))}, nil
}

func (e *echo) Sum(ctx context.Context, s runtime.Session, r *testingv1.SumRequest) (*testingv1.SumResponse, error) {
	var sum int64
	for _, v := range r.Values {
		sum += v
	}
	if e.order != nil && len(r.Values) > 0 {
		e.order <- r.Values[0]
	}
	return &testingv1.SumResponse{Code: 200, Sum: sum, Count: uint32(len(r.Values))}, nil
}

func (e *echo) Log(ctx context.Context, s runtime.Session, r *testingv1.LogRequest) error {
	e.logged.Add(1)
	return nil
}

func (e *echo) Mirror(ctx context.Context, s runtime.Session, r *structpb.Struct) (*structpb.Struct, error) {
	return r, nil
}

func startEcho(t testing.TB, tweak func(*server.Config)) (*server.Server, *echo) {
	t.Helper()
	cfg := server.Config{ID: "echo-1", Type: "echo", Frontend: true, WSAddr: "127.0.0.1:0", TCPAddr: "127.0.0.1:0",
		Connector: connector.Config{Heartbeat: time.Second, HandshakeTimeout: time.Second}}
	if tweak != nil {
		tweak(&cfg)
	}
	s, err := server.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	h := &echo{}
	if err := testingv1.RegisterEchoHandlerServer(s, h); err != nil {
		t.Fatal(err)
	}
	serve(t, s)
	return s, h
}

// serve starts s and shuts it down when the test ends.
func serve(t testing.TB, s *server.Server) {
	t.Helper()
	if err := s.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		s.Shutdown(ctx, "")
	})
}

// raw is a bare WebSocket client for bad-input tests.
type raw struct {
	t       *testing.T
	c       *websocket.Conn
	pending []rawPackage
}

func dialRaw(t *testing.T, s *server.Server) *raw {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	c, _, err := websocket.Dial(ctx, "ws://"+s.WSAddr().String()+"/any/path", nil)
	if err != nil {
		t.Fatal(err)
	}
	c.SetReadLimit(1 << 24)
	t.Cleanup(func() { c.CloseNow() })
	return &raw{t: t, c: c}
}

func (r *raw) send(b []byte) {
	r.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := r.c.Write(ctx, websocket.MessageBinary, b); err != nil {
		r.t.Fatal(err)
	}
}

// next returns the next package (frames may carry several), or an error
// when the connection closed.
func (r *raw) next() (wire.PackageType, []byte, error) {
	if len(r.pending) == 0 {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_, b, err := r.c.Read(ctx)
		if err != nil {
			return 0, nil, err
		}
		err = wire.SplitPackages(b, 0, func(t wire.PackageType, body []byte) error {
			r.pending = append(r.pending, rawPackage{t, bytes.Clone(body)})
			return nil
		})
		if err != nil {
			return 0, nil, err
		}
	}
	p := r.pending[0]
	r.pending = r.pending[1:]
	return p.typ, p.body, nil
}

type rawPackage struct {
	typ  wire.PackageType
	body []byte
}

// handshake completes handshake and ack, and consumes the first heartbeat.
func (r *raw) handshake() {
	r.t.Helper()
	hs, _ := wire.AppendPackage(nil, wire.TypeHandshake, []byte(`{"sys":{"type":"js-websocket","version":"0.0.1","rsa":{},"protoVersion":0},"user":{}}`))
	r.send(hs)
	typ, body, err := r.next()
	if err != nil || typ != wire.TypeHandshake || !bytes.Contains(body, []byte(`"code":200`)) {
		r.t.Fatalf("handshake reply %v %q %v", typ, body, err)
	}
	r.send(wire.HandshakeAckPackage)
	if typ, _, err := r.next(); err != nil || typ != wire.TypeHeartbeat {
		r.t.Fatalf("no heartbeat after ack: %v %v", typ, err)
	}
}

func (r *raw) request(id uint64, route string, body string) {
	r.t.Helper()
	pkg, err := wire.AppendMessagePackage(nil, &wire.Message{Type: wire.Request, ID: id, Route: route, Body: []byte(body)})
	if err != nil {
		r.t.Fatal(err)
	}
	r.send(pkg)
}

// response reads packages until a response arrives.
func (r *raw) response() wire.Message {
	r.t.Helper()
	for {
		typ, body, err := r.next()
		if err != nil {
			r.t.Fatalf("no response: %v", err)
		}
		if typ != wire.TypeData {
			continue
		}
		m, err := wire.DecodeMessage(body)
		if err != nil {
			r.t.Fatal(err)
		}
		if m.Type == wire.Response {
			m.Body = bytes.Clone(m.Body)
			return m
		}
	}
}

// expectClosed asserts the server closes the connection (after any
// packages it still sends).
func (r *raw) expectClosed() {
	r.t.Helper()
	for i := 0; i < 10; i++ {
		if _, _, err := r.next(); err != nil {
			if errors.Is(err, context.DeadlineExceeded) {
				r.t.Fatal("connection not closed by the server")
			}
			return
		}
	}
	r.t.Fatal("connection not closed by the server")
}

type errBody struct {
	Code    int    `json:"code"`
	Error   string `json:"error"`
	Message string `json:"message"`
}

func expectError(t *testing.T, m wire.Message, id uint64, name string) errBody {
	t.Helper()
	var e errBody
	if err := json.Unmarshal(m.Body, &e); err != nil {
		t.Fatalf("error body %q: %v", m.Body, err)
	}
	if m.ID != id || !m.Error || e.Code != 500 || e.Error != name || e.Message == "" {
		t.Fatalf("response id=%d err=%v body=%s; want id %d error %s", m.ID, m.Error, m.Body, id, name)
	}
	return e
}

func checkNoLeaks(t *testing.T, s *server.Server, base int) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		n := goruntime.NumGoroutine()
		if s.Sessions().Count() == 0 && s.Connector().Count() == 0 && n <= base {
			return
		}
		if time.Now().After(deadline) {
			buf := make([]byte, 1<<20)
			t.Fatalf("leak: %d sessions, %d conns, %d goroutines (base %d)\n%s", s.Sessions().Count(), s.Connector().Count(), n, base, buf[:goruntime.Stack(buf, true)])
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func TestBadInput(t *testing.T) {
	s, _ := startEcho(t, func(c *server.Config) { c.Connector.MaxPackageSize = 1024 })
	// Warm up the HTTP server's goroutines before counting.
	dialRaw(t, s).handshake()
	time.Sleep(100 * time.Millisecond)
	base := goruntime.NumGoroutine() + 2

	t.Run("garbage bytes close", func(t *testing.T) {
		r := dialRaw(t, s)
		r.send([]byte("GET / HTTP/1.1\r\n\r\n"))
		r.expectClosed()
	})
	t.Run("length larger than body closes", func(t *testing.T) {
		r := dialRaw(t, s)
		r.handshake()
		r.send([]byte{4, 0, 0, 100, 0, 1})
		r.expectClosed()
	})
	t.Run("oversized package closes", func(t *testing.T) {
		r := dialRaw(t, s)
		r.handshake()
		r.send(append([]byte{4, 0, 8, 0}, make([]byte, 2048)...))
		r.expectClosed()
	})
	t.Run("unknown package type closes", func(t *testing.T) {
		r := dialRaw(t, s)
		r.handshake()
		r.send([]byte{9, 0, 0, 0})
		r.expectClosed()
	})
	t.Run("data before ack closes", func(t *testing.T) {
		r := dialRaw(t, s)
		hs, _ := wire.AppendPackage(nil, wire.TypeHandshake, []byte(`{"sys":{}}`))
		r.send(hs)
		if typ, _, err := r.next(); err != nil || typ != wire.TypeHandshake {
			t.Fatal(typ, err)
		}
		r.request(1, testingv1.EchoHandlerEchoRoute, `{"text":"x"}`)
		r.expectClosed()
	})
	t.Run("bad handshake answers 500", func(t *testing.T) {
		r := dialRaw(t, s)
		hs, _ := wire.AppendPackage(nil, wire.TypeHandshake, []byte(`not json`))
		r.send(hs)
		typ, body, err := r.next()
		if err != nil || typ != wire.TypeHandshake || string(body) != `{"code":500}` {
			t.Fatalf("got %v %q %v", typ, body, err)
		}
		r.expectClosed()
	})
	t.Run("client that never acks is closed", func(t *testing.T) {
		r := dialRaw(t, s)
		hs, _ := wire.AppendPackage(nil, wire.TypeHandshake, []byte(`{"sys":{}}`))
		r.send(hs)
		r.next()
		start := time.Now()
		r.expectClosed()
		if d := time.Since(start); d > 4*time.Second {
			t.Fatalf("closed after %v", d)
		}
	})
	t.Run("client that never heartbeats is closed", func(t *testing.T) {
		r := dialRaw(t, s)
		r.handshake()
		r.expectClosed() // heartbeat timeout is 2s
	})
	t.Run("unknown route answers UNKNOWN_ROUTE", func(t *testing.T) {
		r := dialRaw(t, s)
		r.handshake()
		r.request(7, "echo.echoHandler.nope", `{}`)
		expectError(t, r.response(), 7, runtime.ErrUnknownRoute.Name)
		r.request(8, "nodots", `{}`)
		expectError(t, r.response(), 8, runtime.ErrUnknownRoute.Name)
		r.request(9, "other.handler.route", `{}`)
		expectError(t, r.response(), 9, runtime.ErrUnavailable.Name)
	})
	t.Run("unknown compressed route answers UNKNOWN_ROUTE", func(t *testing.T) {
		r := dialRaw(t, s)
		r.handshake()
		pkg, _ := wire.AppendMessagePackage(nil, &wire.Message{Type: wire.Request, ID: 300, Compressed: true, RouteCode: 60000, Body: []byte(`{}`)})
		r.send(pkg)
		expectError(t, r.response(), 300, runtime.ErrUnknownRoute.Name)
	})
	t.Run("undecodable body answers BAD_REQUEST", func(t *testing.T) {
		r := dialRaw(t, s)
		r.handshake()
		r.request(3, testingv1.EchoHandlerEchoRoute, `{"text":`)
		expectError(t, r.response(), 3, runtime.ErrBadRequest.Name)
		r.request(4, testingv1.EchoHandlerEchoRoute, `{"text":42}`)
		expectError(t, r.response(), 4, runtime.ErrBadRequest.Name)
		// The connection still works.
		r.request(5, testingv1.EchoHandlerEchoRoute, `{"text":"ok","extra":"ignored"}`)
		if m := r.response(); m.Error || !bytes.Contains(m.Body, []byte(`"text":"ok"`)) {
			t.Fatalf("after bad bodies: %s", m.Body)
		}
	})
	t.Run("request to notify-only route answers BAD_REQUEST", func(t *testing.T) {
		r := dialRaw(t, s)
		r.handshake()
		r.request(2, testingv1.EchoHandlerLogRoute, `{}`)
		expectError(t, r.response(), 2, runtime.ErrBadRequest.Name)
	})
	t.Run("panicking handler answers INTERNAL", func(t *testing.T) {
		r := dialRaw(t, s)
		r.handshake()
		r.request(11, testingv1.EchoHandlerEchoRoute, `{"text":"panic"}`)
		e := expectError(t, r.response(), 11, runtime.ErrInternal.Name)
		if strings.Contains(e.Message, "boom") {
			t.Fatalf("panic value leaked to the client: %q", e.Message)
		}
		r.request(12, testingv1.EchoHandlerEchoRoute, `{"text":"still"}`)
		if m := r.response(); m.Error {
			t.Fatalf("after panic: %s", m.Body)
		}
	})
	t.Run("slow consumer is kicked", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		// A TCP client that handshakes, asks for a flood of pushes, and
		// never reads: the server must drop it, not buffer forever.
		nc, err := net.Dial("tcp", s.TCPAddr().String())
		if err != nil {
			t.Fatal(err)
		}
		defer nc.Close()
		hs, _ := wire.AppendPackage(nil, wire.TypeHandshake, []byte(`{"sys":{}}`))
		nc.Write(hs)
		nc.Write(wire.HandshakeAckPackage)
		pkg, _ := wire.AppendMessagePackage(nil, &wire.Message{Type: wire.Request, ID: 1, Route: testingv1.EchoHandlerEchoRoute, Body: []byte(`{"text":"flood"}`)})
		nc.Write(pkg)
		for s.Sessions().Count() > 1 { // the warm-up session stays
			if ctx.Err() != nil {
				t.Fatal("slow consumer still connected")
			}
			time.Sleep(20 * time.Millisecond)
		}
		// Drain: the connection must end (kick or close), not hang.
		nc.SetReadDeadline(time.Now().Add(10 * time.Second))
		n, err := io.Copy(io.Discard, nc)
		if ne, ok := err.(net.Error); ok && ne.Timeout() {
			t.Fatalf("slow consumer's connection not closed (read %d bytes)", n)
		}
	})
	// The warm-up connection is closed by its heartbeat timeout.
	checkNoLeaks(t, s, base)
}

func TestOrderAndPipelining(t *testing.T) {
	s, h := startEcho(t, nil)
	h.order = make(chan int64, 100)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	c, err := client.Dial(ctx, "tcp://"+s.TCPAddr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	cl := testingv1.NewEchoHandlerClient(c)
	var wg sync.WaitGroup
	var mu sync.Mutex
	var sent []int64
	for i := int64(1); i <= 50; i++ {
		mu.Lock()
		sent = append(sent, i)
		// Notifies from one session run in the order they were sent.
		err := c.Notify(ctx, testingv1.EchoHandlerSumRoute, &testingv1.SumRequest{Values: []int64{i}})
		mu.Unlock()
		if err != nil {
			t.Fatal(err)
		}
	}
	for i := 0; i < 10; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			res, err := cl.Sum(ctx, &testingv1.SumRequest{Values: []int64{1000, int64(i)}})
			if err != nil || res.Sum != 1000+int64(i) {
				t.Errorf("sum: %v %v", res, err)
			}
		}()
	}
	wg.Wait()
	for i := int64(1); i <= 50; i++ {
		if got := <-h.order; got != i {
			t.Fatalf("handled %d, want %d: messages of one session out of order", got, i)
		}
	}
}

func TestTimeoutFilterAnswersTimeout(t *testing.T) {
	s, _ := startEcho(t, nil)
	s.Filter(filter.Timeout(100 * time.Millisecond))
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	c, err := client.Dial(ctx, "ws://"+s.WSAddr().String()+"/")
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	start := time.Now()
	_, err = testingv1.NewEchoHandlerClient(c).Echo(ctx, &testingv1.EchoRequest{Text: "sleep"})
	if !errors.Is(err, runtime.ErrTimeout) {
		t.Fatalf("err = %v, want TIMEOUT", err)
	}
	if d := time.Since(start); d > time.Second {
		t.Fatalf("timeout answered after %v", d)
	}
}

func TestRateLimitAndOverloadFilters(t *testing.T) {
	s, _ := startEcho(t, nil)
	s.GlobalFilter(filter.RateLimit(1, 3))
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	c, err := client.Dial(ctx, "ws://"+s.WSAddr().String()+"/")
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	cl := testingv1.NewEchoHandlerClient(c)
	var limited int
	for i := 0; i < 6; i++ {
		_, err := cl.Echo(ctx, &testingv1.EchoRequest{Text: "x"})
		if errors.Is(err, runtime.ErrRateLimited) {
			limited++
		} else if err != nil {
			t.Fatal(err)
		}
	}
	if limited < 2 || limited > 3 {
		t.Fatalf("%d of 6 rate limited, want 3 (burst 3, 1/s)", limited)
	}

	s2, _ := startEcho(t, func(c *server.Config) { c.ID = "echo-2" })
	s2.Filter(filter.Overload(1))
	c2, err := client.Dial(ctx, "ws://"+s2.WSAddr().String()+"/")
	if err != nil {
		t.Fatal(err)
	}
	defer c2.Close()
	c3, err := client.Dial(ctx, "ws://"+s2.WSAddr().String()+"/")
	if err != nil {
		t.Fatal(err)
	}
	defer c3.Close()
	done := make(chan error, 1)
	go func() {
		_, err := testingv1.NewEchoHandlerClient(c2).Echo(ctx, &testingv1.EchoRequest{Text: "sleep"})
		done <- err
	}()
	time.Sleep(200 * time.Millisecond)
	_, err = testingv1.NewEchoHandlerClient(c3).Echo(ctx, &testingv1.EchoRequest{Text: "x"})
	if !errors.Is(err, runtime.ErrOverloaded) {
		t.Fatalf("second concurrent request: %v, want OVERLOADED", err)
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}

func TestSerializersAndDictionary(t *testing.T) {
	s, h := startEcho(t, nil)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	for _, ser := range []runtime.Serializer{runtime.JSON, runtime.Protobuf} {
		t.Run(ser.Name(), func(t *testing.T) {
			c, err := client.Config{Serializer: ser}.Dial(ctx, "ws://"+s.WSAddr().String()+"/")
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			hs := c.Handshake()
			if !hs.Sys.UseDict || hs.Sys.Dict[testingv1.EchoHandlerEchoRoute] == 0 || hs.Sys.DictVersion == "" {
				t.Fatalf("handshake without the dictionary: %+v", hs.Sys)
			}
			cl := testingv1.NewEchoHandlerClient(c)
			res, err := cl.Echo(ctx, &testingv1.EchoRequest{Text: "ab", Repeat: 2})
			if err != nil || res.Text != "abab" || res.Code != 200 {
				t.Fatalf("echo: %v %v", res, err)
			}
			got := make(chan *testingv1.EchoEvent, 1)
			client.Subscribe(c, testingv1.EchoPushOnEcho, func(ev *testingv1.EchoEvent) { got <- ev })
			before := h.logged.Load()
			if err := cl.Log(ctx, &testingv1.LogRequest{Text: "hi"}); err != nil {
				t.Fatal(err)
			}
			s.Sessions().Broadcast(testingv1.EchoPushOnEchoRoute, &testingv1.EchoEvent{From: "srv", Text: ser.Name()}, false, nil)
			select {
			case ev := <-got:
				if ev.Text != ser.Name() || ev.From != "srv" {
					t.Fatalf("push = %v", ev)
				}
			case <-time.After(3 * time.Second):
				t.Fatal("no push")
			}
			waitUntil(t, func() bool { return h.logged.Load() == before+1 })
		})
	}
	// A client that already has the dictionary version is not sent it.
	c, err := client.Config{DictVersion: mustDictVersion(t, s)}.Dial(ctx, "ws://"+s.WSAddr().String()+"/")
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if len(c.Handshake().Sys.Dict) != 0 {
		t.Fatal("dictionary sent to a client that has its version")
	}
}

func mustDictVersion(t *testing.T, s *server.Server) string {
	d, err := s.Dict()
	if err != nil {
		t.Fatal(err)
	}
	return d.Version()
}

func waitUntil(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition not met")
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestClientCheckAndHandshakeHook(t *testing.T) {
	s, _ := startEcho(t, func(c *server.Config) {
		c.CheckClient = func(typ, version string) bool { return version >= "0.0.2" }
		c.HandshakeHook = func(ctx context.Context, _ *session.Session, user json.RawMessage) (json.RawMessage, error) {
			if string(user) == `{"token":"bad"}` {
				return nil, errors.New("bad token")
			}
			return json.RawMessage(`{"welcome":true}`), nil
		}
	})
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	url := "ws://" + s.WSAddr().String() + "/"
	_, err := client.Config{ClientType: "js-websocket", ClientVersion: "0.0.1"}.Dial(ctx, url)
	var he *client.HandshakeError
	if !errors.As(err, &he) || he.Code != 501 {
		t.Fatalf("old client: %v, want handshake 501", err)
	}
	_, err = client.Config{ClientType: "go", ClientVersion: "0.0.2", HandshakeUser: json.RawMessage(`{"token":"bad"}`)}.Dial(ctx, url)
	if !errors.As(err, &he) || he.Code != 500 {
		t.Fatalf("hook error: %v, want handshake 500", err)
	}
	c, err := client.Config{ClientType: "go", ClientVersion: "0.0.2", HandshakeUser: json.RawMessage(`{"token":"good"}`)}.Dial(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if got := string(c.Handshake().User); got != `{"welcome":true}` {
		t.Fatalf("user reply %s", got)
	}
}

func TestShutdownKicksWithReason(t *testing.T) {
	s, _ := startEcho(t, nil)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	c, err := client.Dial(ctx, "ws://"+s.WSAddr().String()+"/")
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Shutdown(ctx, "maintenance"); err != nil {
		t.Fatal(err)
	}
	select {
	case <-c.Done():
	case <-ctx.Done():
		t.Fatal("client not closed")
	}
	if r, ok := c.KickReason(); !ok || r != "maintenance" {
		t.Fatalf("kick reason %q %v", r, ok)
	}
}
