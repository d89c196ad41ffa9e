// Package tracing is the OpenTelemetry instrumentation of a server: the
// spans of a client request on its frontend, of its forwarding, of the
// backend's filters and handler, of pushes, and the Connect interceptors
// that trace remote and sys calls (connectrpc.com/otelconnect).
//
// A nil *Tracer is tracing off: every method is then a nil check that
// returns at once, allocating nothing, so the instrumentation points call
// them unconditionally.
//
// Trace context crosses servers in the W3C Trace Context format: in HTTP
// headers for unary Connect calls, and inside each forwarded message for the
// forward stream, which carries the requests of many traces.
package tracing

import (
	"context"
	"errors"
	"strconv"
	"strings"
	"unicode/utf8"

	"connectrpc.com/connect"
	"connectrpc.com/otelconnect"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"
	"go.opentelemetry.io/otel/trace/noop"

	"github.com/pomelo-go/pomelo/gen/pomelo/sys/v1/sysv1connect"
	"github.com/pomelo-go/pomelo/runtime"
)

// ScopeName is the instrumentation scope of the framework's spans.
const ScopeName = "github.com/pomelo-go/pomelo"

// Span names. They are fixed (the route is an attribute), so that a client
// sending arbitrary routes cannot grow the set of names.
const (
	// SpanRequest is a client message accepted by a frontend.
	SpanRequest = "pomelo.request"
	// SpanForward is a frontend forwarding a message to a backend.
	SpanForward = "pomelo.forward"
	// SpanHandle is a backend running a forwarded message: its filters and
	// handler.
	SpanHandle = "pomelo.handle"
	// SpanPush is a push to users' sessions on one frontend.
	SpanPush = "pomelo.push"
	// SpanPushDelivery is a frontend delivering a push that arrived on a
	// push stream.
	SpanPushDelivery = "pomelo.push.deliver"
)

// Attribute keys of the framework's spans.
const (
	KeyRoute    = attribute.Key("pomelo.route")
	KeySession  = attribute.Key("pomelo.session.id")
	KeyUID      = attribute.Key("pomelo.uid")
	KeyServer   = attribute.Key("pomelo.server.id")
	KeyFrontend = attribute.Key("pomelo.frontend.id")
	KeyTarget   = attribute.Key("pomelo.target.id")
	KeyUIDs     = attribute.Key("pomelo.push.uids")
	// KeyError is the stable name of the error a span ended with (the
	// status description carries it too where the framework sets the
	// status; Connect spans keep otelconnect's status and get this).
	KeyError = attribute.Key("pomelo.error")
)

// Tracer makes a server's spans. The zero value is not usable; a nil
// *Tracer is tracing off.
type Tracer struct {
	tracer   trace.Tracer
	prop     propagation.TraceContext
	serverID string
	connect  connect.Interceptor
}

// New returns the tracer of server serverID on tp, or nil (tracing off)
// when tp is nil or OpenTelemetry's no-op provider.
func New(tp trace.TracerProvider, serverID string) (*Tracer, error) {
	if tp == nil {
		return nil, nil
	}
	if _, ok := tp.(noop.TracerProvider); ok {
		return nil, nil
	}
	t := &Tracer{tracer: tp.Tracer(ScopeName), serverID: serverID}
	oc, err := otelconnect.NewInterceptor(
		otelconnect.WithTracerProvider(tp),
		otelconnect.WithPropagator(t.prop),
		// The servers of one cluster trust each other (they authenticate
		// with the cluster secret): a call's server span is a child of
		// the caller's span, not a new root.
		otelconnect.WithTrustRemote(),
		otelconnect.WithoutMetrics(),
		otelconnect.WithFilter(func(_ context.Context, s connect.Spec) bool {
			// Streams live as long as a connection between two servers and
			// carry many requests: a span of their own says nothing. The
			// forwarded messages are traced one by one instead, and so are
			// unary forwards (ForwardMode unary) to keep one trace shape.
			return s.StreamType == connect.StreamTypeUnary && !isForward(s.Procedure)
		}),
	)
	if err != nil {
		return nil, err
	}
	t.connect = oc
	return t, nil
}

func isForward(procedure string) bool {
	return procedure == sysv1connect.MsgRemoteForwardMessageProcedure || procedure == sysv1connect.MsgRemoteForwardProcedure
}

// Interceptors returns the Connect interceptors that trace calls, to be
// installed first (outermost) on every client and handler, before the
// interceptor that converts errors (runtime.ErrorInterceptor); nil when
// tracing is off.
func (t *Tracer) Interceptors() []connect.Interceptor {
	if t == nil {
		return nil
	}
	return []connect.Interceptor{t.connect, errorNameInterceptor{}}
}

// StartRequest starts the server span of a client message accepted by a
// frontend: route, session id and uid as attributes, never the body. The
// span is nil when tracing is off; End accepts it.
func (t *Tracer) StartRequest(ctx context.Context, route string, sid uint64, uid string) (context.Context, trace.Span) {
	if t == nil {
		return ctx, nil
	}
	return t.tracer.Start(ctx, SpanRequest, trace.WithSpanKind(trace.SpanKindServer), trace.WithAttributes(
		KeyRoute.String(validUTF8(route)),
		KeySession.Int64(int64(sid)),
		KeyUID.String(validUTF8(uid)),
		KeyServer.String(t.serverID),
	))
}

