package node

import (
	"context"

	"connectrpc.com/connect"
	"google.golang.org/protobuf/proto"

	sysv1 "github.com/pomelo-go/pomelo/gen/pomelo/sys/v1"
	"github.com/pomelo-go/pomelo/gen/pomelo/sys/v1/sysv1connect"
	"github.com/pomelo-go/pomelo/runtime"
	"github.com/pomelo-go/pomelo/runtime/session"
)

// origin performs session operations on the frontend that holds the
// session: locally when that is this server, over SessionRemote otherwise.
type origin struct{ n *Node }

func (o *origin) local(frontendID string) (*session.Service, bool) {
	if frontendID == o.n.cfg.Self.ID && o.n.srv.Frontend() {
		return o.n.srv.Sessions(), true
	}
	return nil, false
}

func (o *origin) sessionClient(frontendID string) (sysv1connect.SessionRemoteClient, error) {
	p, err := o.n.peer(frontendID)
	if err != nil {
		return nil, err
	}
	return p.session, nil
}

func (o *origin) Bind(ctx context.Context, frontendID string, sid uint64, uid string) error {
	if svc, ok := o.local(frontendID); ok {
		return svc.Bind(sid, uid)
	}
	cl, err := o.sessionClient(frontendID)
	if err != nil {
		return err
	}
	_, err = cl.Bind(ctx, connect.NewRequest(&sysv1.BindRequest{Sid: sid, Uid: uid}))
	return asUnavailable(frontendID, err)
}

func (o *origin) Unbind(ctx context.Context, frontendID string, sid uint64, uid string) error {
	if svc, ok := o.local(frontendID); ok {
		return svc.Unbind(sid, uid)
	}
	cl, err := o.sessionClient(frontendID)
	if err != nil {
		return err
	}
	_, err = cl.Unbind(ctx, connect.NewRequest(&sysv1.BindRequest{Sid: sid, Uid: uid}))
	return asUnavailable(frontendID, err)
}

func (o *origin) PushSettings(ctx context.Context, frontendID string, sid uint64, kv map[string]string, replace bool) error {
	if svc, ok := o.local(frontendID); ok {
		return svc.Origin().PushSettings(ctx, frontendID, sid, kv, replace)
	}
	cl, err := o.sessionClient(frontendID)
	if err != nil {
		return err
	}
	req := connect.NewRequest(&sysv1.PushSettingsRequest{Sid: sid, Settings: kv})
	if replace {
		_, err = cl.PushAll(ctx, req)
	} else {
		_, err = cl.Push(ctx, req)
	}
	return asUnavailable(frontendID, err)
}

func (o *origin) KickSession(ctx context.Context, frontendID string, sid uint64, reason string) error {
	if svc, ok := o.local(frontendID); ok {
		return svc.Kick(sid, reason)
	}
	cl, err := o.sessionClient(frontendID)
	if err != nil {
		return err
	}
	_, err = cl.KickBySid(ctx, connect.NewRequest(&sysv1.KickBySidRequest{Sid: sid, Reason: reason}))
	return asUnavailable(frontendID, err)
}

func (o *origin) SendTo(ctx context.Context, frontendID string, sid uint64, route string, msg proto.Message) error {
	if svc, ok := o.local(frontendID); ok {
		return svc.Origin().SendTo(ctx, frontendID, sid, route, msg)
	}
	p, err := newPayload(msg)
	if err != nil {
		return err
	}
	res, err := o.n.pushes.push(ctx, frontendID, &sysv1.StreamedPush{Route: route, Payload: p, Sids: []uint64{sid}, TraceContext: o.n.tracer.Carry(ctx)})
	if err != nil {
		return err
	}
	if len(res.FailedSids) > 0 {
		return runtime.Errorf(runtime.ErrNotFound, "no session %d on %s", sid, frontendID)
	}
	return nil
}

var _ session.Origin = (*origin)(nil)

// BackendSessions is Pomelo's BackendSessionService: sessions held by
// frontends, seen and acted on from any server.
type BackendSessions struct{ n *Node }

// BackendSessions returns the node's backend session service.
func (n *Node) BackendSessions() *BackendSessions { return n.bsess }

// Get returns a view of session sid on frontendID.
func (b *BackendSessions) Get(ctx context.Context, frontendID string, sid uint64) (*session.Local, error) {
	o := &origin{n: b.n}
	if svc, ok := o.local(frontendID); ok {
		s, ok := svc.Get(sid)
		if !ok {
			return nil, runtime.Errorf(runtime.ErrNotFound, "no session %d on %s", sid, frontendID)
		}
		return session.NewLocal(s.Snapshot(), o), nil
	}
	cl, err := o.sessionClient(frontendID)
	if err != nil {
		return nil, err
	}
	res, err := cl.GetBackendSessionBySid(ctx, connect.NewRequest(&sysv1.GetBySidRequest{Sid: sid}))
	if err != nil {
		return nil, asUnavailable(frontendID, err)
	}
	return session.NewLocal(snapshotFromProto(res.Msg), o), nil
}

// GetByUID returns views of every session of uid on frontendID.
func (b *BackendSessions) GetByUID(ctx context.Context, frontendID, uid string) ([]*session.Local, error) {
	o := &origin{n: b.n}
	var out []*session.Local
	if svc, ok := o.local(frontendID); ok {
		for _, s := range svc.GetByUID(uid) {
			out = append(out, session.NewLocal(s.Snapshot(), o))
		}
		return out, nil
	}
	cl, err := o.sessionClient(frontendID)
	if err != nil {
		return nil, err
	}
	res, err := cl.GetBackendSessionsByUid(ctx, connect.NewRequest(&sysv1.GetByUidRequest{Uid: uid}))
	if err != nil {
		return nil, asUnavailable(frontendID, err)
	}
	for _, s := range res.Msg.Sessions {
		out = append(out, session.NewLocal(snapshotFromProto(s), o))
	}
	return out, nil
}

// KickBySID kicks one session with reason.
func (b *BackendSessions) KickBySID(ctx context.Context, frontendID string, sid uint64, reason string) error {
	return (&origin{n: b.n}).KickSession(ctx, frontendID, sid, reason)
}

// KickByUID kicks every session of uid on frontendID (every frontend when
// frontendID is "", or those the node's locator names) and returns how
// many were kicked.
func (b *BackendSessions) KickByUID(ctx context.Context, frontendID, uid, reason string) (int, error) {
	o := &origin{n: b.n}
	targets := []string{frontendID}
	if frontendID == "" {
		targets = targets[:0]
		if groups, ok := b.n.locate(ctx, []string{uid}); ok {
			for fid := range groups {
				targets = append(targets, fid)
			}
		} else {
			for _, s := range b.n.Members("") {
				if s.Frontend {
					targets = append(targets, s.ID)
				}
			}
		}
	}
	total := 0
	var firstErr error
	for _, fid := range targets {
		if svc, ok := o.local(fid); ok {
			total += svc.KickByUID(uid, reason)
			continue
		}
		cl, err := o.sessionClient(fid)
		if err == nil {
			var res *connect.Response[sysv1.KickResponse]
			res, err = cl.KickByUid(ctx, connect.NewRequest(&sysv1.KickByUidRequest{Uid: uid, Reason: reason}))
			if err == nil {
				total += int(res.Msg.Kicked)
			}
		}
		if err != nil && firstErr == nil {
			firstErr = asUnavailable(fid, err)
		}
	}
	return total, firstErr
}
