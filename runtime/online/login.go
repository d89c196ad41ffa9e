package online

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/pomelo-go/pomelo/runtime"
	"github.com/pomelo-go/pomelo/runtime/session"
)

// Login binds uid to the session sess (a frontend's session or a backend's
// view of one) under the cluster-wide policy of Config.Policy:
//
//   - session.AllowMany: Login is sess.Bind.
//   - session.RejectNew: when another session of uid is logged in anywhere
//     in the cluster, Login fails with an error matching
//     session.ErrDuplicateLogin and binds nothing.
//   - session.KickOld: the session logged in before is kicked, wherever it
//     is, with the reason session.KickReasonRelogin, and sess is bound.
//
// Which login wins is decided atomically in Redis, so two logins of one
// uid racing on two frontends end with exactly one session: under
// RejectNew the later is refused, under KickOld the earlier is kicked
// (before or after its own bind; a login whose session is kicked before it
// binds fails). The login is released when its session unbinds or closes.
//
// The frontend holding sess must be attached to an online Service.
func (s *Service) Login(ctx context.Context, sess runtime.Session, uid string) error {
	if uid == "" {
		return runtime.Errorf(runtime.ErrBadRequest, "login: empty uid")
	}
	if s.cfg.Policy == session.AllowMany {
		return sess.Bind(ctx, uid)
	}
	if s.Node() == nil {
		return errors.New("online: login: not attached")
	}
	mode := "kick"
	if s.cfg.Policy == session.RejectNew {
		mode = "reject"
	}
	fid, sid := sess.FrontendID(), strconv.FormatUint(sess.ID(), 10)
	ownKey := s.ownKey(uid)
	for range 3 {
		rctx, cancel := context.WithTimeout(ctx, s.cfg.Timeout)
		res, err := loginScript.Run(rctx, s.rdb, []string{ownKey, s.AliveKey(fid)}, s.cfg.Prefix, mode, sid, fid).Slice()
		cancel()
		if err != nil {
			if strings.HasPrefix(err.Error(), "OFFLINE ") {
				return runtime.Errorf(runtime.ErrUnavailable, "login: %s", strings.TrimPrefix(err.Error(), "OFFLINE "))
			}
			return runtime.Errorf(runtime.ErrUnavailable, "login: online status: %v", err)
		}
		if len(res) != 4 {
			return fmt.Errorf("online: login: unexpected reply %v", res)
		}
		status, _ := res[0].(string)
		tok, _ := res[1].(string)
		prev, _ := res[2].(string)
		live, _ := res[3].(int64)
		switch status {
		case "same":
			return sess.Bind(ctx, uid)
		case "busy":
			gone, err := s.ownerGone(ctx, prev, uid)
			if err != nil {
				return err
			}
			if !gone {
				return runtime.Errorf(session.ErrDuplicateLogin, "uid %q is already logged in", uid)
			}
			// The owner's session is gone without releasing the login
			// (its record did not reach Redis): take it over.
			if !s.cas(ctx, ownKey, prev, tok) {
				continue
			}
			live = 0
		}
		// The login is claimed: finish kicking and releasing even if the
		// caller gives up.
		if live == 1 && prev != tok {
			s.kickOwner(context.WithoutCancel(ctx), prev)
		}
		if err := sess.Bind(ctx, uid); err != nil {
			s.cas(context.WithoutCancel(ctx), ownKey, tok, "")
			return err
		}
		return nil
	}
	return runtime.Errorf(runtime.ErrUnavailable, "login: uid %q: too many concurrent logins", uid)
}

// parseToken splits an owner token "<incarnation>:<sid>:<fid>".
func parseToken(tok string) (fid string, sid uint64, ok bool) {
	_, rest, ok1 := strings.Cut(tok, ":")
	sidStr, fid, ok2 := strings.Cut(rest, ":")
	sid, err := strconv.ParseUint(sidStr, 10, 64)
	return fid, sid, ok1 && ok2 && err == nil
}

// ownerGone reports whether the session of owner token tok no longer holds
// (or is about to hold) uid's login.
func (s *Service) ownerGone(ctx context.Context, tok, uid string) (bool, error) {
	fid, sid, ok := parseToken(tok)
	if !ok {
		return true, nil
	}
	cctx, cancel := context.WithTimeout(ctx, s.cfg.Timeout)
	defer cancel()
	ls, err := s.Node().BackendSessions().Get(cctx, fid, sid)
	if err != nil {
		if errors.Is(err, runtime.ErrNotFound) {
			return true, nil
		}
		return false, err
	}
	u := ls.UID()
	return u != "" && u != uid, nil
}

// kickOwner kicks the session of owner token tok, trying a few times.
func (s *Service) kickOwner(ctx context.Context, tok string) {
	fid, sid, ok := parseToken(tok)
	if !ok {
		return
	}
	var err error
	for i := range 3 {
		cctx, cancel := context.WithTimeout(ctx, s.cfg.Timeout)
		err = s.Node().BackendSessions().KickBySID(cctx, fid, sid, session.KickReasonRelogin)
		cancel()
		if err == nil || errors.Is(err, runtime.ErrNotFound) {
			return
		}
		if ctx.Err() != nil {
			break
		}
		time.Sleep(time.Duration(i+1) * 50 * time.Millisecond)
	}
	s.log.Error("login: could not kick the previous session", "frontend", fid, "session", sid, "error", err)
}

// cas replaces key's value from old to new ("" deletes it) and reports
// whether it did.
func (s *Service) cas(ctx context.Context, key, old, new string) bool {
	cctx, cancel := context.WithTimeout(ctx, s.cfg.Timeout)
	defer cancel()
	n, err := casScript.Run(cctx, s.rdb, []string{key}, old, new).Int()
	if err != nil {
		s.log.Warn("login: update owner", "key", key, "error", err)
	}
	return n == 1
}
