package interop_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/coder/websocket"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/structpb"

	"github.com/pomelo-go/pomelo/internal/server"
	"github.com/pomelo-go/pomelo/runtime"
	"github.com/pomelo-go/pomelo/runtime/connector"
)

// Push routes the fixture server uses. Registering them as push routes puts
// them in the route dictionary, so that with the dictionary on they travel
// compressed (flag 07 + code).
const (
	routeEcho   = "connector.entryHandler.echo"
	routeEnter  = "connector.entryHandler.enter"
	routeNotify = "connector.entryHandler.notify"
	routeKickMe = "connector.entryHandler.kickMe"

	pushNotify    = "onNotify"
	pushPush      = "onPush"
	pushBroadcast = "onBroadcast"
	// pushUnlisted is not in the dictionary: always sent with flag 06.
	pushUnlisted = "onUnlisted"

	kickReasonByTest = "kicked-by-test"
)

func init() {
	runtime.RegisterRoutes(
		runtime.RouteInfo{Route: pushNotify, Kind: runtime.RoutePush, Response: "google.protobuf.Struct"},
		runtime.RouteInfo{Route: pushPush, Kind: runtime.RoutePush, Response: "google.protobuf.Struct"},
		runtime.RouteInfo{Route: pushBroadcast, Kind: runtime.RoutePush, Response: "google.protobuf.Struct"},
	)
}

// ---- POMELO_TEST_REQUIRE ----------------------------------------------------

// required reports whether POMELO_TEST_REQUIRE ("all" or a comma-separated
// list) asks for the dependency what, so that its absence fails the test
// instead of skipping it.
func required(what string) bool {
	for _, f := range strings.Split(os.Getenv("POMELO_TEST_REQUIRE"), ",") {
		if f = strings.TrimSpace(f); f == "all" || f == what {
			return true
		}
	}
	return false
}

// skipOrFail skips the test because dependency what is missing, or fails it
// when POMELO_TEST_REQUIRE requires what.
func skipOrFail(t testing.TB, what, format string, args ...any) {
	t.Helper()
	msg := fmt.Sprintf(format, args...)
	if required(what) {
		t.Fatalf("%s (required by POMELO_TEST_REQUIRE=%q)", msg, os.Getenv("POMELO_TEST_REQUIRE"))
	}
	t.Skip(msg)
}

// ---- the node harness -------------------------------------------------------

const harnessDir = "js"

// nodeHarness returns the node binary and the harness script, or skips.
func nodeHarness(t testing.TB) (node, script string) {
	t.Helper()
	node, err := exec.LookPath("node")
	if err != nil {
		skipOrFail(t, "node", "node not found in PATH: the JavaScript client interop tests need node (20 or later)")
	}
	for _, f := range []string{
		"node_modules/pomelo-jsclient-websocket/lib/pomelo-client.js",
		"node_modules/pomelo-protocol/lib/protocol.js",
		"node_modules/ws/package.json",
	} {
		if _, err := os.Stat(filepath.Join(harnessDir, f)); err != nil {
			skipOrFail(t, "node", "interop/js/%s is missing: run `npm install --prefix interop/js --no-package-lock` from the repository root", f)
		}
	}
	script, err = filepath.Abs(filepath.Join(harnessDir, "harness.js"))
	if err != nil {
		t.Fatal(err)
	}
	return node, script
}

// event is one JSON line printed by the harness.
type event struct {
	Event   string          `json:"event"`
	T       int64           `json:"t"` // ms since the harness started
	Route   string          `json:"route,omitempty"`
	Body    json.RawMessage `json:"body,omitempty"`
	Reason  string          `json:"reason,omitempty"`
	Message string          `json:"message,omitempty"`
	Error   string          `json:"error,omitempty"`
	Code    *int            `json:"code,omitempty"`
	// wire events: one package seen by the tapped WebSocket
	Dir   string          `json:"dir,omitempty"`
	Frame int             `json:"frame,omitempty"`
	Type  int             `json:"type,omitempty"`
	Len   int             `json:"len,omitempty"`
	Flag  *int            `json:"flag,omitempty"`
	JSON  json.RawMessage `json:"json,omitempty"`

	line string
}

