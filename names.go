package pomelo

import (
	"context"

	"github.com/pomelo-go/pomelo/runtime"
)

// The names an application's own code uses most, so that it imports this
// package and not github.com/pomelo-go/pomelo/runtime, whose name is the
// standard library's. They are the runtime package's types and values
// under a second name (type aliases and the same sentinels): generated
// code, which spells them runtime.Session and so on, accepts them as they
// are.
type (
	// Session is the session a handler sees (runtime.Session): on a
	// frontend the client's own, on a backend a proxy of it.
	Session = runtime.Session
	// Error is an error with a Pomelo code and a stable name, as clients
	// receive it (runtime.Error).
	Error = runtime.Error
	// Filter runs before and after handlers (runtime.Filter).
	Filter = runtime.Filter
	// FilterFuncs makes a Filter of two functions (runtime.FilterFuncs).
	FilterFuncs = runtime.FilterFuncs
	// Request is a client message as filters and error handlers see it
	// (runtime.Request).
	Request = runtime.Request
)

// The framework's named errors (see runtime.ErrUnknownRoute and the
// others): the same sentinels, for errors.Is and Errorf.
var (
	ErrUnknownRoute = runtime.ErrUnknownRoute
	ErrBadRequest   = runtime.ErrBadRequest
	ErrNotBound     = runtime.ErrNotBound
	ErrUnavailable  = runtime.ErrUnavailable
	ErrTimeout      = runtime.ErrTimeout
	ErrOverloaded   = runtime.ErrOverloaded
	ErrRateLimited  = runtime.ErrRateLimited
	ErrInternal     = runtime.ErrInternal
	ErrNotFound     = runtime.ErrNotFound
	ErrClosed       = runtime.ErrClosed
)

// DefineError returns the sentinel of an application's named error; see
// runtime.DefineError.
func DefineError(code int32, name string) *Error { return runtime.DefineError(code, name) }

// Errorf returns an error of kind with a formatted message; see
// runtime.Errorf.
func Errorf(kind *Error, format string, args ...any) *Error {
	return runtime.Errorf(kind, format, args...)
}

// NewError returns an application error with the application's own code
// and no name; see runtime.NewError.
func NewError(code int32, message string) *Error { return runtime.NewError(code, message) }

// WithRouteKey returns ctx carrying the key that route functions hash for
// calls made with it (a room id, say), instead of the session's uid; see
// runtime.WithRouteKey.
func WithRouteKey(ctx context.Context, key string) context.Context {
	return runtime.WithRouteKey(ctx, key)
}
