// Package session holds the frontend session service (the real sessions of
// the client connections a frontend server holds; App.Sessions of the root
// package, github.com/pomelo-go/pomelo) and Local, the per-request view of a
// session that handlers see on frontends and backends alike, as the
// runtime.Session interface (pomelo.Session). Its Policy values are the
// single-session policies of the App's Config.SessionPolicy and of
// runtime/online.
//
// The session types, and which is which:
//
//   - Session (this package): the real session of one client connection,
//     held by the frontend that holds the connection (Pomelo's Session).
//     Only that frontend has it; Service finds it by id or uid.
//   - Local: the view a handler gets for one request (Pomelo's
//     FrontendSession on a frontend, BackendSession on a backend). It
//     implements runtime.Session (pomelo.Session), the interface handlers
//     take; its Set is local until Push, and its Bind, Kick and Send act on
//     the real session through an Origin (the frontend's Service.Origin, or
//     the cluster's, which reaches other frontends).
//   - Snapshot: the plain data of a session (id, frontend, uid, settings)
//     that travels with a forwarded request.
package session

import (
	"context"
	"maps"
	"net"
	"sync"
	"sync/atomic"

	"google.golang.org/protobuf/proto"

	"github.com/pomelo-go/pomelo/runtime"
)

// Conn is the client connection behind a frontend session. The connector
// implements it.
type Conn interface {
	// Send queues one or more encoded packages for the client. It never
	// blocks: a connection whose queue is full kicks itself as a slow
	// consumer and Send returns an error. The bytes may be shared with other
	// connections and must not be modified after the call.
	Send(pkgs []byte) error
	// Kick sends a KICK package with reason, flushes and closes.
	Kick(reason string)
	// Close closes the connection without a KICK.
	Close()
	// RemoteAddr is the client's address.
	RemoteAddr() net.Addr
	// Serializer is the body serializer the client chose at handshake.
	Serializer() runtime.Serializer
}

// Snapshot is a copy of a session's state: what a forwarded request carries
// to a backend.
type Snapshot struct {
	ID         uint64
	FrontendID string
	UID        string
	// Settings must not be modified by the receiver of a Snapshot; Local
	// copies them on first write.
	Settings map[string]string
}

// Session is a real frontend session: one client connection, its uid binding
// and settings.
type Session struct {
	id  uint64
	svc *Service
	// conn points at own, or after SetConn at another connRef: reading it
	// is one atomic load, and a session whose connection is never
	// replaced allocates nothing for it.
	conn atomic.Pointer[connRef]
	own  connRef

	mu        sync.RWMutex
	uid       string
	settings  map[string]string // replaced, never mutated: snapshots share it
	closed    bool
	suspended bool
}

// connRef holds a session's Conn.
type connRef struct{ c Conn }

// ID returns the session id, unique within the frontend.
func (s *Session) ID() uint64 { return s.id }

// FrontendID returns the id of the frontend server holding the session.
func (s *Session) FrontendID() string { return s.svc.frontendID }

// UID returns the bound uid, or "".
func (s *Session) UID() string {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.uid
}

// Conn returns the client connection.
func (s *Session) Conn() Conn { return s.conn.Load().c }

// RemoteAddr returns the client's address.
func (s *Session) RemoteAddr() net.Addr { return s.Conn().RemoteAddr() }

// Serializer returns the serializer the client chose.
func (s *Session) Serializer() runtime.Serializer { return s.Conn().Serializer() }

// Suspended reports whether the session is suspended: its connection
// dropped and it waits, within its grace window, for the client to resume
// it (docs/PROTOCOL.md section 10). A suspended session is still open and
// bound.
func (s *Session) Suspended() bool {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.suspended
}

// Closed reports whether the session has been closed.
func (s *Session) Closed() bool {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.closed
}

// Get returns a setting of the real session.
func (s *Session) Get(key string) (string, bool) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	v, ok := s.settings[key]
	return v, ok
}

// Settings returns a copy of the real session's settings.
func (s *Session) Settings() map[string]string {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return maps.Clone(s.settings)
}

// Snapshot returns a copy of the session's state. Its settings map is shared
// and must be treated as read-only.
func (s *Session) Snapshot() Snapshot {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return Snapshot{ID: s.id, FrontendID: s.svc.frontendID, UID: s.uid, Settings: s.settings}
}

// SetSettings writes settings into the real session: with replace, the
// session's settings become exactly kv; otherwise the keys of kv are set and
// others kept.
func (s *Session) SetSettings(kv map[string]string, replace bool) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return runtime.Errorf(runtime.ErrClosed, "session %d is closed", s.id)
	}
	var next map[string]string
	if replace {
		next = maps.Clone(kv)
	} else {
		next = make(map[string]string, len(s.settings)+len(kv))
		maps.Copy(next, s.settings)
		maps.Copy(next, kv)
	}
	s.settings = next
	return nil
}

