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

// toConnectError converts an error for a sys service answer, keeping the
// runtime.Error in the details.
func toConnectError(err error) error {
	if err == nil {
		return nil
	}
	e := runtime.AsError(err)
	code := connect.CodeInternal
	switch e.Name {
	case runtime.ErrNameNotFound:
		code = connect.CodeNotFound
	case runtime.ErrNameBadRequest, runtime.ErrNameNotBound:
		code = connect.CodeInvalidArgument
	case runtime.ErrNameUnavailable, runtime.ErrNameClosed:
		code = connect.CodeUnavailable
	case runtime.ErrNameTimeout:
		code = connect.CodeDeadlineExceeded
	case runtime.ErrNameOverloaded, runtime.ErrNameRateLimited:
		code = connect.CodeResourceExhausted
	}
	ce := connect.NewError(code, errors.New(e.Message))
	if d, derr := connect.NewErrorDetail(&sysv1.Error{Code: e.Code, Name: e.Name, Message: e.Message}); derr == nil {
		ce.AddDetail(d)
	}
	return ce
}

// errorFromConnect returns the runtime.Error carried in a connect error's
// details, or nil.
func errorFromConnect(ce *connect.Error) *runtime.Error {
	for _, d := range ce.Details() {
		v, err := d.Value()
		if err != nil {
			continue
		}
		if pe, ok := v.(*sysv1.Error); ok {
			return fromProtoError(pe)
		}
	}
	return nil
}
