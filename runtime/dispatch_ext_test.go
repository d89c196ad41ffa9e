package runtime_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/structpb"

	testingv1 "github.com/pomelo-go/pomelo/gen/pomelo/testing/v1"
	"github.com/pomelo-go/pomelo/runtime"
)

// genSession is a minimal runtime.Session for tests of generated code.
type genSession struct {
	id       uint64
	frontend string
	uid      string

	mu       sync.Mutex
	settings map[string]string
	sent     []genPushed
}

type genPushed struct {
	route string
	msg   proto.Message
}

var _ runtime.Session = (*genSession)(nil)

func (s *genSession) ID() uint64         { return s.id }
func (s *genSession) FrontendID() string { return s.frontend }
func (s *genSession) UID() string        { return s.uid }

func (s *genSession) Get(key string) (string, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	v, ok := s.settings[key]
	return v, ok
}

func (s *genSession) Set(key, value string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.settings == nil {
		s.settings = make(map[string]string)
	}
	s.settings[key] = value
}

func (s *genSession) Remove(key string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.settings, key)
}

func (s *genSession) Settings() map[string]string {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make(map[string]string, len(s.settings))
	for k, v := range s.settings {
		out[k] = v
	}
	return out
}

func (s *genSession) Push(context.Context, ...string) error { return nil }
func (s *genSession) PushAll(context.Context) error         { return nil }

func (s *genSession) Bind(_ context.Context, uid string) error {
	s.uid = uid
	return nil
}

func (s *genSession) Unbind(context.Context) error {
	s.uid = ""
	return nil
}

func (s *genSession) Kick(context.Context, string) error { return nil }

func (s *genSession) Send(_ context.Context, route string, msg proto.Message) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.sent = append(s.sent, genPushed{route, msg})
	return nil
}

// genEchoHandler implements the generated testing handler service.
type genEchoHandler struct {
	testingv1.UnimplementedEchoHandlerServer

	mu   sync.Mutex
	logs []string
}

func (h *genEchoHandler) Echo(_ context.Context, s runtime.Session, req *testingv1.EchoRequest) (*testingv1.EchoResponse, error) {
	if req.GetText() == "nil" {
		return nil, nil // answered with an empty body, not a typed nil
	}
	n := max(int(req.GetRepeat()), 1)
	return &testingv1.EchoResponse{Code: 200, Text: strings.Repeat(req.GetText(), n)}, nil
}

func (h *genEchoHandler) Sum(_ context.Context, _ runtime.Session, req *testingv1.SumRequest) (*testingv1.SumResponse, error) {
	if len(req.GetValues()) == 0 {
		return nil, runtime.NewError(400, "nothing to add")
	}
	res := &testingv1.SumResponse{Code: 200, Count: uint32(len(req.GetValues()))}
	for _, v := range req.GetValues() {
		res.Sum += v
	}
	return res, nil
}

func (h *genEchoHandler) Log(_ context.Context, s runtime.Session, req *testingv1.LogRequest) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.logs = append(h.logs, fmt.Sprintf("%s %s: %s", s.UID(), req.GetLevel(), req.GetText()))
	return nil
}

func (h *genEchoHandler) Mirror(_ context.Context, _ runtime.Session, req *structpb.Struct) (*structpb.Struct, error) {
	return req, nil
}

func newEchoTable(t *testing.T) (*runtime.HandlerTable, *genEchoHandler) {
	t.Helper()
	table := new(runtime.HandlerTable)
	h := new(genEchoHandler)
	if err := testingv1.RegisterEchoHandlerServer(table, h); err != nil {
		t.Fatal(err)
	}
	return table, h
}

