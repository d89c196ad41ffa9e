package pomelo_test

import (
	"context"
	"testing"
	"time"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/codes"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"
	"google.golang.org/protobuf/types/known/structpb"

	pomelo "github.com/pomelo-go/pomelo"
	testingv1 "github.com/pomelo-go/pomelo/gen/pomelo/testing/v1"
	"github.com/pomelo-go/pomelo/runtime"
	"github.com/pomelo-go/pomelo/runtime/client"
	"github.com/pomelo-go/pomelo/runtime/testkit"
)

// whoami serves EchoRemote on the third server of the tracing tests.
type whoami struct {
	testingv1.UnimplementedEchoRemoteServer
	id string
}

func (w whoami) Whoami(_ context.Context, req *testingv1.WhoamiRequest) (*testingv1.WhoamiResponse, error) {
	return &testingv1.WhoamiResponse{ServerId: w.id, Note: req.Note}, nil
}

// startTraceCluster starts a connector, a "room" backend whose room.h.ask
// calls EchoRemote.Whoami on an "echo" server, and whose room.h.fail fails
// with NOT_FOUND. tp is every server's Config.TracerProvider.
func startTraceCluster(t *testing.T, tp trace.TracerProvider) (*testkit.Cluster, *client.Client) {
	t.Helper()
	c := testkit.Start(t, testkit.Config{
		Servers: []testkit.Spec{{Type: "connector", Frontend: true}, {Type: "room"}, {Type: "echo"}},
		Configure: func(cfg *pomelo.Config) {
			cfg.Logger = quiet
			cfg.TracerProvider = tp
		},
		Setup: func(m *testkit.Member) error {
			switch m.Info.Type {
			case "echo":
				return testingv1.RegisterEchoRemoteServer(m.App, whoami{id: m.Info.ID})
			case "room":
				app := m.App
				testkit.HandleStruct(t, app, "room.h.ask", func(ctx context.Context, s runtime.Session, in *structpb.Struct) (*structpb.Struct, error) {
					who, err := testingv1.NewEchoRemoteClient(app).Whoami(ctx, &testingv1.WhoamiRequest{Note: "n"})
					if err != nil {
						return nil, err
					}
					return testkit.Struct(map[string]any{"server": who.ServerId}), nil
				})
				testkit.HandleStruct(t, app, "room.h.push", func(ctx context.Context, s runtime.Session, in *structpb.Struct) (*structpb.Struct, error) {
					if err := s.Bind(ctx, "alice"); err != nil {
						return nil, err
					}
					if _, err := testingv1.EchoPushOnEcho.ToUIDs(ctx, app, []string{"alice"}, &testingv1.EchoEvent{Text: "hi"}); err != nil {
						return nil, err
					}
					return testkit.Struct(nil), nil
				})
				testkit.HandleStruct(t, app, "room.h.fail", func(ctx context.Context, s runtime.Session, in *structpb.Struct) (*structpb.Struct, error) {
					return nil, runtime.Errorf(runtime.ErrNotFound, "no such room (internal detail)")
				})
			}
			return nil
		},
	})
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	cl, err := client.Dial(ctx, c.Members("connector")[0].TCPURL())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cl.Close() })
	return c, cl
}

