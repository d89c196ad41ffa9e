package server

import (
	"context"
	"encoding/json"
	"fmt"
	"runtime/debug"
	"time"

	"github.com/pomelo-go/pomelo/internal/tracing"
	"github.com/pomelo-go/pomelo/runtime"
	"github.com/pomelo-go/pomelo/runtime/connector"
	"github.com/pomelo-go/pomelo/runtime/session"
	"github.com/pomelo-go/pomelo/runtime/wire"
)

// chainHandler is the connector's view of a frontend server.
type chainHandler struct{ s *Server }

func (h chainHandler) Handshake(ctx context.Context, sess *session.Session, req *wire.HandshakeRequest) (user json.RawMessage, err error) {
	s := h.s
	defer func() {
		if p := recover(); p != nil {
			s.errLog.Error("pomelo: handshake hook panicked", "session", sess.ID(), "panic", p, "stack", string(debug.Stack()))
			user, err = nil, fmt.Errorf("handshake hook panicked: %v", p)
		}
	}()
	if s.cfg.CheckClient != nil && !s.cfg.CheckClient(req.Sys.Type, req.Sys.Version) {
		return nil, &connector.HandshakeError{Code: wire.CodeOldClient, Message: "client version not supported"}
	}
	if s.cfg.HandshakeHook != nil {
		return s.cfg.HandshakeHook(ctx, sess, req.User)
	}
	return nil, nil
}

func (h chainHandler) Reject(sess *session.Session, m *wire.Message, err error) {
	h.s.respond(sess, m.Route, sess.Serializer(), m.ID, runtime.Result{Err: err})
}

func (h chainHandler) ServeMessage(ctx context.Context, sess *session.Session, m *wire.Message) {
	s := h.s
	ser := sess.Serializer()
	local := session.NewLocal(sess.Snapshot(), s.Origin())
	r := &runtime.Request{Route: m.Route, Session: local, Serializer: ser, Body: m.Body}
	if m.Type == wire.Request {
		r.ID = m.ID
	}
	ctx, span := s.cfg.Tracer.StartRequest(ctx, m.Route, sess.ID(), local.UID())
	var start time.Time
	if s.cfg.Metrics != nil {
		start = time.Now()
	}
	res := s.handleFrontend(runtime.WithSession(ctx, local), r)
	if res.Err != nil && ctx.Err() != nil {
		// The connection's context ends when it closes (or a shutdown's
		// deadline passed): the request was cut short, not failed.
		res = runtime.Result{Err: runtime.Errorf(runtime.ErrClosed, "connection closed while %s ran", r.Route)}
	}
	if s.cfg.Metrics != nil {
		st, ok := runtime.ServerTypeOf(r.Route)
		s.cfg.Metrics.Request(r.Route, ok && st != s.cfg.Type, res.Err, time.Since(start))
	}
	if !r.Notify() {
		s.respond(sess, r.Route, ser, r.ID, res)
	}
	tracing.End(span, res.Err)
}

// handleFrontend runs the frontend part of the chain: global filters around
// local handling or forwarding.
func (s *Server) handleFrontend(ctx context.Context, r *runtime.Request) (res runtime.Result) {
	s.mu.RLock()
	global := s.globalFilters
	fwd := s.forwarder
	s.mu.RUnlock()
	res = runFiltered(ctx, r, global, func(ctx context.Context) runtime.Result {
		serverType, ok := runtime.ServerTypeOf(r.Route)
		if !ok {
			return runtime.Result{Err: runtime.Errorf(runtime.ErrUnknownRoute, "route %q is not serverType.handler.method", r.Route)}
		}
		if serverType == s.cfg.Type {
			return s.HandleLocal(ctx, r)
		}
		if fwd == nil {
			return runtime.Result{Err: runtime.Errorf(runtime.ErrUnavailable, "no server of type %q for %s", serverType, r.Route)}
		}
		local, _ := r.Session.(*session.Local)
		var snap session.Snapshot
		if local != nil {
			snap = local.Snapshot()
		}
		body, err := fwd.Forward(ctx, serverType, snap, r)
		return runtime.Result{Body: body, Err: err}
	})
	return s.mapError(ctx, r, res)
}

