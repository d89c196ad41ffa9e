package node

import (
	"context"

	"connectrpc.com/connect"

	sysv1 "github.com/pomelo-go/pomelo/gen/pomelo/sys/v1"
	"github.com/pomelo-go/pomelo/gen/pomelo/sys/v1/sysv1connect"
	"github.com/pomelo-go/pomelo/runtime"
	"github.com/pomelo-go/pomelo/runtime/session"
)

// adminRemote serves AdminRemote, what the `pomelo` admin commands ask, on
// every server.
type adminRemote struct {
	sysv1connect.UnimplementedAdminRemoteHandler
	n *Node
}

func (h *adminRemote) Status(context.Context, *connect.Request[sysv1.StatusRequest]) (*connect.Response[sysv1.StatusResponse], error) {
	self := h.n.cfg.Self
	res := &sysv1.StatusResponse{
		Id:       self.ID,
		Type:     self.Type,
		Frontend: h.n.srv.Frontend(),
		Members:  int64(len(h.n.view.Load().byID)),
	}
	if res.Frontend {
		svc := h.n.srv.Sessions()
		res.Sessions, res.BoundSessions = int64(svc.Count()), int64(svc.BoundCount())
	}
	return connect.NewResponse(res), nil
}

func (h *adminRemote) BroadcastAll(_ context.Context, r *connect.Request[sysv1.BroadcastAllRequest]) (*connect.Response[sysv1.BroadcastAllResponse], error) {
	if !h.n.srv.Frontend() {
		return nil, runtime.Errorf(runtime.ErrNotFound, "%s is not a frontend", h.n.cfg.Self.ID)
	}
	if r.Msg.Payload == nil {
		return nil, errNoPayload
	}
	svc := h.n.srv.Sessions()
	var targets []*session.Session
	svc.Range(func(s *session.Session) bool {
		if !r.Msg.BoundOnly || s.UID() != "" {
			targets = append(targets, s)
		}
		return true
	})
	sent, err := svc.PushBodyToSessions(r.Msg.Route, payloadBody{r.Msg.Payload}, targets)
	if err != nil && isEncodeError(err) {
		return nil, err
	}
	return connect.NewResponse(&sysv1.BroadcastAllResponse{Sent: int64(sent)}), nil
}