func TestGeneratedHandlerRoutes(t *testing.T) {
	table, _ := newEchoTable(t)
	want := []string{
		"echo.echoHandler.echo",
		"echo.echoHandler.log",
		"echo.echoHandler.mirror",
		"echo.echoHandler.say",
		"echo.echoHandler.sum",
	}
	if got := table.Routes(); strings.Join(got, " ") != strings.Join(want, " ") {
		t.Fatalf("routes = %v, want %v", got, want)
	}
	for _, r := range want {
		d, ok := table.Lookup(r)
		if !ok {
			t.Fatalf("no %s", r)
		}
		if d.ServerType != "echo" {
			t.Errorf("%s: server type %q", r, d.ServerType)
		}
		if d.NotifyOnly != (r == testingv1.EchoHandlerLogRoute) {
			t.Errorf("%s: NotifyOnly = %v", r, d.NotifyOnly)
		}
	}
	if err := testingv1.RegisterEchoHandlerServer(table, new(genEchoHandler)); err == nil {
		t.Error("registering the routes twice did not fail")
	}
}

func TestGeneratedHandlerDispatchJSON(t *testing.T) {
	table, _ := newEchoTable(t)
	ctx := context.Background()
	s := &genSession{id: 1, frontend: "connector-1", uid: "alice"}
	for _, route := range []string{testingv1.EchoHandlerEchoRoute, testingv1.EchoHandlerEchoSayRoute} {
		// Stock clients send extra keys; they are ignored.
		res, err := table.Dispatch(ctx, route, s, runtime.JSON, []byte(`{"text":"hi","repeat":2,"clientVersion":"1.2"}`))
		if err != nil {
			t.Fatalf("%s: %v", route, err)
		}
		echo, ok := res.(*testingv1.EchoResponse)
		if !ok {
			t.Fatalf("%s: response is a %T", route, res)
		}
		if echo.GetText() != "hihi" || echo.GetCode() != 200 {
			t.Errorf("%s: response %v", route, echo)
		}
	}

	// An empty body is an empty request.
	res, err := table.Dispatch(ctx, testingv1.EchoHandlerEchoRoute, s, runtime.JSON, nil)
	if err != nil {
		t.Fatal(err)
	}
	if got := res.(*testingv1.EchoResponse).GetText(); got != "" {
		t.Errorf("empty body echoed %q", got)
	}

	// A method that returns (nil, nil) yields a nil proto.Message, not a
	// typed nil.
	res, err = table.Dispatch(ctx, testingv1.EchoHandlerEchoRoute, s, runtime.JSON, []byte(`{"text":"nil"}`))
	if err != nil || res != nil {
		t.Errorf("(nil, nil) method: got (%#v, %v), want (nil, nil)", res, err)
	}

	res, err = table.Dispatch(ctx, testingv1.EchoHandlerMirrorRoute, s, runtime.JSON, []byte(`{"a":1,"b":[true,"x"],"c":{"d":null}}`))
	if err != nil {
		t.Fatal(err)
	}
	st := res.(*structpb.Struct)
	if st.GetFields()["a"].GetNumberValue() != 1 || st.GetFields()["b"].GetListValue().GetValues()[1].GetStringValue() != "x" {
		t.Errorf("mirror: %v", st)
	}
}

func TestGeneratedHandlerDispatchProtobuf(t *testing.T) {
	table, _ := newEchoTable(t)
	body, err := proto.Marshal(&testingv1.SumRequest{Values: []int64{1, 2, 39}})
	if err != nil {
		t.Fatal(err)
	}
	res, err := table.Dispatch(context.Background(), testingv1.EchoHandlerSumRoute, &genSession{}, runtime.Protobuf, body)
	if err != nil {
		t.Fatal(err)
	}
	sum := res.(*testingv1.SumResponse)
	if sum.GetSum() != 42 || sum.GetCount() != 3 {
		t.Errorf("sum = %v", sum)
	}

	// Application errors come back as they are.
	_, err = table.Dispatch(context.Background(), testingv1.EchoHandlerSumRoute, &genSession{}, runtime.Protobuf, nil)
	var appErr *runtime.Error
	if !errors.As(err, &appErr) || appErr.Code != 400 || appErr.Name != "" {
		t.Errorf("empty sum: err = %v, want the application's code 400", err)
	}
}