// waitSpans waits until the exporter holds a span named name with route
// attribute route (the frontend ends its span after answering, so it can
// arrive after the answer) and returns every span.
func waitSpans(t *testing.T, exp *tracetest.InMemoryExporter, name, route string) tracetest.SpanStubs {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		spans := exp.GetSpans()
		for _, s := range spans {
			if s.Name == name && attr(s, "pomelo.route") == route {
				return spans
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("no %s span of %s among %d spans", name, route, len(spans))
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func attr(s tracetest.SpanStub, key string) string {
	for _, kv := range s.Attributes {
		if string(kv.Key) == key {
			return kv.Value.Emit()
		}
	}
	return ""
}

// only returns the one span matching keep, failing the test unless there
// is exactly one.
func only(t *testing.T, spans tracetest.SpanStubs, what string, keep func(tracetest.SpanStub) bool) tracetest.SpanStub {
	t.Helper()
	var out []tracetest.SpanStub
	for _, s := range spans {
		if keep(s) {
			out = append(out, s)
		}
	}
	if len(out) != 1 {
		t.Fatalf("%d %s spans, want 1", len(out), what)
	}
	return out[0]
}

func TestForwardedRequestCallingARemoteIsOneConnectedTrace(t *testing.T) {
	exp := tracetest.NewInMemoryExporter()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSyncer(exp))
	defer tp.Shutdown(context.Background())
	c, cl := startTraceCluster(t, tp)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	out := &structpb.Struct{}
	if err := cl.Request(ctx, "room.h.ask", testkit.Struct(map[string]any{"secret": "body-text"}), out); err != nil {
		t.Fatal(err)
	}
	if out.Fields["server"].GetStringValue() != c.Members("echo")[0].Info.ID {
		t.Fatalf("answer %v", out)
	}
	spans := waitSpans(t, exp, "pomelo.request", "room.h.ask")

	front := only(t, spans, "frontend request", func(s tracetest.SpanStub) bool { return s.Name == "pomelo.request" })
	fwd := only(t, spans, "forward", func(s tracetest.SpanStub) bool { return s.Name == "pomelo.forward" })
	handle := only(t, spans, "backend handler", func(s tracetest.SpanStub) bool { return s.Name == "pomelo.handle" })
	callClient := only(t, spans, "remote client", func(s tracetest.SpanStub) bool {
		return s.Name == "pomelo.testing.v1.EchoRemote/Whoami" && s.SpanKind == trace.SpanKindClient
	})
	callServer := only(t, spans, "remote server", func(s tracetest.SpanStub) bool {
		return s.Name == "pomelo.testing.v1.EchoRemote/Whoami" && s.SpanKind == trace.SpanKindServer
	})

	if front.SpanKind != trace.SpanKindServer || front.Parent.IsValid() {
		t.Fatalf("frontend span: kind %v, parent %v; want a server root span", front.SpanKind, front.Parent)
	}
	id := front.SpanContext.TraceID()
	for _, s := range []tracetest.SpanStub{fwd, handle, callClient, callServer} {
		if s.SpanContext.TraceID() != id {
			t.Fatalf("span %s (%v) is in trace %v, not the request's %v", s.Name, s.SpanKind, s.SpanContext.TraceID(), id)
		}
	}
	links := []struct {
		child, parent tracetest.SpanStub
	}{{fwd, front}, {handle, fwd}, {callClient, handle}, {callServer, callClient}}
	for _, l := range links {
		if l.child.Parent.SpanID() != l.parent.SpanContext.SpanID() {
			t.Fatalf("%s (%v) has parent %v, want %s's %v", l.child.Name, l.child.SpanKind, l.child.Parent.SpanID(), l.parent.Name, l.parent.SpanContext.SpanID())
		}
	}
	if !handle.Parent.IsRemote() || !callServer.Parent.IsRemote() {
		t.Fatal("the backend's and the remote's spans should continue a trace from another server")
	}

	connector, room := c.Members("connector")[0].Info.ID, c.Members("room")[0].Info.ID
	if attr(front, "pomelo.server.id") != connector || attr(handle, "pomelo.server.id") != room || attr(fwd, "pomelo.target.id") != room {
		t.Fatalf("servers: frontend %q, handler %q, forward target %q", attr(front, "pomelo.server.id"), attr(handle, "pomelo.server.id"), attr(fwd, "pomelo.target.id"))
	}
	if attr(front, "pomelo.session.id") == "" || attr(front, "pomelo.session.id") != attr(handle, "pomelo.session.id") {
		t.Fatalf("session ids: frontend %q, handler %q", attr(front, "pomelo.session.id"), attr(handle, "pomelo.session.id"))
	}
	for _, s := range spans {
		for _, kv := range s.Attributes {
			if v := kv.Value.Emit(); v == "body-text" {
				t.Fatalf("span %s records the request body in %s", s.Name, kv.Key)
			}
		}
		if s.Status.Code == codes.Error {
			t.Fatalf("span %s failed: %v", s.Name, s.Status)
		}
	}
}

func TestFailedForwardedRequestSetsTheStatusToTheErrorName(t *testing.T) {
	exp := tracetest.NewInMemoryExporter()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSyncer(exp))
	defer tp.Shutdown(context.Background())
	_, cl := startTraceCluster(t, tp)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := cl.Request(ctx, "room.h.fail", testkit.Struct(nil), &structpb.Struct{}); err == nil {
		t.Fatal("room.h.fail succeeded")
	}
	spans := waitSpans(t, exp, "pomelo.request", "room.h.fail")
	for _, name := range []string{"pomelo.request", "pomelo.forward", "pomelo.handle"} {
		s := only(t, spans, name, func(s tracetest.SpanStub) bool { return s.Name == name })
		if s.Status.Code != codes.Error || s.Status.Description != "NOT_FOUND" || attr(s, "pomelo.error") != "NOT_FOUND" {
			t.Fatalf("%s: status %v, pomelo.error %q; want Error NOT_FOUND", name, s.Status, attr(s, "pomelo.error"))
		}
	}
}

func TestTracingOffRecordsNothingAndRequestsWork(t *testing.T) {
	// Even with a recording global provider, servers without
	// Config.TracerProvider make no span.
	exp := tracetest.NewInMemoryExporter()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSyncer(exp))
	defer tp.Shutdown(context.Background())
	prev := otel.GetTracerProvider()
	otel.SetTracerProvider(tp)
	defer otel.SetTracerProvider(prev)

	c, cl := startTraceCluster(t, nil)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	out := &structpb.Struct{}
	for range 3 {
		if err := cl.Request(ctx, "room.h.ask", testkit.Struct(nil), out); err != nil {
			t.Fatal(err)
		}
	}
	if out.Fields["server"].GetStringValue() != c.Members("echo")[0].Info.ID {
		t.Fatalf("answer %v", out)
	}
	if err := cl.Request(ctx, "room.h.fail", testkit.Struct(nil), out); err == nil {
		t.Fatal("room.h.fail succeeded")
	}
	c.Close() // every server has finished its requests
	if n := len(exp.GetSpans()); n != 0 {
		t.Fatalf("%d spans recorded with tracing off", n)
	}
}