// Send pushes msg under route to the session's client.
func (s *Session) Send(route string, msg proto.Message) error {
	c := s.Conn()
	pkg, err := s.svc.EncodePush(c.Serializer(), route, msg)
	if err != nil {
		return err
	}
	return c.Send(pkg)
}

// Local returns a per-request view of the session for a handler.
func (s *Session) Local() *Local {
	return NewLocal(s.Snapshot(), s.svc.Origin())
}

// Origin performs the operations of a Local view on the real session: the
// frontend's Service directly, or on a backend a client of the frontend's
// sessionRemote.
type Origin interface {
	Bind(ctx context.Context, frontendID string, sid uint64, uid string) error
	Unbind(ctx context.Context, frontendID string, sid uint64, uid string) error
	PushSettings(ctx context.Context, frontendID string, sid uint64, kv map[string]string, replace bool) error
	KickSession(ctx context.Context, frontendID string, sid uint64, reason string) error
	SendTo(ctx context.Context, frontendID string, sid uint64, route string, msg proto.Message) error
}

// Local is the view of a session a handler works with (Pomelo's
// FrontendSession and BackendSession): Set and Remove change the view only;
// Push and PushAll write settings through to the real session; Bind, Unbind,
// Kick and Send act on the real session through its Origin. A Local is used
// by one request at a time.
type Local struct {
	snap   Snapshot
	owned  bool // snap.Settings is this view's own copy
	origin Origin
}

var _ runtime.Session = (*Local)(nil)

// NewLocal returns a view of the session snap whose operations go to origin.
func NewLocal(snap Snapshot, origin Origin) *Local {
	return &Local{snap: snap, origin: origin}
}

// ID returns the session id.
func (l *Local) ID() uint64 { return l.snap.ID }

// FrontendID returns the id of the frontend holding the session.
func (l *Local) FrontendID() string { return l.snap.FrontendID }

// UID returns the bound uid as this view knows it.
func (l *Local) UID() string { return l.snap.UID }

// Snapshot returns the view's state.
func (l *Local) Snapshot() Snapshot { return l.snap }

// Get returns a setting of the view.
func (l *Local) Get(key string) (string, bool) {
	v, ok := l.snap.Settings[key]
	return v, ok
}

func (l *Local) own() {
	if !l.owned {
		l.snap.Settings = maps.Clone(l.snap.Settings)
		if l.snap.Settings == nil {
			l.snap.Settings = make(map[string]string)
		}
		l.owned = true
	}
}

// Set changes a setting of the view.
func (l *Local) Set(key, value string) {
	l.own()
	l.snap.Settings[key] = value
}

// Remove deletes a setting of the view.
func (l *Local) Remove(key string) {
	l.own()
	delete(l.snap.Settings, key)
}

// Settings returns a copy of the view's settings.
func (l *Local) Settings() map[string]string { return maps.Clone(l.snap.Settings) }

// Push writes the named settings (all when none is named) of the view to the
// real session, leaving its other keys alone.
func (l *Local) Push(ctx context.Context, keys ...string) error {
	kv := l.snap.Settings
	if len(keys) > 0 {
		kv = make(map[string]string, len(keys))
		for _, k := range keys {
			if v, ok := l.snap.Settings[k]; ok {
				kv[k] = v
			}
		}
	}
	return l.origin.PushSettings(ctx, l.snap.FrontendID, l.snap.ID, kv, false)
}

// PushAll replaces the real session's settings with the view's.
func (l *Local) PushAll(ctx context.Context) error {
	return l.origin.PushSettings(ctx, l.snap.FrontendID, l.snap.ID, l.snap.Settings, true)
}

// Bind binds uid to the real session.
func (l *Local) Bind(ctx context.Context, uid string) error {
	if err := l.origin.Bind(ctx, l.snap.FrontendID, l.snap.ID, uid); err != nil {
		return err
	}
	l.snap.UID = uid
	return nil
}

// Unbind removes the real session's uid binding.
func (l *Local) Unbind(ctx context.Context) error {
	if err := l.origin.Unbind(ctx, l.snap.FrontendID, l.snap.ID, l.snap.UID); err != nil {
		return err
	}
	l.snap.UID = ""
	return nil
}

// Kick closes the real session with reason.
func (l *Local) Kick(ctx context.Context, reason string) error {
	return l.origin.KickSession(ctx, l.snap.FrontendID, l.snap.ID, reason)
}

// Send pushes msg under route to the session's client.
func (l *Local) Send(ctx context.Context, route string, msg proto.Message) error {
	return l.origin.SendTo(ctx, l.snap.FrontendID, l.snap.ID, route, msg)
}
