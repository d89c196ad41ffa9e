package pomelo_test

import (
	"context"
	"errors"
	"testing"

	"github.com/pomelo-go/pomelo"
	testingv1 "github.com/pomelo-go/pomelo/gen/pomelo/testing/v1"
	"github.com/pomelo-go/pomelo/runtime"
)

// rootEcho implements a generated handler interface with the root
// package's names only.
type rootEcho struct {
	testingv1.UnimplementedEchoHandlerServer
}

func (rootEcho) Echo(_ context.Context, s pomelo.Session, req *testingv1.EchoRequest) (*testingv1.EchoResponse, error) {
	if s.UID() == "" {
		return nil, pomelo.Errorf(pomelo.ErrNotBound, "log in first")
	}
	return &testingv1.EchoResponse{Text: req.Text}, nil
}

// Code that imports only the root package implements generated interfaces
// and makes and matches the framework's named errors: the root names are
// the runtime package's.
func TestRootNamesAreTheRuntimeNames(t *testing.T) {
	var _ testingv1.EchoHandlerServer = rootEcho{}
	pairs := []struct{ root, rt *pomelo.Error }{
		{pomelo.ErrUnknownRoute, runtime.ErrUnknownRoute}, {pomelo.ErrBadRequest, runtime.ErrBadRequest},
		{pomelo.ErrNotBound, runtime.ErrNotBound}, {pomelo.ErrUnavailable, runtime.ErrUnavailable},
		{pomelo.ErrTimeout, runtime.ErrTimeout}, {pomelo.ErrOverloaded, runtime.ErrOverloaded},
		{pomelo.ErrRateLimited, runtime.ErrRateLimited}, {pomelo.ErrInternal, runtime.ErrInternal},
		{pomelo.ErrNotFound, runtime.ErrNotFound}, {pomelo.ErrClosed, runtime.ErrClosed},
	}
	for _, p := range pairs {
		if p.root != p.rt {
			t.Errorf("pomelo.Err for %s is not runtime's sentinel", p.rt.Name)
		}
		if !errors.Is(runtime.Errorf(p.rt, "x"), p.root) || !errors.Is(pomelo.Errorf(p.root, "x"), p.rt) {
			t.Errorf("%s does not match across the two names", p.rt.Name)
		}
	}
	full := pomelo.DefineError(1001, "ROOM_FULL")
	if err := pomelo.Errorf(full, "room %d", 7); !errors.Is(err, full) || err.Error() != "ROOM_FULL (1001): room 7" {
		t.Errorf("Errorf(DefineError) = %v", err)
	}
	if e := pomelo.NewError(42, "m"); e.Code != 42 || e.Name != "" || e.Message != "m" {
		t.Errorf("NewError = %+v", e)
	}
	if k, ok := runtime.RouteKeyFromContext(pomelo.WithRouteKey(context.Background(), "room-1")); !ok || k != "room-1" {
		t.Errorf("WithRouteKey: %q %v", k, ok)
	}
}