func (e event) String() string { return e.line }

// runHarness runs `node harness.js scenario url args...` with a 30s timeout
// and returns its events. onEvent, when not nil, sees every event as it
// arrives (to act on "ready"). The run fails the test unless the harness
// exits 0 with a final "done".
func runHarness(t *testing.T, onEvent func(event), scenario, url string, args ...string) []event {
	t.Helper()
	node, script := nodeHarness(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, node, append([]string{script, scenario, url}, args...)...)
	cmd.Dir = harnessDir
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatalf("start node: %v", err)
	}
	var events []event
	var bad []string
	sc := bufio.NewScanner(stdout)
	sc.Buffer(make([]byte, 0, 64<<10), 4<<20)
	for sc.Scan() {
		line := sc.Text()
		var e event
		if err := json.Unmarshal([]byte(line), &e); err != nil || e.Event == "" {
			bad = append(bad, line)
			continue
		}
		e.line = line
		events = append(events, e)
		if onEvent != nil {
			onEvent(e)
		}
	}
	waitErr := cmd.Wait()
	dump := func() string {
		var b strings.Builder
		for _, e := range events {
			b.WriteString("  " + e.line + "\n")
		}
		return fmt.Sprintf("events:\n%sstderr:\n%s", b.String(), stderr.String())
	}
	if len(bad) > 0 {
		t.Errorf("harness printed non-event lines on stdout: %q", bad)
	}
	if ctx.Err() != nil {
		t.Fatalf("harness %s did not finish within 30s\n%s", scenario, dump())
	}
	if waitErr != nil || len(events) == 0 || events[len(events)-1].Event != "done" {
		t.Fatalf("harness %s failed: %v\n%s", scenario, waitErr, dump())
	}
	if testing.Verbose() {
		t.Logf("harness %s:\n%s", scenario, dump())
	}
	return events
}

func filterEvents(events []event, keep func(event) bool) []event {
	var out []event
	for _, e := range events {
		if keep(e) {
			out = append(out, e)
		}
	}
	return out
}

func firstEvent(events []event, keep func(event) bool) (event, int, bool) {
	for i, e := range events {
		if keep(e) {
			return e, i, true
		}
	}
	return event{}, -1, false
}

// ---- the server -------------------------------------------------------------

// fixture is a started frontend with the test routes.
type fixture struct {
	t        testing.TB
	s        *server.Server
	addr     string                // host:port
	notified chan *structpb.Struct // bodies the notify handler received
}

// url returns the WebSocket URL of the server with path.
func (f *fixture) url(path string) string { return "ws://" + f.addr + path }

