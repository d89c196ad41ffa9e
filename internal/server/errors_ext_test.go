package server_test

import (
	"context"
	"errors"
	"io"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"connectrpc.com/connect"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/emptypb"
	"google.golang.org/protobuf/types/known/structpb"

	sysv1 "github.com/pomelo-go/pomelo/gen/pomelo/sys/v1"
	"github.com/pomelo-go/pomelo/gen/pomelo/sys/v1/sysv1connect"
	"github.com/pomelo-go/pomelo/internal/server"
	"github.com/pomelo-go/pomelo/runtime"
	"github.com/pomelo-go/pomelo/runtime/client"
	"github.com/pomelo-go/pomelo/runtime/testkit"
)

// secretText is an internal error text that must never reach a client.
const secretText = "db: connection refused (user=admin password=hunter2)"

// failing routes of the "fail" frontend, by what their handler returns.
var failing = map[string]func() error{
	"fail.h.secret":  func() error { return errors.New(secretText) },
	"fail.h.wrapped": func() error { return runtime.Errorf(runtime.ErrInternal, "query failed: %s", secretText) },
	"fail.h.unavailable": func() error {
		return runtime.Errorf(runtime.ErrUnavailable, "chat-1: dial tcp 127.0.0.1:5330: connect: connection refused")
	},
	"fail.h.app":      func() error { return runtime.NewError(1001, "not enough gold") },
	"fail.h.notbound": func() error { return runtime.Errorf(runtime.ErrNotBound, "bind a uid first") },
	"fail.h.panic":    func() error { panic(secretText) },
	"fail.h.named":    func() error { return runtime.Errorf(errRoomFull, "room %q is full", "r1") },
	"fail.h.newer":    func() error { return runtime.Errorf(errNewer, "from a newer server") },
}

// errRoomFull is an application-defined named error; errNewer one whose
// name the client has never heard of.
var (
	errRoomFull = runtime.DefineError(1002, "ROOM_FULL")
	errNewer    = runtime.DefineError(runtime.CodeFrameworkError, "SOMETHING_NEW")
)

// startFailing starts a frontend serving the failing routes, logging to the
// returned buffer.
func startFailing(t *testing.T, expose bool) (*server.Server, *testkit.LogBuffer) {
	t.Helper()
	logs := &testkit.LogBuffer{}
	s, err := server.New(server.Config{ID: "fail-1", Type: "fail", Frontend: true, WSAddr: "127.0.0.1:0",
		Logger: logs.Logger(), ExposeErrorDetails: expose})
	if err != nil {
		t.Fatal(err)
	}
	for route, fn := range failing {
		err := s.RegisterHandler(runtime.HandlerDesc{Route: route, ServerType: "fail", Handle: func(context.Context, runtime.Session, runtime.Serializer, []byte) (proto.Message, error) {
			return nil, fn()
		}})
		if err != nil {
			t.Fatal(err)
		}
	}
	serve(t, s)
	return s, logs
}

