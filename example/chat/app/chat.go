package app

import (
	"context"
	"log/slog"
	"slices"
	"sync"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/emptypb"
	"google.golang.org/protobuf/types/known/structpb"

	"github.com/pomelo-go/pomelo"
	chatv1 "github.com/pomelo-go/pomelo/example/chat/gen/chat/v1"
	"github.com/pomelo-go/pomelo/runtime"
	"github.com/pomelo-go/pomelo/runtime/channel"
	"github.com/pomelo-go/pomelo/runtime/cluster"
	"github.com/pomelo-go/pomelo/runtime/session"
)

// rooms is the state of one "chat" server: its rooms, each a channel whose
// members sit on any connector. It serves chat.chatHandler.* (forwarded by
// the connectors) and ChatRemote (called by them).
type rooms struct {
	chatv1.UnimplementedChatHandlerServer
	chatv1.UnimplementedChatRemoteServer

	app      *pomelo.App
	serverID string
	channels *channel.Service
	log      *slog.Logger

	mu    sync.Mutex
	byRID map[string]*room
}

// room is one room. Its lock is held while pushing, so that the members of
// a room see its events in the order they happened.
type room struct {
	rid string
	ch  *channel.Channel

	mu      sync.Mutex
	members map[string]*chatv1.Member // by uid
	order   []string                  // uids, in the order they entered
	gone    bool                      // emptied and removed from rooms
}

func newRooms(app *pomelo.App) *rooms {
	rs := &rooms{app: app, serverID: app.ID(), channels: app.Channels(), log: app.Logger(), byRID: map[string]*room{}}
	app.OnSessionClosed(rs.sessionClosed)
	return rs
}

// sessionClosed takes the sessions of a connector that is gone out of their
// rooms, so that the rooms hear onLeave. A connector that is up reports the
// closes of its sessions itself (ChatRemote.Leave), knowing their reason:
// a session replaced by a relogin does not leave.
func (rs *rooms) sessionClosed(ev cluster.SessionEvent) {
	if ev.Session.UID != "" {
		return
	}
	rs.mu.Lock()
	all := make([]*room, 0, len(rs.byRID))
	for _, r := range rs.byRID {
		all = append(all, r)
	}
	rs.mu.Unlock()
	var left []*chatv1.LeaveRequest
	for _, r := range all {
		r.mu.Lock()
		for _, m := range r.members {
			if m.GetFrontendId() == ev.Session.FrontendID && m.GetSessionId() == ev.Session.ID {
				left = append(left, &chatv1.LeaveRequest{Rid: r.rid, Member: m})
			}
		}
		r.mu.Unlock()
	}
	for _, req := range left {
		rs.Leave(context.Background(), req)
	}
}

// lockRoom returns room rid, locked, creating it when create is set; nil
// when it does not exist.
func (rs *rooms) lockRoom(rid string, create bool) *room {
	for {
		rs.mu.Lock()
		r := rs.byRID[rid]
		if r == nil {
			if !create {
				rs.mu.Unlock()
				return nil
			}
			r = &room{rid: rid, ch: rs.channels.GetOrCreate(rid, channel.ChannelConfig{LeaveOnClose: true}), members: map[string]*chatv1.Member{}}
			rs.byRID[rid] = r
			rs.log.Info("room opened", "rid", rid)
		}
		rs.mu.Unlock()
		r.mu.Lock()
		if !r.gone {
			return r
		}
		// Emptied meanwhile: look again.
		r.mu.Unlock()
	}
}

// usernames returns the members' usernames in the order they entered.
func (r *room) usernames() []string {
	out := make([]string, 0, len(r.order))
	for _, uid := range r.order {
		out = append(out, r.members[uid].GetUsername())
	}
	return out
}

// Join implements ChatRemote.Join.
func (rs *rooms) Join(ctx context.Context, req *chatv1.JoinRequest) (*chatv1.JoinResponse, error) {
	m := req.GetMember()
	if req.GetRid() == "" || m.GetUid() == "" || m.GetFrontendId() == "" {
		return nil, pomelo.Errorf(pomelo.ErrBadRequest, "join needs a rid, a uid and a frontend id")
	}
	// Hear of the session's close: the channel drops it, and a connector
	// that is gone has its users leave (sessionClosed).
	if err := rs.app.WatchSession(ctx, m.GetFrontendId(), m.GetSessionId()); err != nil {
		return nil, err
	}
	sess := session.NewLocal(session.Snapshot{ID: m.GetSessionId(), FrontendID: m.GetFrontendId(), UID: m.GetUid()}, nil)
	r := rs.lockRoom(req.GetRid(), true)
	defer r.mu.Unlock()
	if old, ok := r.members[m.GetUid()]; ok {
		// A relogin: the uid's new session replaces the old one.
		if err := r.ch.AddSession(sess); err != nil {
			return nil, err
		}
		r.members[m.GetUid()] = proto.CloneOf(m)
		rs.log.Debug("member replaced", "rid", r.rid, "uid", m.GetUid(), "old", old.GetFrontendId(), "new", m.GetFrontendId())
	} else {
		// Tell the others first: the newcomer gets the user list instead.
		pushRoom(ctx, rs, r, chatv1.ChatPushOnAdd, &chatv1.UserEvent{User: m.GetUsername()})
		if err := r.ch.AddSession(sess); err != nil {
			return nil, err
		}
		r.members[m.GetUid()] = proto.CloneOf(m)
		r.order = append(r.order, m.GetUid())
	}
	return &chatv1.JoinResponse{Users: r.usernames()}, nil
}