// HandleLocal runs a request on this server: the server's filters around
// its handler; r.Session must be set and ctx should carry it
// (runtime.WithSession). Its errors are neither logged nor redacted: that
// happens where an answer leaves the server (HandleForwarded, the response
// to a client).
func (s *Server) HandleLocal(ctx context.Context, r *runtime.Request) runtime.Result {
	return s.handleLocal(ctx, r, time.Time{})
}

// handleLocal runs a request here. inherited is the deadline the request
// arrived with from a frontend, which answers TIMEOUT itself when it passes:
// only a deadline set here (by a filter) needs the handler to run on its own
// goroutine so that the answer can be sent before the handler returns.
func (s *Server) handleLocal(ctx context.Context, r *runtime.Request, inherited time.Time) runtime.Result {
	s.mu.RLock()
	filters := s.filters
	s.mu.RUnlock()
	return runFiltered(ctx, r, filters, func(ctx context.Context) runtime.Result {
		d, ok := s.handlers.Lookup(r.Route)
		if !ok {
			return runtime.Result{Err: runtime.Errorf(runtime.ErrUnknownRoute, "no handler for %s", r.Route)}
		}
		if d.NotifyOnly && !r.Notify() {
			return runtime.Result{Err: runtime.Errorf(runtime.ErrBadRequest, "%s is notify-only: send it as a notify", r.Route)}
		}
		return callHandler(ctx, d, r, inherited)
	})
}

// HandleForwarded runs a forwarded request on a backend and returns the
// encoded response. Errors are mapped by the error handler; internal
// failures are logged here and redacted (see Config.ExposeErrorDetails), so
// the error returned is the *runtime.Error to answer.
func (s *Server) HandleForwarded(ctx context.Context, r *runtime.Request) (body []byte, err error) {
	defer func() {
		// The chain recovers the handler's panics; this is for the rest
		// (encoding), which runs on a pool goroutine of the cluster.
		if p := recover(); p != nil {
			body, err = nil, s.outgoingError(r.Route, r.Session, s.logPanic("forwarded request", p, debug.Stack(), requestAttrs(r.Route, r.Session)...))
		}
	}()
	inherited, _ := ctx.Deadline()
	res := s.mapError(ctx, r, s.handleLocal(runtime.WithSession(ctx, r.Session), r, inherited))
	if res.Err == nil {
		body, err := encodeResult(r.Serializer, res)
		if err == nil {
			return body, nil
		}
		res.Err = err
	}
	return nil, s.outgoingError(r.Route, r.Session, res.Err)
}

// runFiltered runs the filters' Before in order, then next, then the After
// of every filter whose Before ran, in reverse order. Panics anywhere are
// turned into INTERNAL errors.
func runFiltered(ctx context.Context, r *runtime.Request, filters []runtime.Filter, next func(context.Context) runtime.Result) (res runtime.Result) {
	ran := 0
	defer func() {
		if p := recover(); p != nil {
			res = panicResult(r, p)
		}
		for i := ran - 1; i >= 0; i-- {
			safeAfter(ctx, filters[i], r, &res)
		}
	}()
	for _, f := range filters {
		c, err := f.Before(ctx, r)
		ran++
		if err != nil {
			return runtime.Result{Err: err}
		}
		if c != nil {
			ctx = c
		}
	}
	return next(ctx)
}

func safeAfter(ctx context.Context, f runtime.Filter, r *runtime.Request, res *runtime.Result) {
	defer func() {
		if p := recover(); p != nil {
			*res = panicResult(r, p)
		}
	}()
	f.After(ctx, r, res)
}

func panicResult(r *runtime.Request, p any) runtime.Result {
	return runtime.Result{Err: &panicError{route: r.Route, val: p, stack: debug.Stack()}}
}

type panicError struct {
	route string
	val   any
	stack []byte
}

