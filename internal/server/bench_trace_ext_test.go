package server_test

import (
	"context"
	"testing"
	"time"

	sdktrace "go.opentelemetry.io/otel/sdk/trace"

	testingv1 "github.com/pomelo-go/pomelo/gen/pomelo/testing/v1"
	"github.com/pomelo-go/pomelo/internal/server"
	"github.com/pomelo-go/pomelo/internal/tracing"
	"github.com/pomelo-go/pomelo/runtime"
	"github.com/pomelo-go/pomelo/runtime/connector"
)

// discardExporter drops the spans it is given: traced benchmarks pay for
// making, sampling and batching spans, not for a collector.
type discardExporter struct{}

func (discardExporter) ExportSpans(context.Context, []sdktrace.ReadOnlySpan) error { return nil }
func (discardExporter) Shutdown(context.Context) error                             { return nil }

// BenchmarkRequestRoundTripTraced is BenchmarkRequestRoundTrip's
// tcp/protobuf/raw with tracing on: the OpenTelemetry SDK sampling every
// request, batching its spans to an exporter that drops them. Run both in
// one run to compare: -bench='BenchmarkRequestRoundTrip/tcp/protobuf/raw'.
func BenchmarkRequestRoundTripTraced(b *testing.B) {
	tp := sdktrace.NewTracerProvider(sdktrace.WithBatcher(discardExporter{}))
	b.Cleanup(func() { tp.Shutdown(context.Background()) })
	tr, err := tracing.New(tp, "bench-echo-traced")
	if err != nil {
		b.Fatal(err)
	}
	s, err := server.New(server.Config{ID: "bench-echo-traced", Type: "echo", Frontend: true,
		TCPAddr: "127.0.0.1:0", Connector: connector.Config{Heartbeat: benchHeartbeat}, Tracer: tr})
	if err != nil {
		b.Fatal(err)
	}
	if err := testingv1.RegisterEchoHandlerServer(s, benchEcho{}); err != nil {
		b.Fatal(err)
	}
	if err := s.Start(); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		s.Shutdown(ctx, "")
	})
	b.Run("tcp/protobuf/raw", func(b *testing.B) {
		c, err := benchDialRawErr(s.TCPAddr(), false, runtime.Protobuf.Name())
		if err != nil {
			b.Fatal(err)
		}
		defer c.nc.Close()
		c.prepare(b, runtime.Protobuf, testingv1.EchoHandlerEchoRoute, &testingv1.EchoRequest{Text: "hello, pomelo"})
		if err := c.roundTrip(); err != nil {
			b.Fatal(err)
		}
		b.ReportAllocs()
		cpu := benchCPU()
		for b.Loop() {
			if err := c.roundTrip(); err != nil {
				b.Fatal(err)
			}
		}
		benchReportCPU(b, cpu)
	})
}
