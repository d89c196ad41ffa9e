package runtime

import (
	"context"
	"errors"
	"fmt"
)

// Stable machine-readable error names sent to clients in the "error" field of
// a failed response (docs/PROTOCOL.md section 8).
const (
	// ErrNameUnknownRoute: no handler for the route, or a compressed route
	// with an unknown code.
	ErrNameUnknownRoute = "UNKNOWN_ROUTE"
	// ErrNameBadRequest: the body does not decode, or the message is not
	// acceptable for the route.
	ErrNameBadRequest = "BAD_REQUEST"
	// ErrNameNotBound: the operation needs a session bound to a uid.
	ErrNameNotBound = "NOT_BOUND"
	// ErrNameUnavailable: no server of the route's type can take the request.
	ErrNameUnavailable = "UNAVAILABLE"
	// ErrNameTimeout: the handler did not finish in time.
	ErrNameTimeout = "TIMEOUT"
	// ErrNameOverloaded: the server is shedding load.
	ErrNameOverloaded = "OVERLOADED"
	// ErrNameRateLimited: the session sent too many messages.
	ErrNameRateLimited = "RATE_LIMITED"
	// ErrNameInternal: a handler panicked or failed unexpectedly.
	ErrNameInternal = "INTERNAL"
	// ErrNameNotFound: the session, channel or server does not exist.
	ErrNameNotFound = "NOT_FOUND"
	// ErrNameClosed: the session, channel or server is closed.
	ErrNameClosed = "CLOSED"
)

// CodeFrameworkError is the numeric code of every framework error, Pomelo's
// 500, so that client code written for Pomelo keeps working.
const CodeFrameworkError = 500

// Error is an error with a numeric code, a stable name and a message, as sent
// to clients. Handlers return *Error (from NewError) to answer with their own
// application code; any other error returned by a handler is answered as
// INTERNAL.
type Error struct {
	// Code is the numeric code sent to clients: 500 for framework errors, the
	// application's own code otherwise.
	Code int32
	// Name is a stable machine-readable name (ErrName...) for framework
	// errors; empty for application errors.
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

// Is reports whether target is an *Error with the same code and name, so that
// errors.Is(err, runtime.ErrUnavailable) works on wrapped errors.
func (e *Error) Is(target error) bool {
	t, ok := target.(*Error)
	return ok && t.Code == e.Code && t.Name == e.Name && (t.Message == "" || t.Message == e.Message)
}

// NewError returns an application error with the application's own code.
func NewError(code int32, message string) *Error {
	return &Error{Code: code, Message: message}
}

// Errorf returns a framework error (code 500) with the given name.
func Errorf(name, format string, args ...any) *Error {
	return &Error{Code: CodeFrameworkError, Name: name, Message: fmt.Sprintf(format, args...)}
}

// Sentinel framework errors for errors.Is. Their messages are empty, so they
// match any message.
var (
	ErrUnknownRoute = &Error{Code: CodeFrameworkError, Name: ErrNameUnknownRoute}
	ErrBadRequest   = &Error{Code: CodeFrameworkError, Name: ErrNameBadRequest}
	ErrNotBound     = &Error{Code: CodeFrameworkError, Name: ErrNameNotBound}
	ErrUnavailable  = &Error{Code: CodeFrameworkError, Name: ErrNameUnavailable}
	ErrTimeout      = &Error{Code: CodeFrameworkError, Name: ErrNameTimeout}
	ErrOverloaded   = &Error{Code: CodeFrameworkError, Name: ErrNameOverloaded}
	ErrRateLimited  = &Error{Code: CodeFrameworkError, Name: ErrNameRateLimited}
	ErrInternal     = &Error{Code: CodeFrameworkError, Name: ErrNameInternal}
	ErrNotFound     = &Error{Code: CodeFrameworkError, Name: ErrNameNotFound}
	ErrClosed       = &Error{Code: CodeFrameworkError, Name: ErrNameClosed}
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
		return Errorf(ErrNameTimeout, "%v", err)
	}
	return Errorf(ErrNameInternal, "%v", err)
}

// genericMessages are the messages clients get for internal failures.
var genericMessages = map[string]string{
	ErrNameInternal:    "internal error",
	ErrNameUnavailable: "service unavailable",
	ErrNameTimeout:     "request timed out",
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
	return &Error{Code: e.Code, Name: e.Name, Message: msg}
}