func (e *panicError) Error() string { return fmt.Sprintf("panic in %s: %v", e.route, e.val) }

// callHandler runs a handler. When ctx has a deadline of its own (the
// timeout filter sets one), not only the one inherited from the frontend,
// the handler runs on its own goroutine and the request is answered TIMEOUT
// when the deadline passes first; the handler's context is cancelled then.
func callHandler(ctx context.Context, d *runtime.HandlerDesc, r *runtime.Request, inherited time.Time) runtime.Result {
	if dl, ok := ctx.Deadline(); !ok || dl.Equal(inherited) {
		return invoke(ctx, d, r)
	}
	done := make(chan runtime.Result, 1)
	go func() { done <- invoke(ctx, d, r) }()
	select {
	case res := <-done:
		return res
	case <-ctx.Done():
		return runtime.Result{Err: runtime.Errorf(runtime.ErrTimeout, "%s did not finish in time: %v", r.Route, ctx.Err())}
	}
}

func invoke(ctx context.Context, d *runtime.HandlerDesc, r *runtime.Request) (res runtime.Result) {
	defer func() {
		if p := recover(); p != nil {
			res = panicResult(r, p)
		}
	}()
	msg, err := d.Handle(ctx, r.Session, r.Serializer, r.Body)
	return runtime.Result{Message: msg, Err: err}
}

// mapError logs panics and runs the error handler. Other internal failures
// are logged where the error leaves the server (outgoingError), after the
// error handler had its say.
func (s *Server) mapError(ctx context.Context, r *runtime.Request, res runtime.Result) runtime.Result {
	if res.Err == nil {
		return res
	}
	if pe, ok := res.Err.(*panicError); ok {
		res.Err = s.logPanic("handler", pe.val, pe.stack, requestAttrs(r.Route, r.Session)...)
	}
	s.mu.RLock()
	eh := s.errorHandler
	s.mu.RUnlock()
	if eh != nil {
		if err := s.safeErrorHandler(eh, ctx, r, res.Err); err != nil {
			res.Err = err
		}
	}
	return res
}

// safeErrorHandler runs the error handler; a panic in it answers INTERNAL.
func (s *Server) safeErrorHandler(eh func(context.Context, *runtime.Request, error) error, ctx context.Context, r *runtime.Request, err error) (out error) {
	defer func() {
		if p := recover(); p != nil {
			out = s.logPanic("error handler", p, debug.Stack(), requestAttrs(r.Route, r.Session)...)
		}
	}()
	return eh(ctx, r, err)
}

// encodeResult encodes a successful result's response body.
func encodeResult(ser runtime.Serializer, res runtime.Result) ([]byte, error) {
	if res.Body != nil || res.Message == nil {
		if res.Body == nil && ser == runtime.JSON {
			return []byte("{}"), nil
		}
		return res.Body, nil
	}
	b, err := ser.Marshal(nil, res.Message)
	if err != nil {
		return nil, runtime.Errorf(runtime.ErrInternal, "encode response: %v", err)
	}
	return b, nil
}

// respond sends the one RESPONSE of request id, on route.
func (s *Server) respond(sess *session.Session, route string, ser runtime.Serializer, id uint64, res runtime.Result) {
	m := wire.Message{Type: wire.Response, ID: id}
	if res.Err == nil {
		body, err := encodeResult(ser, res)
		if err != nil {
			res.Err = err
		} else {
			m.Body = body
		}
	}
	if res.Err != nil {
		m.Error = true
		m.Body = runtime.EncodeErrorBody(ser, s.outgoingError(route, sess, res.Err))
	}
	pkg, err := wire.AppendMessagePackage(nil, &m)
	if err != nil {
		// The response is too large for the protocol: answer that instead.
		m.Error = true
		m.Body = runtime.EncodeErrorBody(ser, s.outgoingError(route, sess, runtime.Errorf(runtime.ErrInternal, "response too large: %v", err)))
		pkg, _ = wire.AppendMessagePackage(nil, &m)
	}
	_ = sess.Conn().Send(pkg) // a failed send closes the connection
}
