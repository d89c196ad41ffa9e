package runtime

import (
	"context"

	"google.golang.org/protobuf/proto"
)

// Request is one client message going through the handling chain.
type Request struct {
	// Route is the full route, "serverType.handler.method".
	Route string
	// ID is the request id; 0 for a notify.
	ID uint64
	// Session is the session the message came from.
	Session Session
	// Serializer decodes the body and encodes the response.
	Serializer Serializer
	// Body is the encoded request message.
	Body []byte
}

// Notify reports whether the message is a notify (no response is sent).
func (r *Request) Notify() bool { return r.ID == 0 }

// Result is the outcome of a request, which after-filters may change.
type Result struct {
	// Message is the handler's response when it ran on this server.
	Message proto.Message
	// Body is the encoded response when it came encoded from a backend.
	Body []byte
	// Err is the error answered instead of a response.
	Err error
}

// Filter is a before/after filter of the handling chain. Before runs before
// the handler, in registration order; an error stops the chain and is
// answered. After runs after the handler, in reverse order, for every
// filter whose Before ran (even when the chain failed), and may change the
// result. Before may return a derived context, which the handler and After
// see.
type Filter interface {
	Before(ctx context.Context, r *Request) (context.Context, error)
	After(ctx context.Context, r *Request, res *Result)
}

// FilterFuncs makes a Filter of two functions; either may be nil.
type FilterFuncs struct {
	BeforeFunc func(ctx context.Context, r *Request) (context.Context, error)
	AfterFunc  func(ctx context.Context, r *Request, res *Result)
}

// Before implements Filter.
func (f FilterFuncs) Before(ctx context.Context, r *Request) (context.Context, error) {
	if f.BeforeFunc == nil {
		return ctx, nil
	}
	return f.BeforeFunc(ctx, r)
}

// After implements Filter.
func (f FilterFuncs) After(ctx context.Context, r *Request, res *Result) {
	if f.AfterFunc != nil {
		f.AfterFunc(ctx, r, res)
	}
}
