package node_test

import (
	"context"
	"testing"
	"time"

	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"

	testingv1 "github.com/pomelo-go/pomelo/gen/pomelo/testing/v1"
	"github.com/pomelo-go/pomelo/internal/clustertest"
	"github.com/pomelo-go/pomelo/internal/node"
	"github.com/pomelo-go/pomelo/internal/server"
	"github.com/pomelo-go/pomelo/internal/tracing"
	"github.com/pomelo-go/pomelo/runtime"
	"github.com/pomelo-go/pomelo/runtime/client"
)

func TestBothForwardModesCarryTheTraceToTheBackend(t *testing.T) {
	for _, mode := range []node.ForwardMode{node.ForwardStream, node.ForwardUnary} {
		exp := tracetest.NewInMemoryExporter()
		tp := sdktrace.NewTracerProvider(sdktrace.WithSyncer(exp))
		c := clustertest.Start(t, clustertest.Options{
			Servers: []clustertest.Spec{{Type: "connector", Frontend: true}, {Type: "echo"}},
			Configure: func(cfg *server.Config) {
				tr, err := tracing.New(tp, cfg.ID)
				if err != nil {
					t.Fatal(err)
				}
				cfg.Tracer = tr
			},
			Setup: func(m *clustertest.Member) error {
				if m.Info.Type == "echo" {
					return testingv1.RegisterEchoHandlerServer(m.Server, benchEcho{})
				}
				return nil
			},
		})
		fe := c.Members("connector")[0]
		fe.Node.SetForwardMode(mode)
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		cl, err := client.Config{Serializer: runtime.Protobuf}.Dial(ctx, fe.TCPURL())
		if err != nil {
			t.Fatal(err)
		}
		if _, err := testingv1.NewEchoHandlerClient(cl).Echo(ctx, &testingv1.EchoRequest{Text: "x"}); err != nil {
			t.Fatal(err)
		}
		cl.Close()
		cancel()
		c.Close() // every span has ended
		var fwd, handle []tracetest.SpanStub
		for _, s := range exp.GetSpans() {
			switch s.Name {
			case tracing.SpanForward:
				fwd = append(fwd, s)
			case tracing.SpanHandle:
				handle = append(handle, s)
			case "pomelo.sys.v1.MsgRemote/ForwardMessage", "pomelo.sys.v1.MsgRemote/Forward":
				t.Fatalf("mode %v: the forward call has a span of its own", mode)
			}
		}
		if len(fwd) != 1 || len(handle) != 1 {
			t.Fatalf("mode %v: %d forward spans, %d handler spans", mode, len(fwd), len(handle))
		}
		if handle[0].Parent.SpanID() != fwd[0].SpanContext.SpanID() || handle[0].SpanContext.TraceID() != fwd[0].SpanContext.TraceID() {
			t.Fatalf("mode %v: handler span's parent %v, forward span %v", mode, handle[0].Parent, fwd[0].SpanContext)
		}
		tp.Shutdown(context.Background())
	}
}
