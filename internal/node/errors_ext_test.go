package node_test

import (
	"context"
	"errors"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"connectrpc.com/connect"
	"google.golang.org/protobuf/types/known/structpb"

	sysv1 "github.com/pomelo-go/pomelo/gen/pomelo/sys/v1"
	"github.com/pomelo-go/pomelo/gen/pomelo/sys/v1/sysv1connect"
	testingv1 "github.com/pomelo-go/pomelo/gen/pomelo/testing/v1"
	"github.com/pomelo-go/pomelo/internal/clustertest"
	"github.com/pomelo-go/pomelo/internal/server"
	"github.com/pomelo-go/pomelo/runtime"
	"github.com/pomelo-go/pomelo/runtime/client"
	"github.com/pomelo-go/pomelo/runtime/cluster"
	"github.com/pomelo-go/pomelo/runtime/session"
	"github.com/pomelo-go/pomelo/runtime/testkit"
)

// errRoomFull is an application-defined named error with its own code.
var errRoomFull = runtime.DefineError(1001, "ROOM_FULL")

// secretText is an internal error text that must never reach a client.
const secretText = "db: connection refused (user=admin password=hunter2)"

// failingRemote serves the testing remote service on "echo" servers: Whoami
// fails as its note says.
type failingRemote struct {
	testingv1.UnimplementedEchoRemoteServer
	id string
}

func (r failingRemote) Whoami(_ context.Context, req *testingv1.WhoamiRequest) (*testingv1.WhoamiResponse, error) {
	switch req.GetNote() {
	case "secret":
		return nil, errors.New(secretText)
	case "panic":
		panic(secretText)
	case "named":
		return nil, runtime.Errorf(errRoomFull, "room %s is full", r.id)
	}
	return &testingv1.WhoamiResponse{ServerId: r.id}, nil
}

// errorCluster is a frontend, a chat backend and an echo backend, each
// logging to its own buffer.
type errorCluster struct {
	*clustertest.Cluster
	mu   sync.Mutex
	logs map[string]*testkit.LogBuffer // by server id
}

func (ec *errorCluster) log(id string) *testkit.LogBuffer {
	ec.mu.Lock()
	defer ec.mu.Unlock()
	return ec.logs[id]
}

// startErrorCluster starts the cluster. chat.h.secret fails with the
// secret; chat.h.remote calls Whoami on the echo server named by "to" with
// the note "note" and fails as it does.
func startErrorCluster(t *testing.T, servers ...clustertest.Spec) *errorCluster {
	ec := &errorCluster{logs: map[string]*testkit.LogBuffer{}}
	ec.Cluster = clustertest.Start(t, clustertest.Options{
		Servers: servers,
		Configure: func(cfg *server.Config) {
			b := &testkit.LogBuffer{}
			ec.mu.Lock()
			ec.logs[cfg.ID] = b
			ec.mu.Unlock()
			cfg.Logger = b.Logger()
		},
		Setup: func(m *clustertest.Member) error {
			switch m.Info.Type {
			case "chat":
				handle(t, m.Server, "chat.h.secret", func(context.Context, runtime.Session, *structpb.Struct) (*structpb.Struct, error) {
					return nil, errors.New(secretText)
				})
				handle(t, m.Server, "chat.h.named", func(context.Context, runtime.Session, *structpb.Struct) (*structpb.Struct, error) {
					return nil, runtime.Errorf(errRoomFull, "room %s is full", "r1")
				})
				echo := testingv1.NewEchoRemoteClient(m.Node)
				handle(t, m.Server, "chat.h.remoteis", func(ctx context.Context, _ runtime.Session, in *structpb.Struct) (*structpb.Struct, error) {
					_, err := echo.WhoamiTo(ctx, str(in, "to"), &testingv1.WhoamiRequest{Note: "named"})
					return obj(map[string]any{"is": errors.Is(err, errRoomFull)}), nil
				})
				handle(t, m.Server, "chat.h.remote", func(ctx context.Context, _ runtime.Session, in *structpb.Struct) (*structpb.Struct, error) {
					res, err := echo.WhoamiTo(ctx, str(in, "to"), &testingv1.WhoamiRequest{Note: str(in, "note")})
					if err != nil {
						return nil, err
					}
					return obj(map[string]any{"server": res.GetServerId()}), nil
				})
			case "echo":
				return testingv1.RegisterEchoRemoteServer(m.Server, failingRemote{id: m.Info.ID})
			case "connector":
				m.Node.RegisterBroadcastFilter("panic", func(*session.Session, []byte) bool { panic(secretText) })
			}
			return nil
		},
	})
	return ec
}