// newFixture starts a frontend with Heartbeat 1s (timeout 2s) and the test
// routes; mod may change the configuration first. At cleanup it checks that
// every session and connection is gone, then shuts the server down.
func newFixture(t testing.TB, mod func(*server.Config)) *fixture {
	t.Helper()
	f := &fixture{t: t, notified: make(chan *structpb.Struct, 16)}
	cfg := server.Config{
		ID:        "connector-1",
		Type:      "connector",
		Frontend:  true,
		WSAddr:    "127.0.0.1:0",
		Connector: connector.Config{Heartbeat: time.Second},
		Logger:    testLogger(t),
	}
	if mod != nil {
		mod(&cfg)
	}
	s, err := server.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	f.s = s
	decode := func(route string, ser runtime.Serializer, body []byte) (*structpb.Struct, error) {
		st := &structpb.Struct{}
		if err := ser.Unmarshal(body, st); err != nil {
			return nil, runtime.BadRequest(route, err)
		}
		return st, nil
	}
	must := func(err error) {
		if err != nil {
			t.Fatal(err)
		}
	}
	must(s.RegisterHandler(runtime.HandlerDesc{Route: routeEcho, ServerType: "connector",
		Handle: func(ctx context.Context, sess runtime.Session, ser runtime.Serializer, body []byte) (proto.Message, error) {
			return decode(routeEcho, ser, body)
		}}))
	must(s.RegisterHandler(runtime.HandlerDesc{Route: routeEnter, ServerType: "connector",
		Handle: func(ctx context.Context, sess runtime.Session, ser runtime.Serializer, body []byte) (proto.Message, error) {
			st, err := decode(routeEnter, ser, body)
			if err != nil {
				return nil, err
			}
			uid := st.GetFields()["uid"].GetStringValue()
			if err := sess.Bind(ctx, uid); err != nil {
				return nil, err
			}
			return structpb.NewStruct(map[string]any{"code": 200, "uid": uid})
		}}))
	must(s.RegisterHandler(runtime.HandlerDesc{Route: routeNotify, ServerType: "connector", NotifyOnly: true,
		Handle: func(ctx context.Context, sess runtime.Session, ser runtime.Serializer, body []byte) (proto.Message, error) {
			st, err := decode(routeNotify, ser, body)
			if err != nil {
				return nil, err
			}
			select {
			case f.notified <- st:
			default:
			}
			return nil, sess.Send(ctx, pushNotify, st)
		}}))
	must(s.RegisterHandler(runtime.HandlerDesc{Route: routeKickMe, ServerType: "connector",
		Handle: func(ctx context.Context, sess runtime.Session, ser runtime.Serializer, body []byte) (proto.Message, error) {
			if err := sess.Kick(ctx, kickReasonByTest); err != nil {
				return nil, err
			}
			return structpb.NewStruct(map[string]any{"code": 200})
		}}))
	must(s.Start())
	f.addr = s.WSAddr().String()
	t.Cleanup(func() {
		// Every client of the test is gone by now: its sessions must be too.
		f.waitIdle()
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := s.Shutdown(ctx, ""); err != nil {
			t.Errorf("shutdown: %v", err)
		}
	})
	return f
}

