package node_test

import (
	"context"
	"testing"
	"time"

	sdktrace "go.opentelemetry.io/otel/sdk/trace"

	testingv1 "github.com/pomelo-go/pomelo/gen/pomelo/testing/v1"
	"github.com/pomelo-go/pomelo/internal/clustertest"
	"github.com/pomelo-go/pomelo/internal/server"
	"github.com/pomelo-go/pomelo/internal/tracing"
	"github.com/pomelo-go/pomelo/runtime"
	"github.com/pomelo-go/pomelo/runtime/client"
)

// discardExporter drops the spans it is given: traced benchmarks pay for
// making, sampling and batching spans, not for a collector.
type discardExporter struct{}

func (discardExporter) ExportSpans(context.Context, []sdktrace.ReadOnlySpan) error { return nil }
func (discardExporter) Shutdown(context.Context) error                             { return nil }

// BenchmarkForwardTraced is BenchmarkForward's stream variant with tracing
// on in both servers: the OpenTelemetry SDK samples every request (the
// frontend's request and forward spans, the backend's handler span, the
// trace context carried in the forwarded message) and batches the spans to
// an exporter that drops them. -bench=BenchmarkForward runs both.
func BenchmarkForwardTraced(b *testing.B) {
	tp := sdktrace.NewTracerProvider(sdktrace.WithBatcher(discardExporter{}))
	b.Cleanup(func() { tp.Shutdown(context.Background()) })
	c := clustertest.Start(b, clustertest.Options{
		Servers: []clustertest.Spec{{Type: "connector", Frontend: true}, {Type: "echo"}},
		Configure: func(cfg *server.Config) {
			cfg.Connector.Heartbeat = 10 * time.Minute
			tr, err := tracing.New(tp, cfg.ID)
			if err != nil {
				b.Fatal(err)
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
	cl, err := client.Config{Serializer: runtime.Protobuf}.Dial(context.Background(), c.Members("connector")[0].TCPURL())
	if err != nil {
		b.Fatal(err)
	}
	defer cl.Close()
	req := &testingv1.EchoRequest{Text: "hello, pomelo"}
	ctx := context.Background()
	b.Run("stream", func(b *testing.B) {
		ec := testingv1.NewEchoHandlerClient(cl)
		if res, err := ec.Echo(ctx, req); err != nil || res.Text != req.Text {
			b.Fatalf("echo: %v %v", res, err)
		}
		b.ReportAllocs()
		cpu := benchCPU()
		for b.Loop() {
			if _, err := ec.Echo(ctx, req); err != nil {
				b.Fatal(err)
			}
		}
		benchReportCPU(b, cpu)
	})
}