// requestError sends a request that must fail and returns its error.
func requestError(t *testing.T, c *client.Client, route string, in map[string]any) *runtime.Error {
	t.Helper()
	_, err := tryCall(c, route, in)
	var e *runtime.Error
	if !errors.As(err, &e) {
		t.Fatalf("%s: err = %v, want an error response", route, err)
	}
	return e
}

// onlyRecord returns the one record of logs holding s.
func onlyRecord(t *testing.T, logs *testkit.LogBuffer, s string) map[string]any {
	t.Helper()
	logs.Wait(s, 1)
	found := logs.Matching(s)
	if len(found) != 1 {
		t.Fatalf("%d log records hold %q, want 1: %v", len(found), s, found)
	}
	return found[0]
}

func checkGeneric(t *testing.T, what string, e *runtime.Error, kind *runtime.Error) {
	t.Helper()
	if !errors.Is(e, kind) {
		t.Errorf("%s answered %+v, want %s", what, e, kind.Name)
	}
	for _, leak := range []string{"hunter2", "db:", "127.0.0.1", "dial", "echo-", "chat-"} {
		if strings.Contains(e.Message, leak) {
			t.Errorf("%s answered %q: the client sees %q", what, e.Message, leak)
		}
	}
}

func TestForwardedHandlerErrorIsGenericForTheClientAndLoggedOnTheBackend(t *testing.T) {
	ec := startErrorCluster(t, clustertest.Spec{Type: "connector", Frontend: true}, clustertest.Spec{Type: "chat"})
	c := dial(t, ec.Members("connector")[0])
	checkGeneric(t, "forwarded handler error", requestError(t, c, "chat.h.secret", nil), runtime.ErrInternal)

	rec := onlyRecord(t, ec.log("chat-1"), "hunter2")
	for k, v := range map[string]any{"route": "chat.h.secret", "server": "chat-1", "code": runtime.ErrInternal.Name, "uid": ""} {
		if rec[k] != v {
			t.Errorf("backend log record %s = %v, want %v (record %v)", k, rec[k], v, rec)
		}
	}
	if _, ok := rec["session"]; !ok {
		t.Errorf("backend log record has no session: %v", rec)
	}
	if n := ec.log("connector-1").Count("request failed"); n != 0 {
		t.Errorf("the frontend logged the backend's failure again (%d records)", n)
	}
}

func TestRemoteHandlerErrorIsGenericForTheCallersClient(t *testing.T) {
	ec := startErrorCluster(t, clustertest.Spec{Type: "connector", Frontend: true}, clustertest.Spec{Type: "chat"}, clustertest.Spec{Type: "echo"})
	c := dial(t, ec.Members("connector")[0])
	e := requestError(t, c, "chat.h.remote", map[string]any{"to": "echo-1", "note": "secret"})
	checkGeneric(t, "remote handler error", e, runtime.ErrInternal)

	rec := onlyRecord(t, ec.log("echo-1"), "hunter2")
	if rec["procedure"] != testingv1.EchoRemoteWhoamiProcedure || rec["server"] != "echo-1" || rec["code"] != runtime.ErrInternal.Name {
		t.Errorf("remote server's log record %v lacks the procedure, server or code", rec)
	}
	for _, id := range []string{"connector-1", "chat-1"} {
		if n := ec.log(id).Count("hunter2"); n != 0 {
			t.Errorf("%s logged the remote server's detail (%d records)", id, n)
		}
	}
}

