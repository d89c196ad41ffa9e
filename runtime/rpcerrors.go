package runtime

import (
	"context"
	"errors"

	"connectrpc.com/connect"

	sysv1 "github.com/pomelo-go/pomelo/gen/pomelo/sys/v1"
)

// ToConnectError converts an error returned by a remote or sys service
// handler into a Connect error whose code fits its name, carrying the
// *Error (code, name, message) as a pomelo.sys.v1.Error detail so that the
// caller gets it back unchanged.
func ToConnectError(err error) error {
	if err == nil {
		return nil
	}
	var ce *connect.Error
	if errors.As(err, &ce) {
		var e *Error
		if !errors.As(err, &e) {
			return err // already a Connect error, with its own code
		}
	}
	e := AsError(err)
	code := connect.CodeInternal
	switch e.Name {
	case ErrNotFound.Name:
		code = connect.CodeNotFound
	case ErrBadRequest.Name, ErrNotBound.Name:
		code = connect.CodeInvalidArgument
	case ErrUnavailable.Name, ErrClosed.Name:
		code = connect.CodeUnavailable
	case ErrTimeout.Name:
		code = connect.CodeDeadlineExceeded
	case ErrOverloaded.Name, ErrRateLimited.Name:
		code = connect.CodeResourceExhausted
	case ErrUnknownRoute.Name:
		code = connect.CodeUnimplemented
	case "":
		code = connect.CodeUnknown // an application error
	}
	out := connect.NewError(code, errors.New(e.Message))
	if d, derr := connect.NewErrorDetail(e.Proto()); derr == nil {
		out.AddDetail(d)
	}
	return out
}

// FromConnectError converts an error of a remote call into an *Error: the
// one the remote handler returned when it carried one, otherwise by the
// Connect code: a server that cannot be reached is UNAVAILABLE, a deadline
// TIMEOUT, anything else (a procedure the server does not serve, a message
// too large, a failed authentication) INTERNAL, since it is the cluster's
// failure, not the client's. server names the remote server in messages,
// which are for the log (see Error.Redacted).
func FromConnectError(server string, err error) error {
	if err == nil {
		return nil
	}
	var e *Error
	if errors.As(err, &e) {
		return e
	}
	var ce *connect.Error
	if errors.As(err, &ce) {
		for _, d := range ce.Details() {
			if v, derr := d.Value(); derr == nil {
				if pe, ok := v.(*sysv1.Error); ok {
					return ErrorFromProto(pe)
				}
			}
		}
		switch ce.Code() {
		case connect.CodeDeadlineExceeded:
			return Errorf(ErrTimeout, "%s: %v", server, ce.Message())
		case connect.CodeUnavailable, connect.CodeCanceled:
			return Errorf(ErrUnavailable, "%s: %v", server, ce.Message())
		}
		return Errorf(ErrInternal, "%s: %v: %v", server, ce.Code(), ce.Message())
	}
	if errors.Is(err, context.DeadlineExceeded) {
		return Errorf(ErrTimeout, "%s: %v", server, err)
	}
	return Errorf(ErrUnavailable, "%s: %v", server, err)
}

// ErrorInterceptor carries *Error values across unary remote calls: on the
// handler side it turns them into Connect errors with a detail, on the
// client side back into *Error (see ToConnectError and FromConnectError).
// The cluster installs it on every server and client.
func ErrorInterceptor() connect.Interceptor {
	return connect.UnaryInterceptorFunc(func(next connect.UnaryFunc) connect.UnaryFunc {
		return func(ctx context.Context, req connect.AnyRequest) (connect.AnyResponse, error) {
			res, err := next(ctx, req)
			if err == nil {
				return res, nil
			}
			if req.Spec().IsClient {
				return nil, FromConnectError(req.Peer().Addr, err)
			}
			return nil, ToConnectError(err)
		}
	})
}
