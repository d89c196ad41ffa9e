package tracing_test

import (
	"context"
	"errors"
	"testing"
	"unicode/utf8"

	"connectrpc.com/connect"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace/noop"

	"github.com/pomelo-go/pomelo/internal/tracing"
	"github.com/pomelo-go/pomelo/runtime"
)

func TestNilOrNoopProviderIsTracingOff(t *testing.T) {
	if tr, err := tracing.New(nil, "s"); tr != nil || err != nil {
		t.Fatalf("nil provider: %v, %v", tr, err)
	}
	if tr, err := tracing.New(noop.NewTracerProvider(), "s"); tr != nil || err != nil {
		t.Fatalf("no-op provider: %v, %v", tr, err)
	}
}

func TestTracingOffAllocatesNothing(t *testing.T) {
	var tr *tracing.Tracer
	ctx := context.Background()
	carried := map[string]string{"traceparent": "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"}
	err := runtime.Errorf(runtime.ErrNotFound, "x")
	allocs := testing.AllocsPerRun(100, func() {
		c, span := tr.StartRequest(ctx, "room.h.x", 1, "u")
		c, fwd, tc := tr.StartForward(c, "room.h.x", "room-1")
		_, h := tr.StartHandle(c, carried, "room.h.x", 1, "u", "connector-1")
		_, p := tr.StartPush(c, "onX", "connector-1", 3)
		tracing.End(p, nil)
		tracing.End(h, err)
		tracing.End(fwd, err)
		tracing.End(span, err)
		if tc != nil || tr.Interceptors() != nil {
			t.Fatal("tracing off carries trace context or installs interceptors")
		}
	})
	if allocs != 0 {
		t.Fatalf("%v allocations per request with tracing off", allocs)
	}
}

func TestErrorNameIsTheStableName(t *testing.T) {
	cases := []struct {
		err  error
		want string
	}{
		{runtime.Errorf(runtime.ErrTimeout, "slow %s", "db"), "TIMEOUT"},
		{runtime.NewError(1001, "custom"), "code 1001"},
		{errors.New("a plain error with internal text"), "INTERNAL"},
		{runtime.ToConnectError(runtime.Errorf(runtime.ErrNotFound, "gone")), "NOT_FOUND"},
		{connect.NewError(connect.CodeUnavailable, errors.New("dial")), "UNAVAILABLE"},
	}
	for _, c := range cases {
		if got := tracing.ErrorName(c.err); got != c.want {
			t.Errorf("ErrorName(%v) = %q, want %q", c.err, got, c.want)
		}
	}
}

func TestClientStringsAreRecordedAsValidUTF8(t *testing.T) {
	rec := tracetest.NewSpanRecorder()
	tr, err := tracing.New(sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec)), "connector-1")
	if err != nil || tr == nil {
		t.Fatalf("New: %v, %v", tr, err)
	}
	_, span := tr.StartRequest(context.Background(), "room.h.\xff", 1, "u\xfe")
	tracing.End(span, nil)
	ended := rec.Ended()
	if len(ended) != 1 {
		t.Fatalf("%d spans", len(ended))
	}
	for _, kv := range ended[0].Attributes() {
		if v := kv.Value.Emit(); !utf8.ValidString(v) {
			t.Fatalf("%s = %q is not UTF-8", kv.Key, v)
		}
	}
}

func TestForwardedTraceContextContinuesTheTrace(t *testing.T) {
	rec := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec))
	front, _ := tracing.New(tp, "connector-1")
	back, _ := tracing.New(tp, "room-1")
	_, fwd, carried := front.StartForward(context.Background(), "room.h.x", "room-1")
	if carried["traceparent"] == "" {
		t.Fatalf("carried %v: no traceparent", carried)
	}
	// The backend gets only the carried map, not the frontend's context.
	_, handle := back.StartHandle(context.Background(), carried, "room.h.x", 1, "u", "connector-1")
	tracing.End(handle, nil)
	tracing.End(fwd, nil)
	var parent, child sdktrace.ReadOnlySpan
	for _, s := range rec.Ended() {
		switch s.Name() {
		case tracing.SpanForward:
			parent = s
		case tracing.SpanHandle:
			child = s
		}
	}
	if parent == nil || child == nil {
		t.Fatal("missing spans")
	}
	if child.Parent().SpanID() != parent.SpanContext().SpanID() || child.SpanContext().TraceID() != parent.SpanContext().TraceID() {
		t.Fatalf("handler span's parent %v, forward span %v", child.Parent(), parent.SpanContext())
	}
}
