package runtime_test

import (
	"context"
	"errors"
	"hash/crc32"
	"net/http"
	"net/http/httptest"
	"sort"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"connectrpc.com/connect"
	"google.golang.org/protobuf/proto"

	testingv1 "github.com/pomelo-go/pomelo/gen/pomelo/testing/v1"
	"github.com/pomelo-go/pomelo/runtime"
)

// genMuxRegistrar is a runtime.RPCRegistrar backed by an http.ServeMux.
type genMuxRegistrar struct {
	mux  *http.ServeMux
	opts []connect.HandlerOption
}

func (r *genMuxRegistrar) MountRPC(path string, h http.Handler) error {
	r.mux.Handle(path, h)
	return nil
}

func (r *genMuxRegistrar) RPCHandlerOptions() []connect.HandlerOption { return r.opts }

// genEchoRemote implements the generated testing remote service; it answers
// with its own server id.
type genEchoRemote struct {
	testingv1.UnimplementedEchoRemoteServer
	id string
}

func (e *genEchoRemote) Whoami(_ context.Context, req *testingv1.WhoamiRequest) (*testingv1.WhoamiResponse, error) {
	return &testingv1.WhoamiResponse{ServerId: e.id, Note: req.GetNote()}, nil
}

func (e *genEchoRemote) Add(_ context.Context, req *testingv1.AddRequest) (*testingv1.AddResponse, error) {
	return &testingv1.AddResponse{Sum: req.GetA() + req.GetB(), ServerId: e.id}, nil
}

// genInvoker is a runtime.RemoteInvoker over a static list of "echo"
// servers; it routes by crc32 of the route key.
type genInvoker struct {
	ids   []string // sorted; the "echo" servers
	conns map[string]*runtime.RemoteConn
}

func (inv *genInvoker) RouteServer(ctx context.Context, serverType string) (string, error) {
	key, ok := runtime.RouteKeyFromContext(ctx)
	if !ok {
		return "", runtime.ErrNoRouteKey
	}
	ids := inv.ServerIDs(serverType)
	if len(ids) == 0 {
		return "", runtime.Errorf(runtime.ErrUnavailable, "no server of type %q", serverType)
	}
	return ids[crc32.ChecksumIEEE([]byte(key))%uint32(len(ids))], nil
}

func (inv *genInvoker) ServerIDs(serverType string) []string {
	if serverType != "echo" {
		return nil
	}
	return inv.ids
}

func (inv *genInvoker) RemoteConn(serverID string) (*runtime.RemoteConn, error) {
	c, ok := inv.conns[serverID]
	if !ok {
		return nil, runtime.Errorf(runtime.ErrNotFound, "no server %q", serverID)
	}
	return c, nil
}

type genCluster struct {
	inv     *genInvoker
	servers map[string]*httptest.Server
	calls   atomic.Int64 // calls seen by the handler interceptor
}

// startEchoCluster starts three "echo" servers serving the generated
// remote service, plus "echo-unimpl", reachable by id only, whose
// implementation embeds the Unimplemented server alone.
func startEchoCluster(t *testing.T) *genCluster {
	t.Helper()
	c := &genCluster{
		inv:     &genInvoker{conns: make(map[string]*runtime.RemoteConn)},
		servers: make(map[string]*httptest.Server),
	}
	count := connect.UnaryInterceptorFunc(func(next connect.UnaryFunc) connect.UnaryFunc {
		return func(ctx context.Context, req connect.AnyRequest) (connect.AnyResponse, error) {
			c.calls.Add(1)
			return next(ctx, req)
		}
	})
	start := func(id string, srv testingv1.EchoRemoteServer) {
		reg := &genMuxRegistrar{mux: http.NewServeMux(), opts: []connect.HandlerOption{connect.WithInterceptors(count)}}
		if err := testingv1.RegisterEchoRemoteServer(reg, srv); err != nil {
			t.Fatal(err)
		}
		hs := httptest.NewServer(reg.mux)
		t.Cleanup(hs.Close)
		c.servers[id] = hs
		c.inv.conns[id] = &runtime.RemoteConn{ServerID: id, HTTPClient: hs.Client(), BaseURL: hs.URL}
	}
	for _, id := range []string{"echo-1", "echo-2", "echo-3"} {
		start(id, &genEchoRemote{id: id})
		c.inv.ids = append(c.inv.ids, id)
	}
	sort.Strings(c.inv.ids)
	start("echo-unimpl", struct {
		testingv1.UnimplementedEchoRemoteServer
	}{})
	return c
}