func TestGeneratedHandlerDispatchErrors(t *testing.T) {
	table, _ := newEchoTable(t)
	ctx := context.Background()
	s := &genSession{}
	for _, tc := range []struct {
		name string
		ser  runtime.Serializer
		body string
	}{
		{"truncated JSON", runtime.JSON, `{"text":`},
		{"JSON of the wrong type", runtime.JSON, `{"text":12}`},
		{"JSON array", runtime.JSON, `[1,2]`},
		{"bad protobuf", runtime.Protobuf, "\xff\xff\xff"},
	} {
		_, err := table.Dispatch(ctx, testingv1.EchoHandlerEchoRoute, s, tc.ser, []byte(tc.body))
		if !errors.Is(err, runtime.ErrBadRequest) {
			t.Errorf("%s: err = %v, want BAD_REQUEST", tc.name, err)
		}
	}
	_, err := table.Dispatch(ctx, "echo.echoHandler.nope", s, runtime.JSON, nil)
	if !errors.Is(err, runtime.ErrUnknownRoute) {
		t.Errorf("unknown route: err = %v, want UNKNOWN_ROUTE", err)
	}

	// Methods that are not implemented answer UNKNOWN_ROUTE.
	var empty runtime.HandlerTable
	type unimplemented struct {
		testingv1.UnimplementedEchoHandlerServer
	}
	if err := testingv1.RegisterEchoHandlerServer(&empty, unimplemented{}); err != nil {
		t.Fatal(err)
	}
	for _, route := range empty.Routes() {
		_, err := empty.Dispatch(ctx, route, s, runtime.JSON, nil)
		if !errors.Is(err, runtime.ErrUnknownRoute) || !strings.Contains(err.Error(), "is not implemented") {
			t.Errorf("unimplemented %s: err = %v", route, err)
		}
	}
}

func TestGeneratedHandlerNotify(t *testing.T) {
	table, h := newEchoTable(t)
	s := &genSession{uid: "bob"}
	res, err := table.Dispatch(context.Background(), testingv1.EchoHandlerLogRoute, s, runtime.JSON, []byte(`{"level":"info","text":"hello"}`))
	if err != nil || res != nil {
		t.Fatalf("notify: got (%v, %v), want (nil, nil)", res, err)
	}
	if len(h.logs) != 1 || h.logs[0] != "bob info: hello" {
		t.Errorf("logs = %q", h.logs)
	}
}

// genClientConn is a runtime.ClientConn that runs requests through a
// handler table, encoding both ways with a serializer as a connection would.
type genClientConn struct {
	table *runtime.HandlerTable
	ser   runtime.Serializer
	s     runtime.Session
}

func (c *genClientConn) roundTrip(ctx context.Context, route string, req proto.Message) (proto.Message, error) {
	body, err := c.ser.Marshal(nil, req)
	if err != nil {
		return nil, err
	}
	return c.table.Dispatch(runtime.WithSession(ctx, c.s), route, c.s, c.ser, body)
}

func (c *genClientConn) Request(ctx context.Context, route string, req, resp proto.Message) error {
	if d, ok := c.table.Lookup(route); ok && d.NotifyOnly {
		return runtime.Errorf(runtime.ErrBadRequest, "%s is notify-only", route)
	}
	res, err := c.roundTrip(ctx, route, req)
	if err != nil {
		return err
	}
	if res == nil {
		proto.Reset(resp)
		return nil
	}
	b, err := c.ser.Marshal(nil, res)
	if err != nil {
		return err
	}
	return c.ser.Unmarshal(b, resp)
}

func (c *genClientConn) Notify(ctx context.Context, route string, req proto.Message) error {
	_, err := c.roundTrip(ctx, route, req)
	return err
}

