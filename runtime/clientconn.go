package runtime

import (
	"context"

	"google.golang.org/protobuf/proto"
)

// ClientConn is what generated typed clients need from a client connection
// (the client package implements it). Generated ...HandlerClient types call
// handler routes through it.
type ClientConn interface {
	// Request sends req to route and waits for the response, decoding it
	// into resp. An error response from the server is returned as an *Error.
	Request(ctx context.Context, route string, req, resp proto.Message) error
	// Notify sends req to route as a notify: the server sends no response.
	Notify(ctx context.Context, route string, req proto.Message) error
}
