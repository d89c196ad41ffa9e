package channel

import (
	"context"
	"slices"

	"google.golang.org/protobuf/proto"

	"github.com/pomelo-go/pomelo/runtime"
	"github.com/pomelo-go/pomelo/runtime/session"
)

// Delivery pushes messages to users held by one frontend. On a frontend,
// LocalDelivery serves its own sessions; the cluster layer supplies a
// Delivery that reaches the other frontends over RPC
// (a push stream per frontend, internal/node). A Delivery must be safe for
// concurrent use.
type Delivery interface {
	// PushToUIDs pushes msg under route to every session that frontend
	// frontendID holds for the uids, and returns the uids it could not reach
	// (those with no session on that frontend). When the frontend cannot be
	// reached at all, it returns every uid as failed along with the error.
	//
	// uids is shared with other calls and must not be modified; it may be
	// kept after the call returns. msg must not be modified either: the same
	// value is handed to every frontend of a push.
	PushToUIDs(ctx context.Context, frontendID, route string, msg proto.Message, uids []string) (failed []string, err error)
}

// DeliveryFunc adapts a function to a Delivery.
type DeliveryFunc func(ctx context.Context, frontendID, route string, msg proto.Message, uids []string) (failed []string, err error)

// PushToUIDs implements Delivery by calling f.
func (f DeliveryFunc) PushToUIDs(ctx context.Context, frontendID, route string, msg proto.Message, uids []string) ([]string, error) {
	return f(ctx, frontendID, route, msg, uids)
}

// Push is one push of a batch: msg under route to the uids.
type Push struct {
	// Route is the push route, such as "onChat".
	Route string
	// Msg is the message, shared and read-only.
	Msg proto.Message
	// UIDs are the receivers, shared and read-only.
	UIDs []string
}

// BatchDelivery is a Delivery that can carry several pushes to one frontend
// in one call. BatchScheduler uses PushBatch, when the Delivery implements
// it, to send everything queued for a frontend in one call per flush
// instead of one call per push: an RPC Delivery pays the cost of a call once
// per flush.
type BatchDelivery interface {
	Delivery
	// PushBatch delivers the pushes to frontend frontendID, in order.
	// failed[i] lists the uids of pushes[i] that could not be reached;
	// failed is either nil or as long as pushes. When err is not nil and
	// failed is nil, every uid of every push counts as failed.
	PushBatch(ctx context.Context, frontendID string, pushes []Push) (failed [][]string, err error)
}

// LocalDelivery returns a Delivery that pushes through svc to the sessions
// of svc's own frontend. For any other frontend id it returns every uid as
// failed with an error wrapping runtime.ErrUnavailable. When ctx is done
// before the push, every uid fails with ctx's error.
func LocalDelivery(svc *session.Service) Delivery {
	if svc == nil {
		panic("channel: LocalDelivery with a nil session service")
	}
	return localDelivery{svc: svc}
}

type localDelivery struct {
	svc *session.Service
}

func (l localDelivery) PushToUIDs(ctx context.Context, frontendID, route string, msg proto.Message, uids []string) ([]string, error) {
	if frontendID != l.svc.FrontendID() {
		return slices.Clone(uids), runtime.Errorf(runtime.ErrUnavailable,
			"frontend %q is not reachable from local frontend %q", frontendID, l.svc.FrontendID())
	}
	if err := ctx.Err(); err != nil {
		return slices.Clone(uids), err
	}
	return l.svc.PushToUIDs(route, msg, uids)
}