// validUTF8 returns s with runs of invalid UTF-8 replaced: routes and uids
// can come from clients, and an exporter encoding spans as protobuf fails
// on a string that is not UTF-8 (and with it the whole batch).
func validUTF8(s string) string {
	if utf8.ValidString(s) {
		return s
	}
	return strings.ToValidUTF8(s, "\uFFFD")
}

// StartForward starts the client span of forwarding route to the backend
// target and returns the trace context to carry in the forwarded message
// (nil when tracing is off).
func (t *Tracer) StartForward(ctx context.Context, route, target string) (context.Context, trace.Span, map[string]string) {
	if t == nil {
		return ctx, nil, nil
	}
	ctx, span := t.tracer.Start(ctx, SpanForward, trace.WithSpanKind(trace.SpanKindClient), trace.WithAttributes(
		KeyRoute.String(validUTF8(route)),
		KeyServer.String(t.serverID),
		KeyTarget.String(target),
	))
	carrier := propagation.MapCarrier{}
	t.prop.Inject(ctx, carrier)
	return ctx, span, carrier
}

// StartHandle starts the server span of a backend running a forwarded
// message, a child of the span whose context the message carried.
func (t *Tracer) StartHandle(ctx context.Context, carried map[string]string, route string, sid uint64, uid, frontendID string) (context.Context, trace.Span) {
	if t == nil {
		return ctx, nil
	}
	if len(carried) > 0 {
		ctx = t.prop.Extract(ctx, propagation.MapCarrier(carried))
	}
	return t.tracer.Start(ctx, SpanHandle, trace.WithSpanKind(trace.SpanKindServer), trace.WithAttributes(
		KeyRoute.String(validUTF8(route)),
		KeySession.Int64(int64(sid)),
		KeyUID.String(validUTF8(uid)),
		KeyFrontend.String(frontendID),
		KeyServer.String(t.serverID),
	))
}

// StartPush starts the span of a push of route to uids users on the
// frontend frontendID.
func (t *Tracer) StartPush(ctx context.Context, route, frontendID string, uids int) (context.Context, trace.Span) {
	if t == nil {
		return ctx, nil
	}
	return t.tracer.Start(ctx, SpanPush, trace.WithSpanKind(trace.SpanKindProducer), trace.WithAttributes(
		KeyRoute.String(validUTF8(route)),
		KeyServer.String(t.serverID),
		KeyTarget.String(frontendID),
		KeyUIDs.Int(uids),
	))
}

// Carry returns the trace context of ctx to carry in a message to another
// server (W3C trace context keys), or nil when tracing is off.
func (t *Tracer) Carry(ctx context.Context) map[string]string {
	if t == nil {
		return nil
	}
	carrier := propagation.MapCarrier{}
	t.prop.Inject(ctx, carrier)
	return carrier
}

// StartPushDelivery starts the span of a frontend delivering a push that
// arrived on a push stream to its receivers' sessions, a child of the span
// whose context the push carried (the pusher's push span).
func (t *Tracer) StartPushDelivery(ctx context.Context, carried map[string]string, route string, receivers int) (context.Context, trace.Span) {
	if t == nil {
		return ctx, nil
	}
	if len(carried) > 0 {
		ctx = t.prop.Extract(ctx, propagation.MapCarrier(carried))
	}
	return t.tracer.Start(ctx, SpanPushDelivery, trace.WithSpanKind(trace.SpanKindConsumer), trace.WithAttributes(
		KeyRoute.String(validUTF8(route)),
		KeyServer.String(t.serverID),
		KeyUIDs.Int(receivers),
	))
}

// End ends span (nil when tracing is off). A non-nil err sets the span's
// status to Error with the error's stable name (see ErrorName), never its
// message, which may hold internal detail.
func End(span trace.Span, err error) {
	if span == nil {
		return
	}
	if err != nil {
		name := ErrorName(err)
		span.SetAttributes(KeyError.String(name))
		span.SetStatus(codes.Error, name)
	}
	span.End()
}

// ErrorName is the stable name of err as clients see it: a *runtime.Error's
// Name ("UNAVAILABLE"), "code N" for an application error without a name,
// the name a Connect error's detail carries, "INTERNAL" for anything else.
func ErrorName(err error) string {
	var ce *connect.Error
	if errors.As(err, &ce) {
		err = runtime.FromConnectError("", err)
	}
	e := runtime.AsError(err)
	if e.Name != "" {
		return e.Name
	}
	return "code " + strconv.Itoa(int(e.Code))
}

// errorNameInterceptor records the stable error name on the Connect span
// (otelconnect's), which keeps the status otelconnect gives it.
type errorNameInterceptor struct{}

func (errorNameInterceptor) WrapUnary(next connect.UnaryFunc) connect.UnaryFunc {
	return func(ctx context.Context, req connect.AnyRequest) (connect.AnyResponse, error) {
		res, err := next(ctx, req)
		if err != nil {
			if span := trace.SpanFromContext(ctx); span.IsRecording() {
				span.SetAttributes(KeyError.String(ErrorName(err)))
			}
		}
		return res, err
	}
}

func (errorNameInterceptor) WrapStreamingClient(next connect.StreamingClientFunc) connect.StreamingClientFunc {
	return next
}

func (errorNameInterceptor) WrapStreamingHandler(next connect.StreamingHandlerFunc) connect.StreamingHandlerFunc {
	return next
}