// waitIdle fails the test unless the server's session and connection counts
// drop to 0 within 5s.
func (f *fixture) waitIdle() {
	f.t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		sessions, conns := f.s.Sessions().Count(), 0
		if c := f.s.Connector(); c != nil {
			conns = c.Count()
		}
		if sessions == 0 && conns == 0 {
			return
		}
		if time.Now().After(deadline) {
			f.t.Errorf("server still has %d sessions and %d connections 5s after its clients left", sessions, conns)
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// waitBound waits until uid has a session.
func (f *fixture) waitBound(uid string, within time.Duration) error {
	deadline := time.Now().Add(within)
	for len(f.s.Sessions().GetByUID(uid)) == 0 {
		if time.Now().After(deadline) {
			return fmt.Errorf("uid %q not bound within %v", uid, within)
		}
		time.Sleep(10 * time.Millisecond)
	}
	return nil
}

// testLogger sends the server's logs to t.Log until the test ends.
func testLogger(t testing.TB) *slog.Logger {
	w := &testWriter{t: t}
	t.Cleanup(func() {
		w.mu.Lock()
		w.done = true
		w.mu.Unlock()
	})
	return slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

type testWriter struct {
	mu   sync.Mutex
	t    testing.TB
	done bool
}

func (w *testWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if !w.done {
		w.t.Log(strings.TrimRight(string(p), "\n"))
	}
	return len(p), nil
}

func mustStruct(t testing.TB, m map[string]any) *structpb.Struct {
	t.Helper()
	st, err := structpb.NewStruct(m)
	if err != nil {
		t.Fatal(err)
	}
	return st
}

// jsonEqual compares two JSON texts by value.
func jsonEqual(t testing.TB, what string, got []byte, want string) {
	t.Helper()
	var g, w any
	if err := json.Unmarshal(got, &g); err != nil {
		t.Errorf("%s: %q is not JSON: %v", what, got, err)
		return
	}
	if err := json.Unmarshal([]byte(want), &w); err != nil {
		t.Fatalf("%s: bad expectation %q: %v", what, want, err)
	}
	gb, _ := json.Marshal(g)
	wb, _ := json.Marshal(w)
	if !bytes.Equal(gb, wb) {
		t.Errorf("%s:\n got %s\nwant %s", what, gb, wb)
	}
}

// ---- a raw client for wire-level checks -------------------------------------

// rawClient speaks packages over a WebSocket directly.
type rawClient struct {
	t       testing.TB
	c       *websocket.Conn
	pending []rawPkg // packages of the last frame not yet consumed
	frames  int      // frames received
}

type rawPkg struct {
	typ   byte
	body  []byte
	frame int
}

func dialRaw(t testing.TB, url string) *rawClient {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	c, _, err := websocket.Dial(ctx, url, nil)
	if err != nil {
		t.Fatalf("dial %s: %v", url, err)
	}
	c.SetReadLimit(16 << 20)
	t.Cleanup(func() { c.CloseNow() })
	return &rawClient{t: t, c: c}
}

// pkg builds one package.
func pkg(typ byte, body []byte) []byte {
	n := len(body)
	return append([]byte{typ, byte(n >> 16), byte(n >> 8), byte(n)}, body...)
}

// varint encodes v as the message layer does (low group first).
func varint(v uint64) []byte {
	var b []byte
	for v >= 0x80 {
		b = append(b, byte(v)|0x80)
		v >>= 7
	}
	return append(b, byte(v))
}

// request builds the DATA body of a request with an uncompressed route.
func requestMsg(id uint64, route string, body string) []byte {
	m := append([]byte{0x00}, varint(id)...)
	m = append(m, byte(len(route)))
	m = append(m, route...)
	return append(m, body...)
}

// requestCompressed builds the DATA body of a request with a route code.
func requestCompressed(id uint64, code uint16, body string) []byte {
	m := append([]byte{0x01}, varint(id)...)
	m = append(m, byte(code>>8), byte(code))
	return append(m, body...)
}

// notifyMsg builds the DATA body of a notify with an uncompressed route.
func notifyMsg(route string, body string) []byte {
	m := []byte{0x02, byte(len(route))}
	m = append(m, route...)
	return append(m, body...)
}

// send writes packages as one binary frame.
func (r *rawClient) send(pkgs ...[]byte) {
	r.sendFrame(websocket.MessageBinary, pkgs...)
}

func (r *rawClient) sendFrame(typ websocket.MessageType, pkgs ...[]byte) {
	r.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := r.c.Write(ctx, typ, bytes.Join(pkgs, nil)); err != nil {
		r.t.Fatalf("write: %v", err)
	}
}

var (
	errTimeout  = errors.New("timed out")
	errBadFrame = errors.New("bad frame from the server")
)

// next returns the next package from the server, reading a frame when
// needed. A read that times out closes the connection (as coder/websocket
// does), so within must only expire on failure.
func (r *rawClient) next(within time.Duration) (rawPkg, error) {
	if len(r.pending) == 0 {
		ctx, cancel := context.WithTimeout(context.Background(), within)
		defer cancel()
		typ, b, err := r.c.Read(ctx)
		if err != nil {
			if ctx.Err() != nil {
				return rawPkg{}, errTimeout
			}
			return rawPkg{}, err
		}
		r.frames++
		if typ != websocket.MessageBinary {
			return rawPkg{}, fmt.Errorf("%w: a %v frame, want binary", errBadFrame, typ)
		}
		for len(b) > 0 {
			if len(b) < 4 {
				return rawPkg{}, fmt.Errorf("%w: frame ends inside a package header: % x", errBadFrame, b)
			}
			n := int(b[1])<<16 | int(b[2])<<8 | int(b[3])
			if len(b) < 4+n {
				return rawPkg{}, fmt.Errorf("%w: package of %d bytes, frame has %d", errBadFrame, n, len(b)-4)
			}
			r.pending = append(r.pending, rawPkg{typ: b[0], body: b[4 : 4+n], frame: r.frames})
			b = b[4+n:]
		}
	}
	p := r.pending[0]
	r.pending = r.pending[1:]
	return p, nil
}

// expect returns the next package and fails unless it has type typ.
func (r *rawClient) expect(typ byte, within time.Duration) rawPkg {
	r.t.Helper()
	p, err := r.next(within)
	if err != nil {
		r.t.Fatalf("waiting for a package of type %d: %v", typ, err)
	}
	if p.typ != typ {
		r.t.Fatalf("got package type %d (% x), want type %d", p.typ, p.body, typ)
	}
	return p
}

// expectClosed fails unless the server closes the connection within d
// without sending any other package, and returns how long that took.
func (r *rawClient) expectClosed(d time.Duration) time.Duration {
	r.t.Helper()
	start := time.Now()
	p, err := r.next(d)
	switch {
	case err == nil:
		r.t.Fatalf("got package type %d (%q) while waiting for the server to close", p.typ, p.body)
	case errors.Is(err, errTimeout):
		r.t.Fatalf("server did not close the connection within %v", d)
	case errors.Is(err, errBadFrame):
		r.t.Fatal(err)
	}
	// Any other read error: the connection is gone.
	return time.Since(start)
}

// handshake sends the JS client's handshake, checks code 200 and returns the
// reply.
func (r *rawClient) handshake() handshakeReply {
	r.t.Helper()
	r.send(pkg(1, []byte(jsHandshake)))
	p := r.expect(1, 5*time.Second)
	var h handshakeReply
	if err := json.Unmarshal(p.body, &h); err != nil {
		r.t.Fatalf("handshake reply %q: %v", p.body, err)
	}
	h.raw = p.body
	if h.Code != 200 {
		r.t.Fatalf("handshake reply %s, want code 200", p.body)
	}
	return h
}

// handshakeAck completes the handshake with an ACK and consumes the
// heartbeat the server sends right after it.
func (r *rawClient) handshakeAck() handshakeReply {
	r.t.Helper()
	h := r.handshake()
	r.send(pkg(2, nil))
	if p := r.expect(3, 5*time.Second); len(p.body) != 0 {
		r.t.Fatalf("heartbeat with a body: % x", p.body)
	}
	return h
}

// jsHandshake is exactly what pomelo-jsclient-websocket sends (docs/PROTOCOL.md section 4).
const jsHandshake = `{"sys":{"type":"js-websocket","version":"0.0.1","rsa":{},"protoVersion":0},"user":{}}`

type handshakeReply struct {
	Code int `json:"code"`
	Sys  *struct {
		Heartbeat   int               `json:"heartbeat"`
		Dict        map[string]uint16 `json:"dict"`
		UseDict     bool              `json:"useDict"`
		DictVersion string            `json:"dictVersion"`
	} `json:"sys"`
	raw []byte
}

// message is a decoded DATA body.
type message struct {
	flag  byte
	typ   byte
	id    uint64
	route string
	code  uint16
	body  []byte
}

func decodeMessage(t testing.TB, b []byte) message {
	t.Helper()
	if len(b) == 0 {
		t.Fatal("empty DATA package")
	}
	m := message{flag: b[0], typ: (b[0] >> 1) & 7}
	i := 1
	if m.typ == 0 || m.typ == 2 {
		var shift uint
		for {
			if i >= len(b) {
				t.Fatalf("message % x ends inside its id", b)
			}
			c := b[i]
			i++
			m.id |= uint64(c&0x7f) << shift
			shift += 7
			if c < 0x80 {
				break
			}
		}
	}
	if m.typ != 2 {
		if m.flag&1 != 0 {
			m.code = uint16(b[i])<<8 | uint16(b[i+1])
			i += 2
		} else {
			n := int(b[i])
			m.route = string(b[i+1 : i+1+n])
			i += 1 + n
		}
	}
	m.body = b[i:]
	return m
}
