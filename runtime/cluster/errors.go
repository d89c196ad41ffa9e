package cluster

import (
	"errors"

	"connectrpc.com/connect"

	sysv1 "github.com/pomelo-go/pomelo/gen/pomelo/sys/v1"
	"github.com/pomelo-go/pomelo/runtime"
)

// toProtoError converts an error for a ForwardResponse.
func toProtoError(err error) *sysv1.Error {
	e := runtime.AsError(err)
	return &sysv1.Error{Code: e.Code, Name: e.Name, Message: e.Message}
}

// fromProtoError converts a ForwardResponse error back.
func fromProtoError(e *sysv1.Error) *runtime.Error {
	return &runtime.Error{Code: e.GetCode(), Name: e.GetName(), Message: e.GetMessage()}
}

// toConnectError converts an error for a sys service answer.
func toConnectError(err error) error { return runtime.ToConnectError(err) }

// errorFromConnect returns the *runtime.Error carried in a Connect error's
// details, or nil.
func errorFromConnect(ce *connect.Error) *runtime.Error {
	var e *runtime.Error
	if errors.As(runtime.FromConnectError("", ce), &e) && len(ce.Details()) > 0 {
		return e
	}
	return nil
}