func dialFailing(t *testing.T, s *server.Server, cfg client.Config) *client.Client {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	c, err := cfg.Dial(ctx, "ws://"+s.WSAddr().String()+"/")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// requestError sends a request that must fail and returns its error.
func requestError(t *testing.T, c *client.Client, route string) *runtime.Error {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	err := c.Request(ctx, route, &structpb.Struct{}, &structpb.Struct{})
	var e *runtime.Error
	if !errors.As(err, &e) {
		t.Fatalf("%s: err = %v, want an error response", route, err)
	}
	return e
}

// recordWith returns the one record of route (any route when "") holding s,
// failing unless there is exactly one.
func recordWith(t *testing.T, logs *testkit.LogBuffer, route, s string) map[string]any {
	t.Helper()
	logs.Wait(s, 1)
	var found []map[string]any
	for _, r := range logs.Matching(s) {
		if route == "" || r["route"] == route {
			found = append(found, r)
		}
	}
	if len(found) != 1 {
		t.Fatalf("%d log records hold %q, want 1: %v", len(found), s, found)
	}
	return found[0]
}

func TestInternalErrorsReachClientsGenericAndAreLoggedOnce(t *testing.T) {
	s, logs := startFailing(t, false)
	c := dialFailing(t, s, client.Config{})
	for _, tc := range []struct{ route, name, secret, message string }{
		{"fail.h.secret", runtime.ErrInternal.Name, "hunter2", "internal error"},
		{"fail.h.wrapped", runtime.ErrInternal.Name, "hunter2", "internal error"},
		{"fail.h.unavailable", runtime.ErrUnavailable.Name, "127.0.0.1:5330", "service unavailable"},
	} {
		e := requestError(t, c, tc.route)
		if e.Code != 500 || e.Name != tc.name || e.Message != tc.message {
			t.Errorf("%s answered %+v, want %s with the generic message %q", tc.route, e, tc.name, tc.message)
		}
		rec := recordWith(t, logs, tc.route, tc.secret)
		want := map[string]any{"route": tc.route, "server": "fail-1", "code": tc.name, "uid": ""}
		for k, v := range want {
			if rec[k] != v {
				t.Errorf("%s: log record %s = %v, want %v (record %v)", tc.route, k, rec[k], v, rec)
			}
		}
		if _, ok := rec["session"]; !ok {
			t.Errorf("%s: log record has no session: %v", tc.route, rec)
		}
	}
}

func TestApplicationErrorsKeepTheirMessagesAndAreNotLogged(t *testing.T) {
	s, logs := startFailing(t, false)
	c := dialFailing(t, s, client.Config{})
	if e := requestError(t, c, "fail.h.app"); e.Code != 1001 || e.Name != "" || e.Message != "not enough gold" {
		t.Errorf("application error answered %+v", e)
	}
	if e := requestError(t, c, "fail.h.notbound"); e.Name != runtime.ErrNotBound.Name || e.Message != "bind a uid first" {
		t.Errorf("NOT_BOUND answered %+v", e)
	}
	if n := logs.Count("request failed"); n != 0 {
		t.Errorf("%d application errors logged as failures", n)
	}
}

func TestPanickingHandlerIsLoggedOnceWithItsStack(t *testing.T) {
	s, logs := startFailing(t, false)
	c := dialFailing(t, s, client.Config{})
	if e := requestError(t, c, "fail.h.panic"); e.Name != runtime.ErrInternal.Name || strings.Contains(e.Message, "hunter2") {
		t.Errorf("panic answered %+v", e)
	}
	rec := recordWith(t, logs, "", "hunter2")
	if rec["route"] != "fail.h.panic" || !strings.Contains(rec["stack"].(string), "errors_ext_test.go") {
		t.Errorf("panic log record %v lacks the route or the stack", rec)
	}
}

func TestExposeErrorDetailsShowsTheDetailToClients(t *testing.T) {
	s, logs := startFailing(t, true)
	c := dialFailing(t, s, client.Config{})
	if e := requestError(t, c, "fail.h.secret"); e.Name != runtime.ErrInternal.Name || e.Message != secretText {
		t.Errorf("in development mode answered %+v, want the handler's text", e)
	}
	if e := requestError(t, c, "fail.h.unavailable"); !strings.Contains(e.Message, "127.0.0.1:5330") {
		t.Errorf("in development mode answered %+v, want the detail", e)
	}
	recordWith(t, logs, "", "hunter2") // still logged, once
}

func TestFloodOfFailingRequestsLogsBoundedLines(t *testing.T) {
	s, logs := startFailing(t, false)
	c := dialFailing(t, s, client.Config{})
	const requests = 300
	start := time.Now()
	for i := 0; i < requests; i++ {
		requestError(t, c, "fail.h.secret")
	}
	elapsed := time.Since(start)
	// The bucket holds 20 lines and refills 5 per second.
	if n, bound := logs.Count("hunter2"), 20+int(5*elapsed.Seconds())+1; n > bound {
		t.Errorf("%d requests logged %d lines in %v, more than %d", requests, n, elapsed, bound)
	}
	logs.Wait("suppressed", 1)
	var suppressed float64
	for _, r := range logs.Records() {
		if n, ok := r["suppressed"].(float64); ok {
			suppressed += n
		}
	}
	if logged := logs.Count("hunter2"); int(suppressed)+logged < requests {
		t.Errorf("%d lines logged and %v reported suppressed, want %d failures accounted for", logged, suppressed, requests)
	}
}

// panickingSessionRemote panics in a unary and in a streaming sys handler.
type panickingSessionRemote struct {
	sysv1connect.UnimplementedSessionRemoteHandler
}

func (panickingSessionRemote) Bind(context.Context, *connect.Request[sysv1.BindRequest]) (*connect.Response[emptypb.Empty], error) {
	panic(secretText)
}

func (panickingSessionRemote) WatchSessions(context.Context, *connect.BidiStream[sysv1.WatchSessionsRequest, sysv1.SessionEvent]) error {
	panic(secretText)
}

func TestRPCHandlersBuiltWithTheServerOptionsRecoverPanics(t *testing.T) {
	logs := &testkit.LogBuffer{}
	s, err := server.New(server.Config{ID: "rpc-1", Type: "rpc", Logger: logs.Logger()})
	if err != nil {
		t.Fatal(err)
	}
	s.SetRPCHandlerOptions(connect.WithInterceptors(runtime.ErrorInterceptor())) // as the cluster does
	if err := s.MountRPC(sysv1connect.NewSessionRemoteHandler(panickingSessionRemote{}, s.RPCHandlerOptions()...)); err != nil {
		t.Fatal(err)
	}
	hs := httptest.NewUnstartedServer(s.RPCHandler())
	hs.EnableHTTP2 = true
	hs.StartTLS()
	t.Cleanup(hs.Close)
	cl := sysv1connect.NewSessionRemoteClient(hs.Client(), hs.URL, connect.WithInterceptors(runtime.ErrorInterceptor()))
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()

	_, err = cl.Bind(ctx, connect.NewRequest(&sysv1.BindRequest{Sid: 1, Uid: "u"}))
	var e *runtime.Error
	if !errors.As(err, &e) || e.Name != runtime.ErrInternal.Name || strings.Contains(e.Message, "hunter2") {
		t.Errorf("panicking unary handler answered %v, want INTERNAL with a generic message", err)
	}

	st := cl.WatchSessions(ctx)
	if err := st.Send(&sysv1.WatchSessionsRequest{}); err != nil && !errors.Is(err, io.EOF) {
		t.Fatal(err)
	}
	_, err = st.Receive()
	if connect.CodeOf(err) != connect.CodeInternal || strings.Contains(err.Error(), "hunter2") {
		t.Errorf("panicking streaming handler answered %v, want internal with a generic message", err)
	}
	st.CloseRequest()
	st.CloseResponse()

	logs.Wait("hunter2", 2)
	for _, proc := range []string{sysv1connect.SessionRemoteBindProcedure, sysv1connect.SessionRemoteWatchSessionsProcedure} {
		rec := recordWithKey(t, logs, "procedure", proc)
		if !strings.Contains(rec["stack"].(string), "errors_ext_test.go") || !strings.Contains(rec["panic"].(string), "hunter2") {
			t.Errorf("%s: panic log record %v lacks the stack or the panic", proc, rec)
		}
	}
}

// recordWithKey returns the one record whose key k is v.
func recordWithKey(t *testing.T, logs *testkit.LogBuffer, k, v string) map[string]any {
	t.Helper()
	var found []map[string]any
	for _, r := range logs.Records() {
		if r[k] == v {
			found = append(found, r)
		}
	}
	if len(found) != 1 {
		t.Fatalf("%d log records with %s=%s, want 1: %v", len(found), k, v, found)
	}
	return found[0]
}

func TestTheGoClientGetsExactlyTheErrorTheHandlerReturned(t *testing.T) {
	s, _ := startFailing(t, false)
	for _, ser := range []runtime.Serializer{runtime.JSON, runtime.Protobuf} {
		c := dialFailing(t, s, client.Config{Serializer: ser})
		for route, want := range map[string]*runtime.Error{
			"fail.h.app":      runtime.NewError(1001, "not enough gold"),
			"fail.h.named":    runtime.Errorf(errRoomFull, "room %q is full", "r1"),
			"fail.h.newer":    runtime.Errorf(errNewer, "from a newer server"),
			"fail.h.notbound": runtime.Errorf(runtime.ErrNotBound, "bind a uid first"),
			"fail.h.nope":     runtime.Errorf(runtime.ErrUnknownRoute, "no handler for fail.h.nope"),
		} {
			if e := requestError(t, c, route); *e != *want {
				t.Errorf("%s, %s: the client got %+v, want %+v", ser.Name(), route, e, want)
			}
		}
	}
}