func TestNamedErrorsMatchAcrossAForwardAndARemoteCall(t *testing.T) {
	ec := startErrorCluster(t, clustertest.Spec{Type: "connector", Frontend: true}, clustertest.Spec{Type: "chat"}, clustertest.Spec{Type: "echo"})
	c := dial(t, ec.Members("connector")[0])
	// Handler on chat-1, forwarded by connector-1, decoded by the Go client.
	if e := requestError(t, c, "chat.h.named", nil); !errors.Is(e, errRoomFull) || e.Message != "room r1 is full" {
		t.Errorf("forwarded named error reached the client as %+v, want %s with its message", e, errRoomFull.Name)
	}
	// Remote on echo-1 called by chat-1: matched in the caller's handler...
	if res := call(t, c, "chat.h.remoteis", map[string]any{"to": "echo-1"}); !res.Fields["is"].GetBoolValue() {
		t.Errorf("the remote's named error does not match %s in the calling handler: %v", errRoomFull.Name, res)
	}
	// ...and, returned as is, by the client of the caller.
	if e := requestError(t, c, "chat.h.remote", map[string]any{"to": "echo-1", "note": "named"}); !errors.Is(e, errRoomFull) || e.Message != "room echo-1 is full" {
		t.Errorf("remote named error reached the client as %+v, want %s with its message", e, errRoomFull.Name)
	}
}

func TestPanickingRemoteHandlerAnswersInternalAndIsLoggedWithItsStack(t *testing.T) {
	ec := startErrorCluster(t, clustertest.Spec{Type: "connector", Frontend: true}, clustertest.Spec{Type: "chat"}, clustertest.Spec{Type: "echo"})
	chat := ec.Members("chat")[0]
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_, err := testingv1.NewEchoRemoteClient(chat.Node).WhoamiTo(ctx, "echo-1", &testingv1.WhoamiRequest{Note: "panic"})
	var e *runtime.Error
	if !errors.As(err, &e) || !errors.Is(err, runtime.ErrInternal) || strings.Contains(e.Message, "hunter2") {
		t.Fatalf("the caller got %v, want INTERNAL with a generic message", err)
	}
	rec := onlyRecord(t, ec.log("echo-1"), "hunter2")
	if rec["procedure"] != testingv1.EchoRemoteWhoamiProcedure || !strings.Contains(rec["stack"].(string), "errors_ext_test.go") {
		t.Errorf("panic log record %v lacks the procedure or the stack", rec)
	}

	// The client of a request that made the call gets INTERNAL too.
	c := dial(t, ec.Members("connector")[0])
	checkGeneric(t, "request whose remote call panicked", requestError(t, c, "chat.h.remote", map[string]any{"to": "echo-1", "note": "panic"}), runtime.ErrInternal)

	// The remote server survived and still answers.
	if got := call(t, c, "chat.h.remote", map[string]any{"to": "echo-1"}); str(got, "server") != "echo-1" {
		t.Errorf("after the panics: %v", got)
	}
}

// deadServer returns a server of serverType in the membership whose RPC
// port has nobody listening.
func deadServer(t *testing.T, id, serverType string) cluster.ServerInfo {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := ln.Addr().(*net.TCPAddr).Port
	ln.Close()
	return cluster.ServerInfo{ID: id, Type: serverType, Host: "127.0.0.1", RPCPort: port}
}