func TestPushFromABackendHandlerIsInTheRequestsTrace(t *testing.T) {
	exp := tracetest.NewInMemoryExporter()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSyncer(exp))
	defer tp.Shutdown(context.Background())
	c, cl := startTraceCluster(t, tp)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := cl.Request(ctx, "room.h.push", testkit.Struct(nil), &structpb.Struct{}); err != nil {
		t.Fatal(err)
	}
	spans := waitSpans(t, exp, "pomelo.request", "room.h.push")
	handle := only(t, spans, "backend handler", func(s tracetest.SpanStub) bool { return s.Name == "pomelo.handle" })
	push := only(t, spans, "push", func(s tracetest.SpanStub) bool { return s.Name == "pomelo.push" })
	deliver := only(t, spans, "push delivery", func(s tracetest.SpanStub) bool {
		return s.Name == "pomelo.push.deliver" && s.SpanKind == trace.SpanKindConsumer
	})
	bind := only(t, spans, "bind", func(s tracetest.SpanStub) bool {
		return s.Name == "pomelo.sys.v1.SessionRemote/Bind" && s.SpanKind == trace.SpanKindClient
	})
	if push.Parent.SpanID() != handle.SpanContext.SpanID() || bind.Parent.SpanID() != handle.SpanContext.SpanID() {
		t.Fatalf("push's parent %v, bind's %v; want the handler's %v", push.Parent.SpanID(), bind.Parent.SpanID(), handle.SpanContext.SpanID())
	}
	if deliver.SpanContext.TraceID() != handle.SpanContext.TraceID() || deliver.Parent.SpanID() != push.SpanContext.SpanID() {
		t.Fatal("the frontend's delivery of the push is not a child of the push in the request's trace")
	}
	if attr(push, "pomelo.target.id") != c.Members("connector")[0].Info.ID || attr(push, "pomelo.push.uids") != "1" {
		t.Fatalf("push attributes %v", push.Attributes)
	}
}