func testContext(t *testing.T) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func TestGeneratedRemoteBySession(t *testing.T) {
	c := startEchoCluster(t)
	client := testingv1.NewEchoRemoteClient(c.inv)
	ctx := testContext(t)

	picked := make(map[string]bool)
	for _, uid := range []string{"alice", "bob", "carol", "dave", "erin", "frank", "grace", "heidi"} {
		s := &genSession{id: 7, frontend: "connector-1", uid: uid}
		res, err := client.Whoami(runtime.WithSession(ctx, s), &testingv1.WhoamiRequest{Note: uid})
		if err != nil {
			t.Fatalf("%s: %v", uid, err)
		}
		want := c.inv.ids[crc32.ChecksumIEEE([]byte(uid))%3]
		if res.GetServerId() != want || res.GetNote() != uid {
			t.Errorf("%s: answered by %s (note %q), want %s", uid, res.GetServerId(), res.GetNote(), want)
		}
		picked[res.GetServerId()] = true
	}
	if len(picked) < 2 {
		t.Errorf("every uid went to %v", picked)
	}

	// An unbound session routes by frontend id and session id.
	unbound := &genSession{id: 42, frontend: "connector-2"}
	res, err := client.Add(runtime.WithSession(ctx, unbound), &testingv1.AddRequest{A: 40, B: 2})
	if err != nil {
		t.Fatal(err)
	}
	if want := c.inv.ids[crc32.ChecksumIEEE([]byte("connector-2#42"))%3]; res.GetSum() != 42 || res.GetServerId() != want {
		t.Errorf("Add = %v, want sum 42 from %s", res, want)
	}

	// An explicit route key.
	res2, err := client.Whoami(runtime.WithRouteKey(ctx, "room-9"), &testingv1.WhoamiRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if want := c.inv.ids[crc32.ChecksumIEEE([]byte("room-9"))%3]; res2.GetServerId() != want {
		t.Errorf("by route key: %s, want %s", res2.GetServerId(), want)
	}

	// No session, no key.
	if _, err := client.Whoami(ctx, &testingv1.WhoamiRequest{}); !errors.Is(err, runtime.ErrNoRouteKey) {
		t.Errorf("no route key: err = %v", err)
	}
	if c.calls.Load() == 0 {
		t.Error("the RPCHandlerOptions interceptor saw no call")
	}
}

func TestGeneratedRemoteByID(t *testing.T) {
	c := startEchoCluster(t)
	client := testingv1.NewEchoRemoteClient(c.inv)
	ctx := testContext(t)
	for _, id := range c.inv.ids {
		res, err := client.WhoamiTo(ctx, id, &testingv1.WhoamiRequest{Note: "hi"})
		if err != nil {
			t.Fatal(err)
		}
		if res.GetServerId() != id {
			t.Errorf("WhoamiTo(%s) answered by %s", id, res.GetServerId())
		}
		sum, err := client.AddTo(ctx, id, &testingv1.AddRequest{A: 1, B: 2})
		if err != nil || sum.GetSum() != 3 || sum.GetServerId() != id {
			t.Errorf("AddTo(%s) = %v, %v", id, sum, err)
		}
	}
	if _, err := client.WhoamiTo(ctx, "echo-9", &testingv1.WhoamiRequest{}); !errors.Is(err, runtime.ErrNotFound) {
		t.Errorf("unknown server: err = %v", err)
	}
	_, err := client.WhoamiTo(ctx, "echo-unimpl", &testingv1.WhoamiRequest{})
	if connect.CodeOf(err) != connect.CodeUnimplemented {
		t.Errorf("unimplemented method: err = %v", err)
	}
}

func TestGeneratedRemoteAll(t *testing.T) {
	c := startEchoCluster(t)
	client := testingv1.NewEchoRemoteClient(c.inv)
	ctx := testContext(t)
	results, err := client.WhoamiAll(ctx, &testingv1.WhoamiRequest{Note: "all"})
	if err != nil {
		t.Fatal(err)
	}
	if len(results) != 3 {
		t.Fatalf("%d results, want 3", len(results))
	}
	for i, r := range results {
		if r.Err != nil {
			t.Fatalf("%s: %v", r.ServerID, r.Err)
		}
		if r.ServerID != c.inv.ids[i] || r.Response.GetServerId() != r.ServerID || r.Response.GetNote() != "all" {
			t.Errorf("result %d: %s answered %v", i, r.ServerID, r.Response)
		}
	}
	sums, err := client.AddAll(ctx, &testingv1.AddRequest{A: 2, B: 3})
	if err != nil || len(sums) != 3 {
		t.Fatalf("AddAll: %v, %v", sums, err)
	}
	for _, r := range sums {
		if r.Err != nil || r.Response.GetSum() != 5 {
			t.Errorf("%s: %v, %v", r.ServerID, r.Response, r.Err)
		}
	}
}

func TestGeneratedRemoteStoppedServer(t *testing.T) {
	c := startEchoCluster(t)
	client := testingv1.NewEchoRemoteClient(c.inv)
	c.servers["echo-2"].Close()

	ctx := testContext(t)
	start := time.Now()
	_, err := client.WhoamiTo(ctx, "echo-2", &testingv1.WhoamiRequest{})
	if err == nil {
		t.Fatal("a call to a stopped server succeeded")
	}
	if ctx.Err() != nil {
		t.Fatalf("a call to a stopped server hung until the deadline: %v", err)
	}
	t.Logf("stopped server: %v after %v", err, time.Since(start))

	results, err := client.WhoamiAll(ctx, &testingv1.WhoamiRequest{})
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range results {
		if (r.ServerID == "echo-2") != (r.Err != nil) {
			t.Errorf("%s: response %v, err %v", r.ServerID, r.Response, r.Err)
		}
	}
}

// genPusher is a runtime.RoutePusher that records what it is asked to push.
type genPusher struct {
	mu     sync.Mutex
	pushed []genPushed
}

func (p *genPusher) PushMessage(_ context.Context, route string, msg proto.Message) ([]string, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.pushed = append(p.pushed, genPushed{route, msg})
	return nil, nil
}

// The typed push routes only accept their own message type: these
// assignments do not compile if the generated types are wrong.
var (
	_ func(context.Context, runtime.RoutePusher, *testingv1.EchoEvent) ([]string, error) = testingv1.EchoPushOnEcho.ToGroup
	_ func(context.Context, runtime.RoutePusher, *testingv1.Notice) ([]string, error)    = testingv1.EchoPushOnNotice.ToGroup
	_ func(context.Context, runtime.Session, *testingv1.Notice) error                    = testingv1.EchoPushOnNotice.ToSession
)

func TestGeneratedPushRoutes(t *testing.T) {
	ctx := context.Background()
	var p genPusher
	ev := &testingv1.EchoEvent{From: "alice", Text: "hi"}
	if _, err := testingv1.EchoPushOnEcho.ToGroup(ctx, &p, ev); err != nil {
		t.Fatal(err)
	}
	notice := &testingv1.Notice{Text: "maintenance", At: 1700000000000}
	if _, err := testingv1.EchoPushOnNotice.ToGroup(ctx, &p, notice); err != nil {
		t.Fatal(err)
	}
	if len(p.pushed) != 2 ||
		p.pushed[0].route != "onEcho" || p.pushed[0].msg != ev ||
		p.pushed[1].route != "notice" || p.pushed[1].msg != notice {
		t.Errorf("pushed %v", p.pushed)
	}

	s := &genSession{}
	if err := testingv1.EchoPushOnNotice.ToSession(ctx, s, notice); err != nil {
		t.Fatal(err)
	}
	if len(s.sent) != 1 || s.sent[0].route != "notice" || s.sent[0].msg != notice {
		t.Errorf("sent %v", s.sent)
	}
}