// Leave implements ChatRemote.Leave.
func (rs *rooms) Leave(ctx context.Context, req *chatv1.LeaveRequest) (*emptypb.Empty, error) {
	m := req.GetMember()
	r := rs.lockRoom(req.GetRid(), false)
	if r == nil {
		return &emptypb.Empty{}, nil
	}
	defer r.mu.Unlock()
	cur, ok := r.members[m.GetUid()]
	if !ok || cur.GetFrontendId() != m.GetFrontendId() || cur.GetSessionId() != m.GetSessionId() {
		return &emptypb.Empty{}, nil // not a member, or replaced by a relogin
	}
	delete(r.members, m.GetUid())
	r.order = slices.DeleteFunc(r.order, func(uid string) bool { return uid == m.GetUid() })
	if err := r.ch.LeaveFrom(m.GetUid(), m.GetFrontendId()); err != nil {
		return nil, err
	}
	if len(r.members) == 0 {
		r.gone = true
		// Under rs.mu, so that a Join creating the room again gets a new
		// channel, not this one.
		rs.mu.Lock()
		delete(rs.byRID, r.rid)
		err := rs.channels.Destroy(r.rid)
		rs.mu.Unlock()
		if err != nil {
			rs.log.Debug("destroy channel", "rid", r.rid, "error", err)
		}
		rs.log.Info("room closed", "rid", r.rid)
		return &emptypb.Empty{}, nil
	}
	pushRoom(ctx, rs, r, chatv1.ChatPushOnLeave, &chatv1.UserEvent{User: cur.GetUsername()})
	return &emptypb.Empty{}, nil
}

// Lookup implements ChatRemote.Lookup.
func (rs *rooms) Lookup(_ context.Context, req *chatv1.LookupRequest) (*chatv1.LookupResponse, error) {
	r := rs.lockRoom(req.GetRid(), false)
	if r == nil {
		return &chatv1.LookupResponse{}, nil
	}
	defer r.mu.Unlock()
	return &chatv1.LookupResponse{Found: true, Members: int32(len(r.members))}, nil
}

// Send implements chat.chatHandler.send: target "*" reaches the whole room,
// the sender included; a username reaches that user and the sender.
func (rs *rooms) Send(ctx context.Context, s pomelo.Session, req *chatv1.SendRequest) (*chatv1.SendResponse, error) {
	rid, _ := s.Get(SettingRID)
	if s.UID() == "" || rid == "" {
		return nil, pomelo.Errorf(pomelo.ErrNotBound, "enter a room first (connector.entryHandler.enter)")
	}
	r := rs.lockRoom(rid, false)
	if r == nil {
		return nil, pomelo.Errorf(pomelo.ErrNotFound, "room %q is not on %s: enter it again", rid, rs.serverID)
	}
	defer r.mu.Unlock()
	from, ok := r.members[s.UID()]
	if !ok || from.GetFrontendId() != s.FrontendID() || from.GetSessionId() != s.ID() {
		return nil, pomelo.Errorf(pomelo.ErrNotFound, "you are not in room %q: enter it again", rid)
	}
	msg := &chatv1.ChatMessage{Msg: req.GetContent(), From: from.GetUsername(), Target: req.GetTarget()}
	if req.GetTarget() == "*" {
		pushRoom(ctx, rs, r, chatv1.ChatPushOnChat, msg)
		return &chatv1.SendResponse{Code: 200}, nil
	}
	to, ok := r.members[req.GetTarget()+"*"+rid]
	if !ok {
		return nil, pomelo.Errorf(pomelo.ErrNotFound, "no user %q in room %q", req.GetTarget(), rid)
	}
	receivers := []channel.Member{
		{UID: to.GetUid(), FrontendID: to.GetFrontendId()},
		{UID: from.GetUid(), FrontendID: from.GetFrontendId()},
	}
	if _, err := chatv1.ChatPushOnChat.ToGroup(ctx, memberGroup{rs.channels, receivers}, msg); err != nil {
		rs.log.Warn("private message not delivered", "rid", rid, "error", err)
	}
	return &chatv1.SendResponse{Code: 200}, nil
}

// Echo implements chat.chatHandler.echo.
func (rs *rooms) Echo(_ context.Context, _ pomelo.Session, req *structpb.Struct) (*structpb.Struct, error) {
	return req, nil
}

// pushRoom pushes msg under a typed route to room r, whose lock the caller
// holds. Members that cannot be reached (their session just closed) are
// only logged: their Leave follows.
func pushRoom[T proto.Message](ctx context.Context, rs *rooms, r *room, route runtime.PushRoute[T], msg T) {
	failed, err := route.ToGroup(ctx, r.ch, msg)
	if err != nil || len(failed) > 0 {
		rs.log.Debug("push not delivered to every member", "rid", r.rid, "route", route.Route, "failed", failed, "error", err)
	}
}

// memberGroup is a list of receivers as a runtime.RoutePusher, for the
// typed push routes.
type memberGroup struct {
	svc     *channel.Service
	members []channel.Member
}

// PushMessage implements runtime.RoutePusher.
func (g memberGroup) PushMessage(ctx context.Context, route string, msg proto.Message) ([]string, error) {
	return g.svc.PushToMembers(ctx, route, msg, g.members)
}