func TestDeadServerAnswersHoldNoAddress(t *testing.T) {
	ec := startErrorCluster(t, clustertest.Spec{Type: "connector", Frontend: true}, clustertest.Spec{Type: "chat"})
	deadEcho := deadServer(t, "echo-9", "echo")
	ec.Membership.Add(deadEcho)
	c := dial(t, ec.Members("connector")[0])

	// A remote call to a server that is down.
	e := requestError(t, c, "chat.h.remote", map[string]any{"to": "echo-9"})
	checkGeneric(t, "remote call to a dead server", e, runtime.ErrUnavailable)
	if n := ec.log("chat-1").Wait(deadEcho.RPCAddr(), 1); n != 1 {
		t.Errorf("the caller logged the dead server's address %d times, want 1", n)
	}

	// A forwarded request to a backend that is down.
	ec.Stop("chat-1")
	deadChat := deadServer(t, "chat-9", "chat")
	ec.Membership.Add(deadChat)
	e = requestError(t, c, "chat.h.secret", nil)
	checkGeneric(t, "request to a dead backend", e, runtime.ErrUnavailable)
	if n := ec.log("connector-1").Wait(deadChat.RPCAddr(), 1); n == 0 {
		t.Errorf("the frontend did not log the dead backend's address")
	}
}

func TestPanickingSysHandlerAnswersInternalAndTheFrontendSurvives(t *testing.T) {
	ec := startErrorCluster(t, clustertest.Spec{Type: "connector", Frontend: true}, clustertest.Spec{Type: "chat"})
	dial(t, ec.Members("connector")[0]) // a session for the filter to see
	chat := ec.Members("chat")[0].Node
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	err := chat.Broadcast(ctx, "connector", "onNews", obj(nil), runtime.BroadcastOptions{Filter: "panic"})
	if !errors.Is(err, runtime.ErrInternal) || strings.Contains(err.Error(), "hunter2") {
		t.Fatalf("broadcast through a panicking filter: err = %v, want INTERNAL with a generic message", err)
	}
	rec := onlyRecord(t, ec.log("connector-1"), "hunter2")
	if rec["procedure"] != sysv1connect.ChannelRemoteBroadcastProcedure || !strings.Contains(rec["stack"].(string), "errors_ext_test.go") {
		t.Errorf("panic log record %v lacks the procedure or the stack", rec)
	}
	if err := chat.Broadcast(ctx, "connector", "onNews", obj(nil), runtime.BroadcastOptions{}); err != nil {
		t.Errorf("after the panic: %v", err)
	}
}

// bearer adds the cluster secret to requests, as servers do.
type bearer struct{ secret string }

func (b bearer) RoundTrip(r *http.Request) (*http.Response, error) {
	r = r.Clone(r.Context())
	r.Header.Set("Authorization", "Bearer "+b.secret)
	return http.DefaultTransport.RoundTrip(r)
}

func TestPushWithoutPayloadAnswersBadRequest(t *testing.T) {
	ec := startErrorCluster(t, clustertest.Spec{Type: "connector", Frontend: true})
	fe := ec.Members("connector")[0]
	dial(t, fe)
	cl := sysv1connect.NewChannelRemoteClient(&http.Client{Transport: bearer{"testkit-secret"}}, "http://"+fe.Info.RPCAddr(),
		connect.WithInterceptors(runtime.ErrorInterceptor()))
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if _, err := cl.PushMessage(ctx, connect.NewRequest(&sysv1.PushMessageRequest{Route: "onNews", Sids: []uint64{1}})); !errors.Is(err, runtime.ErrBadRequest) {
		t.Errorf("push without payload: err = %v, want BAD_REQUEST", err)
	}
	if _, err := cl.Broadcast(ctx, connect.NewRequest(&sysv1.BroadcastRequest{Route: "onNews"})); !errors.Is(err, runtime.ErrBadRequest) {
		t.Errorf("broadcast without payload: err = %v, want BAD_REQUEST", err)
	}
	if n := ec.log("connector-1").Count("panicked"); n != 0 {
		t.Errorf("%d panics logged", n)
	}
}
