package server

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"runtime/debug"
	"sync"
	"time"

	"connectrpc.com/connect"

	"github.com/pomelo-go/pomelo/runtime"
)

// The error log of a server is a token bucket: errLogBurst lines at once,
// errLogRate lines per second on average. What it drops is counted and
// reported in one line errLogSummary after the first drop.
const (
	errLogBurst   = 20
	errLogRate    = 5.0
	errLogSummary = time.Second
)

// errorLog logs the internal errors of a server without letting a flood of
// failing requests flood the log.
type errorLog struct {
	log *slog.Logger

	mu         sync.Mutex
	tokens     float64
	last       time.Time
	suppressed int
	summary    *time.Timer // pending report of suppressed lines
}

func newErrorLog(log *slog.Logger) *errorLog {
	return &errorLog{log: log, tokens: errLogBurst}
}

// allow takes a token, or counts the line as suppressed.
func (l *errorLog) allow() bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	now := time.Now()
	if !l.last.IsZero() {
		l.tokens = min(errLogBurst, l.tokens+now.Sub(l.last).Seconds()*errLogRate)
	}
	l.last = now
	if l.tokens >= 1 {
		l.tokens--
		return true
	}
	l.suppressed++
	if l.summary == nil {
		l.summary = time.AfterFunc(errLogSummary, l.report)
	}
	return false
}

// report logs how many lines were suppressed since the last report.
func (l *errorLog) report() {
	l.mu.Lock()
	n := l.suppressed
	l.suppressed, l.summary = 0, nil
	l.mu.Unlock()
	if n > 0 {
		l.log.Warn(fmt.Sprintf("pomelo: suppressed %d similar errors", n), "suppressed", n)
	}
}

// flush reports the suppressed lines now, without waiting for the summary
// timer, and stops it.
func (l *errorLog) flush() {
	l.mu.Lock()
	if l.summary != nil {
		l.summary.Stop()
	}
	l.mu.Unlock()
	l.report()
}

// Error logs at error level unless the rate limit is reached.
func (l *errorLog) Error(msg string, args ...any) {
	if l.allow() {
		l.log.Error(msg, args...)
	}
}

// loggedError is an error whose detail was already logged (a panic, with its
// stack): it is redacted for clients but not logged again.
type loggedError struct{ err *runtime.Error }

func (e *loggedError) Error() string { return e.err.Error() }

func (e *loggedError) Unwrap() error { return e.err }

// sessionIDs is what the log shows of a session.
type sessionIDs interface {
	ID() uint64
	UID() string
}

// requestAttrs are the log attributes of a request on route from sess.
func requestAttrs(route string, sess sessionIDs) []any {
	var sid uint64
	var uid string
	if sess != nil {
		sid, uid = sess.ID(), sess.UID()
	}
	return []any{"route", route, "session", sid, "uid", uid}
}

// outgoingError is err as it leaves this server, toward a client or the
// frontend that forwarded the request (see failure), logged with the
// request's route and session.
func (s *Server) outgoingError(route string, sess sessionIDs, err error) *runtime.Error {
	return s.failure(err, "pomelo: request failed", requestAttrs(route, sess)...)
}

// failure is err as this server answers it: an internal failure (see
// runtime.InternalName) is logged here once, with msg and args, and
// redacted unless Config.ExposeErrorDetails is set. An error that arrives
// redacted was logged by the server where it arose.
func (s *Server) failure(err error, msg string, args ...any) *runtime.Error {
	e := runtime.AsError(err)
	red := e.Redacted()
	if red == e {
		return e
	}
	var logged *loggedError
	if !errors.As(err, &logged) {
		s.errLog.Error(msg, append(args, "code", e.Name, "error", err.Error())...)
	}
	if s.cfg.ExposeErrorDetails {
		return e
	}
	return red
}

// logPanic logs a recovered panic with its stack and returns the error
// answered for it.
func (s *Server) logPanic(what string, val any, stack []byte, args ...any) error {
	s.errLog.Error("pomelo: "+what+" panicked", append(args, "panic", val, "stack", string(stack))...)
	return &loggedError{runtime.Errorf(runtime.ErrInternal, "%s panicked: %v", what, val)}
}

// rpcOptions are the handler options the server adds to every Connect
// handler mounted on its RPC listener: panics are recovered and logged, and
// internal failures logged and redacted as for client requests.
func (s *Server) rpcOptions() []connect.HandlerOption {
	return []connect.HandlerOption{
		connect.WithInterceptors(rpcErrors{s}),
		// Innermost: the error answered for a panic passes rpcErrors.
		connect.WithRecover(func(_ context.Context, spec connect.Spec, _ http.Header, p any) error {
			return s.logPanic("remote handler", p, debug.Stack(), "procedure", spec.Procedure)
		}),
	}
}

// rpcErrors logs and redacts the internal failures of RPC handlers.
type rpcErrors struct{ s *Server }

func (i rpcErrors) WrapUnary(next connect.UnaryFunc) connect.UnaryFunc {
	return func(ctx context.Context, req connect.AnyRequest) (connect.AnyResponse, error) {
		res, err := next(ctx, req)
		if err == nil || req.Spec().IsClient {
			return res, err
		}
		return nil, i.s.rpcError(req.Spec().Procedure, err)
	}
}

func (i rpcErrors) WrapStreamingClient(next connect.StreamingClientFunc) connect.StreamingClientFunc {
	return next
}

func (i rpcErrors) WrapStreamingHandler(next connect.StreamingHandlerFunc) connect.StreamingHandlerFunc {
	return func(ctx context.Context, conn connect.StreamingHandlerConn) error {
		err := next(ctx, conn)
		if err == nil {
			return nil
		}
		return runtime.ToConnectError(i.s.rpcError(conn.Spec().Procedure, err))
	}
}

// rpcError is the error an RPC handler answers with: a Connect error made by
// the handler stays as it is; any other is a failure.
func (s *Server) rpcError(procedure string, err error) error {
	var ce *connect.Error
	var e *runtime.Error
	if errors.As(err, &ce) && !errors.As(err, &e) {
		return err
	}
	return s.failure(err, "pomelo: remote call failed", "procedure", procedure)
}
