package testkit

import (
	"context"
	"strings"
	"testing"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/structpb"

	"github.com/pomelo-go/pomelo/runtime"
)

// StructHandler handles a route whose request and response are free-form
// JSON objects (google.protobuf.Struct).
type StructHandler func(ctx context.Context, s runtime.Session, in *structpb.Struct) (*structpb.Struct, error)

// HandleStruct registers route on r (an App: Member.App) with a handler of
// free-form JSON objects, for tests that need a route without declaring it
// in a .proto file. The route's first part is its server type. A body that
// does not decode is answered BAD_REQUEST; it fails the test when the route
// cannot be registered.
func HandleStruct(t testing.TB, r runtime.HandlerRegistrar, route string, fn StructHandler) {
	t.Helper()
	serverType, _, _ := strings.Cut(route, ".")
	err := r.RegisterHandler(runtime.HandlerDesc{Route: route, ServerType: serverType, Handle: func(ctx context.Context, s runtime.Session, ser runtime.Serializer, body []byte) (proto.Message, error) {
		in := &structpb.Struct{}
		if err := ser.Unmarshal(body, in); err != nil {
			return nil, runtime.BadRequest(route, err)
		}
		out, err := fn(ctx, s, in)
		if err != nil || out == nil {
			return nil, err
		}
		return out, nil
	}})
	if err != nil {
		t.Fatalf("testkit: register %s: %v", route, err)
	}
}

// Struct builds a google.protobuf.Struct from a Go map, panicking on values
// a Struct cannot hold (a test's own mistake).
func Struct(kv map[string]any) *structpb.Struct {
	s, err := structpb.NewStruct(kv)
	if err != nil {
		panic(err)
	}
	return s
}
