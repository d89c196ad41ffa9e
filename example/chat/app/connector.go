package app

import (
	"context"
	"errors"
	"log/slog"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/pomelo-go/pomelo"
	chatv1 "github.com/pomelo-go/pomelo/example/chat/gen/chat/v1"
	"github.com/pomelo-go/pomelo/runtime/online"
	"github.com/pomelo-go/pomelo/runtime/session"
)

// Limits on what users type.
const (
	maxUsernameLen = 32
	maxRIDLen      = 64
)

// entry serves connector.entryHandler.* on "connector" servers and takes
// closed sessions out of their rooms.
type entry struct {
	chatv1.UnimplementedEntryHandlerServer
	app    *pomelo.App
	chat   chatv1.ChatRemoteClient
	online *online.Service // nil without Redis
	log    *slog.Logger
}

// newEntry returns the entry handler of the connector app. With on (the
// server's online status in Redis), users log in through it; without, the
// connector kicks a uid's other sessions itself.
func newEntry(app *pomelo.App, on *online.Service) *entry {
	c := &entry{app: app, chat: chatv1.NewChatRemoteClient(app), online: on, log: app.Logger()}
	app.Sessions().OnClosed(c.sessionClosed)
	return c
}

func checkName(what, v string, maxLen int) error {
	switch {
	case v == "":
		return pomelo.Errorf(pomelo.ErrBadRequest, "%s is empty", what)
	case len(v) > maxLen:
		return pomelo.Errorf(pomelo.ErrBadRequest, "%s is longer than %d bytes", what, maxLen)
	case !utf8.ValidString(v):
		return pomelo.Errorf(pomelo.ErrBadRequest, "%s is not UTF-8", what)
	}
	return nil
}

// Enter binds the session to "username*rid", kicks that uid's other
// sessions with the reason "relogin" (through the online status in Redis
// when the process uses it), records the room in the session and
// joins the room on its chat server.
func (c *entry) Enter(ctx context.Context, s pomelo.Session, req *chatv1.EnterRequest) (*chatv1.EnterResponse, error) {
	username, rid := req.GetUsername(), req.GetRid()
	if err := checkName("username", username, maxUsernameLen); err != nil {
		return nil, err
	}
	if err := checkName("rid", rid, maxRIDLen); err != nil {
		return nil, err
	}
	if strings.Contains(username, "*") {
		return nil, pomelo.Errorf(pomelo.ErrBadRequest, "username must not contain '*'")
	}
	uid := username + "*" + rid
	switch cur := s.UID(); cur {
	case uid:
		// Entering again on the same connection: join again, which
		// answers the user list.
	case "":
		if err := c.login(ctx, s, uid); err != nil {
			return nil, err
		}
	default:
		return nil, pomelo.Errorf(pomelo.ErrBadRequest, "this connection already entered as %q: connect again to change rooms", cur)
	}

	chatID, err := c.placeRoom(ctx, rid)
	if err != nil {
		return nil, err
	}
	s.Set(SettingRID, rid)
	s.Set(SettingChatServer, chatID)
	if err := s.Push(ctx, SettingRID, SettingChatServer); err != nil {
		return nil, err
	}
	member := &chatv1.Member{Uid: uid, Username: username, FrontendId: s.FrontendID(), SessionId: s.ID()}
	res, err := c.chat.JoinTo(ctx, chatID, &chatv1.JoinRequest{Rid: rid, Member: member})
	if err != nil {
		return nil, err // a *runtime.Error: the remote's own, or UNAVAILABLE
	}
	// A session that closed while it was joining had its Leave handled
	// before the Join: take it out again.
	if _, alive := c.app.Sessions().Get(s.ID()); !alive {
		c.leave(chatID, rid, member)
		return nil, pomelo.Errorf(pomelo.ErrClosed, "session closed while entering")
	}
	return &chatv1.EnterResponse{Code: 200, Users: res.GetUsers()}, nil
}

// login binds s to uid, one session per uid in the whole cluster: the
// uid's earlier session, wherever it is, is kicked with the reason
// "relogin".
func (c *entry) login(ctx context.Context, s pomelo.Session, uid string) error {
	if c.online != nil {
		// Decided in Redis, so that two logins racing on two connectors
		// end with one session.
		return c.online.Login(ctx, s, uid)
	}
	// Kick the uid's sessions on the other connectors. On this connector,
	// the session.KickOld policy does the same as the session is bound.
	c.kickElsewhere(ctx, uid)
	return s.Bind(ctx, uid)
}

// kickElsewhere kicks uid's sessions on every other connector.
func (c *entry) kickElsewhere(ctx context.Context, uid string) {
	for _, fe := range c.app.Members(TypeConnector) {
		if fe.ID == c.app.ID() {
			continue
		}
		if n, err := c.app.BackendSessions().KickByUID(ctx, fe.ID, uid, session.KickReasonRelogin); err != nil {
			c.log.Warn("relogin: cannot kick on another connector", "connector", fe.ID, "uid", uid, "error", err)
		} else if n > 0 {
			c.log.Info("relogin: kicked the old session", "connector", fe.ID, "uid", uid)
		}
	}
}

// placeRoom returns the chat server of room rid: the one that holds it
// already, else the one rid hashes to.
func (c *entry) placeRoom(ctx context.Context, rid string) (string, error) {
	results, err := c.chat.LookupAll(ctx, &chatv1.LookupRequest{Rid: rid})
	if err != nil {
		return "", err
	}
	for _, r := range results { // in server id order
		if r.Err == nil && r.Response.GetFound() {
			return r.ServerID, nil
		}
	}
	return c.app.RouteServer(pomelo.WithRouteKey(ctx, rid), TypeChat)
}

// sessionClosed takes a closed session out of its room, so that the room
// hears onLeave. A session replaced by a relogin is left alone: the new
// session of the same uid joins the same room and takes its place there,
// without the others seeing the user leave and enter again.
func (c *entry) sessionClosed(s *session.Session, reason string) {
	uid := s.UID()
	rid, _ := s.Get(SettingRID)
	chatID, _ := s.Get(SettingChatServer)
	if uid == "" || rid == "" || chatID == "" || reason == session.KickReasonRelogin {
		return
	}
	username := strings.TrimSuffix(uid, "*"+rid)
	c.leave(chatID, rid, &chatv1.Member{Uid: uid, Username: username, FrontendId: s.FrontendID(), SessionId: s.ID()})
}

// leave calls ChatRemote.Leave in the background: session close hooks must
// not wait for the network.
func (c *entry) leave(chatID, rid string, m *chatv1.Member) {
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_, err := c.chat.LeaveTo(ctx, chatID, &chatv1.LeaveRequest{Rid: rid, Member: m})
		switch {
		case err == nil:
		case isUnavailable(err):
			// The chat server is gone, and the room with it.
			c.log.Debug("cannot leave the room: its server is gone", "chat", chatID, "rid", rid, "uid", m.GetUid(), "error", err)
		default:
			c.log.Warn("cannot leave the room", "chat", chatID, "rid", rid, "uid", m.GetUid(), "error", err)
		}
	}()
}

// isUnavailable reports whether a remote call failed because the server is
// not there (any more). Remote calls return *runtime.Error (the cluster's
// error interceptor maps transport failures to UNAVAILABLE).
func isUnavailable(err error) bool {
	return errors.Is(err, pomelo.ErrUnavailable)
}
