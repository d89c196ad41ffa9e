package runtime

import (
	"context"
	"errors"
	"fmt"
)

// CodeFrameworkError is the numeric code of every framework error, Pomelo's
// 500, so that client code written for Pomelo keeps working.
const CodeFrameworkError = 500

// Error is an error with a numeric code, a stable name and a message, as sent
// to clients.
//
// An error's identity is its code and name; the message is for people. Each
// named error is defined once, as a sentinel made by DefineError (the
// framework's are ErrUnknownRoute ... ErrClosed below; packages and
// applications define their own the same way). Errorf makes an error of a
// sentinel's identity with a message, and errors.Is(err, sentinel) matches
// it, on this server or after it crossed a forward or a remote call, since
// only the code and name travel with the message. NewError makes an
// application error, identified by its code alone. Handlers return *Error
// to answer with their own code; any other error returned by a handler is
// answered as INTERNAL.
type Error struct {
	// Code is the numeric code sent to clients: 500 for framework errors, the
	// application's own code otherwise.
	Code int32
	// Name is a stable machine-readable name (such as ErrUnavailable's
	// "UNAVAILABLE"); empty for application errors made by NewError.
	Name string
	// Message is for people.
	Message string
}

// Error implements error.
func (e *Error) Error() string {
	if e.Name != "" {
		return fmt.Sprintf("%s (%d): %s", e.Name, e.Code, e.Message)
	}
	return fmt.Sprintf("code %d: %s", e.Code, e.Message)
}

// Is reports whether target is an *Error with the same code and name (and
// the same message, when target has one), so that errors.Is(err,
// runtime.ErrUnavailable) works on wrapped errors and on errors decoded from
// another server.
func (e *Error) Is(target error) bool {
	t, ok := target.(*Error)
	return ok && t.Code == e.Code && t.Name == e.Name && (t.Message == "" || t.Message == e.Message)
}

// DefineError returns the sentinel of a named error: an *Error with code and
// name and no message, for errors.Is and Errorf. Call it once per name, in a
// package-level variable; framework errors use CodeFrameworkError.
func DefineError(code int32, name string) *Error {
	return &Error{Code: code, Name: name}
}

// Errorf returns an error with the code and name of kind (a sentinel such as
// ErrBadRequest) and the formatted message. It is the one way to make a
// named error; errors.Is(Errorf(kind, ...), kind) is true.
func Errorf(kind *Error, format string, args ...any) *Error {
	return &Error{Code: kind.Code, Name: kind.Name, Message: fmt.Sprintf(format, args...)}
}

// NewError returns an application error with the application's own code
// and no name.
func NewError(code int32, message string) *Error {
	return &Error{Code: code, Message: message}
}

// The framework's named errors, sent to clients in the "error" field of a
// failed response (docs/PROTOCOL.md section 8). Match them with errors.Is;
// make them with Errorf. Their Name fields are the stable names on the wire.
var (
	// ErrUnknownRoute: no handler for the route, or a compressed route with
	// an unknown code.
	ErrUnknownRoute = DefineError(CodeFrameworkError, "UNKNOWN_ROUTE")
	// ErrBadRequest: the body does not decode, or the message is not
	// acceptable for the route.
	ErrBadRequest = DefineError(CodeFrameworkError, "BAD_REQUEST")
	// ErrNotBound: the operation needs a session bound to a uid.
	ErrNotBound = DefineError(CodeFrameworkError, "NOT_BOUND")
	// ErrUnavailable: no server of the route's type can take the request.
	ErrUnavailable = DefineError(CodeFrameworkError, "UNAVAILABLE")
	// ErrTimeout: the handler did not finish in time.
	ErrTimeout = DefineError(CodeFrameworkError, "TIMEOUT")
	// ErrOverloaded: the server is shedding load.
	ErrOverloaded = DefineError(CodeFrameworkError, "OVERLOADED")
	// ErrRateLimited: the session sent too many messages.
	ErrRateLimited = DefineError(CodeFrameworkError, "RATE_LIMITED")
	// ErrInternal: a handler panicked or failed unexpectedly.
	ErrInternal = DefineError(CodeFrameworkError, "INTERNAL")
	// ErrNotFound: the session, channel or server does not exist.
	ErrNotFound = DefineError(CodeFrameworkError, "NOT_FOUND")
	// ErrClosed: the session, channel or server is closed.
	ErrClosed = DefineError(CodeFrameworkError, "CLOSED")
)

// AsError converts any error into an *Error: an *Error anywhere in the
// chain is returned as is, context deadline errors become TIMEOUT, anything
// else INTERNAL with the error text as its message. Such messages are for
// the server's log: before an error is sent to a client it is Redacted.
func AsError(err error) *Error {
	if err == nil {
		return nil
	}
	var e *Error
	if errors.As(err, &e) {
		return e
	}
	if errors.Is(err, context.DeadlineExceeded) {
		return Errorf(ErrTimeout, "%v", err)
	}
	return Errorf(ErrInternal, "%v", err)
}

// genericMessages are the messages clients get for internal failures.
var genericMessages = map[string]string{
	ErrInternal.Name:    "internal error",
	ErrUnavailable.Name: "service unavailable",
	ErrTimeout.Name:     "request timed out",
}

// InternalName reports whether errors named name are internal failures
// (INTERNAL, UNAVAILABLE, TIMEOUT): their messages hold internal details
// (error texts, server ids, addresses) that are logged on the server, and
// clients get a generic message instead.
func InternalName(name string) bool {
	_, ok := genericMessages[name]
	return ok
}

// Redacted returns e as a client may see it: an internal failure (see
// InternalName) with the generic message of its name, keeping its code and
// name. Any other error, application errors included, keeps its message;
// Redacted then returns e itself, as it does when e already has the
// generic message, so r != e tells that e held details.
func (e *Error) Redacted() *Error {
	msg, ok := genericMessages[e.Name]
	if !ok || e.Message == msg {
		return e
	}
	return Errorf(e, "%s", msg)
}