func TestGeneratedHandlerClient(t *testing.T) {
	for _, ser := range []runtime.Serializer{runtime.JSON, runtime.Protobuf} {
		t.Run(ser.Name(), func(t *testing.T) {
			table, h := newEchoTable(t)
			client := testingv1.NewEchoHandlerClient(&genClientConn{table: table, ser: ser, s: &genSession{uid: "carol"}})
			ctx := context.Background()

			echo, err := client.Echo(ctx, &testingv1.EchoRequest{Text: "ab", Repeat: 3})
			if err != nil || echo.GetText() != "ababab" {
				t.Fatalf("Echo: %v, %v", echo, err)
			}
			sum, err := client.Sum(ctx, &testingv1.SumRequest{Values: []int64{-1, 5}})
			if err != nil || sum.GetSum() != 4 {
				t.Fatalf("Sum: %v, %v", sum, err)
			}
			if _, err := client.Sum(ctx, &testingv1.SumRequest{}); err == nil {
				t.Fatal("Sum of nothing: no error")
			}
			in, err := structpb.NewStruct(map[string]any{"k": "v", "n": 2.5})
			if err != nil {
				t.Fatal(err)
			}
			out, err := client.Mirror(ctx, in)
			if err != nil || !proto.Equal(in, out) {
				t.Fatalf("Mirror: %v, %v", out, err)
			}
			if err := client.Log(ctx, &testingv1.LogRequest{Level: "warn", Text: "x"}); err != nil {
				t.Fatal(err)
			}
			if err := client.EchoNotify(ctx, &testingv1.EchoRequest{Text: "y"}); err != nil {
				t.Fatal(err)
			}
			if len(h.logs) != 1 || h.logs[0] != "carol warn: x" {
				t.Errorf("logs = %q", h.logs)
			}
		})
	}
}

func TestGeneratedRouteRegistry(t *testing.T) {
	registered := make(map[runtime.RouteInfo]bool)
	for _, in := range runtime.RegisteredRoutes() {
		registered[in] = true
	}
	var tables []runtime.RouteInfo
	tables = append(tables, testingv1.EchoHandlerRoutes...)
	tables = append(tables, testingv1.EchoRemoteRoutes...)
	tables = append(tables, testingv1.EchoPushRoutes...)
	if len(tables) != 5+2+2 {
		t.Errorf("%d testing routes, want 9", len(tables))
	}
	for _, in := range tables {
		if !registered[in] {
			t.Errorf("%+v is not registered", in)
		}
	}
	handlers := runtime.RegisteredRoutesOf(runtime.RouteHandler)
	if !contains(handlers, "echo.echoHandler.say") {
		t.Errorf("handler routes %v lack the alias", handlers)
	}
	if push := runtime.RegisteredRoutesOf(runtime.RoutePush); !contains(push, "onEcho") || !contains(push, "notice") {
		t.Errorf("push routes = %v", push)
	}
	if remote := runtime.RegisteredRoutesOf(runtime.RouteRemote); !contains(remote, "/pomelo.testing.v1.EchoRemote/Whoami") {
		t.Errorf("remote routes = %v", remote)
	}
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// This example registers a generated handler service in a dispatch table and
// dispatches a request to it, as a frontend does with a client's message.
func ExampleHandlerTable_generatedServer() {
	var table runtime.HandlerTable
	// genEchoHandler embeds testingv1.UnimplementedEchoHandlerServer and
	// implements the methods of testingv1.EchoHandlerServer.
	if err := testingv1.RegisterEchoHandlerServer(&table, new(genEchoHandler)); err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println(table.Routes())

	s := &genSession{id: 1, frontend: "connector-1"}
	res, err := table.Dispatch(context.Background(), testingv1.EchoHandlerEchoRoute, s, runtime.JSON, []byte(`{"text":"hi","repeat":2}`))
	if err != nil {
		fmt.Println(err)
		return
	}
	echo := res.(*testingv1.EchoResponse)
	fmt.Println(echo.GetCode(), echo.GetText())

	_, err = table.Dispatch(context.Background(), testingv1.EchoHandlerEchoRoute, s, runtime.JSON, []byte(`{"text":`))
	fmt.Println(errors.Is(err, runtime.ErrBadRequest))
	// Output:
	// [echo.echoHandler.echo echo.echoHandler.log echo.echoHandler.mirror echo.echoHandler.say echo.echoHandler.sum]
	// 200 hihi
	// true
}
