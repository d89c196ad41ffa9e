package node

import (
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

// asUnavailable converts the error of a call to serverID into an
// *runtime.Error: structured errors from the remote side are kept,
// transport failures become UNAVAILABLE.
func asUnavailable(serverID string, err error) error {
	return runtime.FromConnectError(serverID, err)
}
