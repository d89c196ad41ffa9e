package runtime

import (
	"context"

	"google.golang.org/protobuf/proto"
)

// Pusher pushes messages to users anywhere in the cluster. The App
// implements it (on a frontend for its own sessions; across frontends through
// channelRemote).
type Pusher interface {
	// PushToUIDs pushes msg under route to every session of the uids and
	// returns the uids that have no session.
	PushToUIDs(ctx context.Context, route string, msg proto.Message, uids []string) (failed []string, err error)
	// Broadcast pushes msg under route to every session of every frontend of
	// frontendType.
	Broadcast(ctx context.Context, frontendType, route string, msg proto.Message, opts BroadcastOptions) error
}

// BroadcastOptions tune a broadcast.
type BroadcastOptions struct {
	// BoundOnly limits the broadcast to sessions bound to a uid.
	BoundOnly bool
	// Filter names a broadcast filter registered on the frontends; empty for
	// none.
	Filter string
	// FilterParam is handed to the filter.
	FilterParam []byte
}

// RoutePusher pushes a message to a group of receivers it knows, such as a
// channel.
type RoutePusher interface {
	// PushMessage pushes msg under route to the receivers and returns the
	// uids that could not be reached.
	PushMessage(ctx context.Context, route string, msg proto.Message) (failed []string, err error)
}

// PushRoute is a typed push route. protoc-gen-pomelo generates one variable
// per method of a PUSH service, so that pushing a message of the wrong type
// does not compile.
type PushRoute[T proto.Message] struct {
	// Route is the push route, such as "onChat".
	Route string
}

// NewPushRoute returns a typed push route.
func NewPushRoute[T proto.Message](route string) PushRoute[T] {
	return PushRoute[T]{Route: route}
}

// ToSession pushes msg to one session's client.
func (p PushRoute[T]) ToSession(ctx context.Context, s Session, msg T) error {
	return s.Send(ctx, p.Route, msg)
}

// ToUIDs pushes msg to every session of the uids and returns the uids that
// have no session.
func (p PushRoute[T]) ToUIDs(ctx context.Context, pu Pusher, uids []string, msg T) ([]string, error) {
	return pu.PushToUIDs(ctx, p.Route, msg, uids)
}

// ToGroup pushes msg to a group of receivers such as a channel, and returns
// the uids that could not be reached.
func (p PushRoute[T]) ToGroup(ctx context.Context, g RoutePusher, msg T) ([]string, error) {
	return g.PushMessage(ctx, p.Route, msg)
}

// Broadcast pushes msg to every session of every frontend of frontendType.
func (p PushRoute[T]) Broadcast(ctx context.Context, pu Pusher, frontendType string, opts BroadcastOptions, msg T) error {
	return pu.Broadcast(ctx, frontendType, p.Route, msg, opts)
}
