package session

import (
	"context"
	"slices"
	"sync"
	"sync/atomic"

	"google.golang.org/protobuf/proto"

	"github.com/pomelo-go/pomelo/runtime"
	"github.com/pomelo-go/pomelo/runtime/wire"
)

// Policy says what binding a uid that already has a session does.
type Policy int

const (
	// AllowMany lets a uid have several sessions (Pomelo's default).
	AllowMany Policy = iota
	// RejectNew refuses to bind a uid that already has a session: Bind
	// returns an error matching ErrDuplicateLogin (name DUPLICATE_LOGIN).
	RejectNew
	// KickOld kicks the uid's other sessions, with the reason "relogin", and
	// binds the new one.
	KickOld
)

// ErrDuplicateLogin matches, with errors.Is, the error of a Bind refused by
// RejectNew (and of a cluster-wide login refused by online.Service). Its
// name on the wire is DUPLICATE_LOGIN.
var ErrDuplicateLogin = runtime.DefineError(runtime.CodeFrameworkError, "DUPLICATE_LOGIN")

// KickReasonRelogin is the kick reason of sessions replaced under KickOld.
const KickReasonRelogin = "relogin"

// Service is the frontend session service: every session of one frontend
// server, by id and by uid. It is safe for concurrent use.
type Service struct {
	frontendID string
	policy     Policy
	nextID     atomic.Uint64
	dict       atomic.Pointer[wire.Dict]
	pushed     atomic.Uint64

	mu        sync.RWMutex
	sessions  map[uint64]*Session
	byUID     map[string][]*Session
	bound     int
	suspended int

	hookMu      sync.RWMutex
	onBind      []func(s *Session, uid string)
	onUnbind    []func(s *Session, uid string)
	onClosed    []func(s *Session, reason string)
	onSuspended []func(s *Session)
	onResumed   []func(s *Session)
}

// NewService returns the session service of frontend frontendID.
func NewService(frontendID string, policy Policy) *Service {
	return &Service{
		frontendID: frontendID,
		policy:     policy,
		sessions:   make(map[uint64]*Session),
		byUID:      make(map[string][]*Session),
	}
}

// FrontendID returns the id of the frontend the service belongs to.
func (svc *Service) FrontendID() string { return svc.frontendID }

// SetDict sets the route dictionary pushes are compressed with.
func (svc *Service) SetDict(d *wire.Dict) { svc.dict.Store(d) }

// Dict returns the route dictionary, or nil.
func (svc *Service) Dict() *wire.Dict { return svc.dict.Load() }

// OnBind registers fn to run after a uid is bound to a session.
func (svc *Service) OnBind(fn func(s *Session, uid string)) {
	svc.hookMu.Lock()
	svc.onBind = append(svc.onBind, fn)
	svc.hookMu.Unlock()
}

// OnUnbind registers fn to run after a uid is unbound from a session (not
// when the session closes: see OnClosed).
func (svc *Service) OnUnbind(fn func(s *Session, uid string)) {
	svc.hookMu.Lock()
	svc.onUnbind = append(svc.onUnbind, fn)
	svc.hookMu.Unlock()
}

// OnClosed registers fn to run when a session closes, for any reason. It runs
// after the session has been removed from the service and before its
// connection is closed; reason is the kick reason, or "" when the client
// left.
func (svc *Service) OnClosed(fn func(s *Session, reason string)) {
	svc.hookMu.Lock()
	svc.onClosed = append(svc.onClosed, fn)
	svc.hookMu.Unlock()
}

// OnSuspended registers fn to run when a session is suspended (its
// connection dropped; it waits for its client to resume it).
func (svc *Service) OnSuspended(fn func(s *Session)) {
	svc.hookMu.Lock()
	svc.onSuspended = append(svc.onSuspended, fn)
	svc.hookMu.Unlock()
}

// OnResumed registers fn to run when a suspended session is resumed on a
// new connection.
func (svc *Service) OnResumed(fn func(s *Session)) {
	svc.hookMu.Lock()
	svc.onResumed = append(svc.onResumed, fn)
	svc.hookMu.Unlock()
}

// Create registers a new session for conn.
func (svc *Service) Create(conn Conn) *Session {
	s := &Session{id: svc.nextID.Add(1), svc: svc}
	s.own.c = conn
	s.conn.Store(&s.own)
	svc.mu.Lock()
	svc.sessions[s.id] = s
	svc.mu.Unlock()
	return s
}

// SetConn makes c the connection of s from now on. The connector calls it
// when a session becomes resumable: its connection is then one that
// outlives each network connection of the session.
func (svc *Service) SetConn(s *Session, c Conn) {
	s.conn.Store(&connRef{c: c})
}

// Discard removes s, a session nobody has seen yet, from the service
// without running any hook or closing its connection: the connector
// discards the session of a connection that resumed another one.
func (svc *Service) Discard(s *Session) {
	svc.mu.Lock()
	s.mu.Lock()
	if !s.closed {
		s.closed = true
		if s.uid != "" {
			svc.removeUIDLocked(s, s.uid)
		}
		delete(svc.sessions, s.id)
	}
	s.mu.Unlock()
	svc.mu.Unlock()
}

// Suspend marks s suspended, counted by SuspendedCount, and runs the
// suspended hooks. It reports false, doing nothing, when s is closed or
// suspended already.
func (svc *Service) Suspend(s *Session) bool {
	if !svc.setSuspended(s, true) {
		return false
	}
	svc.hookMu.RLock()
	hooks := svc.onSuspended
	svc.hookMu.RUnlock()
	for _, fn := range hooks {
		fn(s)
	}
	return true
}

// Resume marks suspended s connected again and runs the resumed hooks. It
// reports false, doing nothing, when s is closed or not suspended.
func (svc *Service) Resume(s *Session) bool {
	if !svc.setSuspended(s, false) {
		return false
	}
	svc.hookMu.RLock()
	hooks := svc.onResumed
	svc.hookMu.RUnlock()
	for _, fn := range hooks {
		fn(s)
	}
	return true
}

func (svc *Service) setSuspended(s *Session, v bool) bool {
	svc.mu.Lock()
	defer svc.mu.Unlock()
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed || s.suspended == v {
		return false
	}
	s.suspended = v
	if v {
		svc.suspended++
	} else {
		svc.suspended--
	}
	return true
}

// SuspendedCount returns the number of suspended sessions (counted in
// Count too).
func (svc *Service) SuspendedCount() int {
	svc.mu.RLock()
	defer svc.mu.RUnlock()
	return svc.suspended
}

// Get returns a session by id.
func (svc *Service) Get(sid uint64) (*Session, bool) {
	svc.mu.RLock()
	s, ok := svc.sessions[sid]
	svc.mu.RUnlock()
	return s, ok
}

// GetByUID returns the sessions bound to uid.
func (svc *Service) GetByUID(uid string) []*Session {
	svc.mu.RLock()
	defer svc.mu.RUnlock()
	return slices.Clone(svc.byUID[uid])
}

// Count returns the number of sessions.
func (svc *Service) Count() int {
	svc.mu.RLock()
	defer svc.mu.RUnlock()
	return len(svc.sessions)
}

// Pushed returns the number of pushes queued to sessions' connections
// since the service was made (one per receiving session).
func (svc *Service) Pushed() uint64 { return svc.pushed.Load() }

// BoundCount returns the number of sessions bound to a uid.
func (svc *Service) BoundCount() int {
	svc.mu.RLock()
	defer svc.mu.RUnlock()
	return svc.bound
}

// Range calls fn for every session until fn returns false. fn may call the
// service.
func (svc *Service) Range(fn func(*Session) bool) {
	svc.mu.RLock()
	all := make([]*Session, 0, len(svc.sessions))
	for _, s := range svc.sessions {
		all = append(all, s)
	}
	svc.mu.RUnlock()
	for _, s := range all {
		if !fn(s) {
			return
		}
	}
}

func (svc *Service) get(sid uint64) (*Session, error) {
	s, ok := svc.Get(sid)
	if !ok {
		return nil, runtime.Errorf(runtime.ErrNotFound, "no session %d on %s", sid, svc.frontendID)
	}
	return s, nil
}

// Bind binds uid to session sid, applying the service's policy.
// Binding the uid the session already has is a no-op; binding another uid
// to a bound session is an error.
func (svc *Service) Bind(sid uint64, uid string) error {
	if uid == "" {
		return runtime.Errorf(runtime.ErrBadRequest, "bind: empty uid")
	}
	s, err := svc.get(sid)
	if err != nil {
		return err
	}
	var kick []*Session
	svc.mu.Lock()
	s.mu.Lock()
	switch {
	case s.closed:
		err = runtime.Errorf(runtime.ErrClosed, "session %d is closed", sid)
	case s.uid == uid:
		s.mu.Unlock()
		svc.mu.Unlock()
		return nil
	case s.uid != "":
		err = runtime.Errorf(runtime.ErrBadRequest, "session %d is already bound to %q", sid, s.uid)
	case svc.policy == RejectNew && len(svc.byUID[uid]) > 0:
		err = runtime.Errorf(ErrDuplicateLogin, "uid %q is already online", uid)
	default:
		if svc.policy == KickOld {
			kick = slices.Clone(svc.byUID[uid])
		}
		s.uid = uid
		svc.byUID[uid] = append(svc.byUID[uid], s)
		svc.bound++
	}
	s.mu.Unlock()
	svc.mu.Unlock()
	if err != nil {
		return err
	}
	for _, old := range kick {
		svc.CloseSession(old, KickReasonRelogin, true)
	}
	svc.hookMu.RLock()
	hooks := svc.onBind
	svc.hookMu.RUnlock()
	for _, fn := range hooks {
		fn(s, uid)
	}
	return nil
}

// Unbind removes the uid binding of session sid. uid, when not empty,
// must be the bound uid.
func (svc *Service) Unbind(sid uint64, uid string) error {
	s, err := svc.get(sid)
	if err != nil {
		return err
	}
	svc.mu.Lock()
	s.mu.Lock()
	old := s.uid
	switch {
	case old == "":
		err = runtime.Errorf(runtime.ErrNotBound, "session %d is not bound", sid)
	case uid != "" && uid != old:
		err = runtime.Errorf(runtime.ErrBadRequest, "session %d is bound to %q, not %q", sid, old, uid)
	default:
		s.uid = ""
		svc.removeUIDLocked(s, old)
	}
	s.mu.Unlock()
	svc.mu.Unlock()
	if err != nil {
		return err
	}
	svc.hookMu.RLock()
	hooks := svc.onUnbind
	svc.hookMu.RUnlock()
	for _, fn := range hooks {
		fn(s, old)
	}
	return nil
}

func (svc *Service) removeUIDLocked(s *Session, uid string) {
	list := svc.byUID[uid]
	if i := slices.Index(list, s); i >= 0 {
		list = slices.Delete(list, i, i+1)
		svc.bound--
	}
	if len(list) == 0 {
		delete(svc.byUID, uid)
	} else {
		svc.byUID[uid] = list
	}
}

// CloseSession closes s: it is removed from the service, the closed hooks
// run, then the connection is closed, with a KICK carrying reason when kick
// is true. Closing a closed session does nothing.
func (svc *Service) CloseSession(s *Session, reason string, kick bool) {
	svc.mu.Lock()
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		svc.mu.Unlock()
		return
	}
	s.closed = true
	if s.suspended {
		s.suspended = false
		svc.suspended--
	}
	if s.uid != "" {
		svc.removeUIDLocked(s, s.uid)
	}
	delete(svc.sessions, s.id)
	s.mu.Unlock()
	svc.mu.Unlock()

	svc.hookMu.RLock()
	hooks := svc.onClosed
	svc.hookMu.RUnlock()
	for _, fn := range hooks {
		fn(s, reason)
	}
	if c := s.Conn(); kick {
		c.Kick(reason)
	} else {
		c.Close()
	}
}

// Kick closes session sid with a KICK carrying reason.
func (svc *Service) Kick(sid uint64, reason string) error {
	s, err := svc.get(sid)
	if err != nil {
		return err
	}
	svc.CloseSession(s, reason, true)
	return nil
}

// KickByUID closes every session of uid with a KICK carrying reason and
// returns how many it closed.
func (svc *Service) KickByUID(uid, reason string) int {
	list := svc.GetByUID(uid)
	for _, s := range list {
		svc.CloseSession(s, reason, true)
	}
	return len(list)
}

// EncodePush encodes msg as a complete PUSH package for clients using ser,
// with the route compressed when the dictionary has it.
func (svc *Service) EncodePush(ser runtime.Serializer, route string, msg proto.Message) ([]byte, error) {
	body, err := ser.Marshal(nil, msg)
	if err != nil {
		return nil, runtime.Errorf(runtime.ErrInternal, "encode push %s: %v", route, err)
	}
	return svc.EncodePushBody(route, body)
}

// EncodePushBody wraps an encoded body as a complete PUSH package.
func (svc *Service) EncodePushBody(route string, body []byte) ([]byte, error) {
	m := wire.Message{Type: wire.Push, Route: route, Body: body}
	if code, ok := svc.Dict().Code(route); ok {
		m.Compressed, m.RouteCode, m.Route = true, code, ""
	}
	return wire.AppendMessagePackage(make([]byte, 0, wire.HeaderLen+8+len(route)+len(body)), &m)
}

// Body is a push message body that encodes itself for a serializer. A
// proto.Message is wrapped by MessageBody; a message that arrived encoded
// from another server implements it over its bytes.
type Body interface {
	Encode(ser runtime.Serializer) ([]byte, error)
}

// MessageBody wraps msg as a Body.
func MessageBody(msg proto.Message) Body { return messageBody{msg} }

type messageBody struct{ msg proto.Message }

func (b messageBody) Encode(ser runtime.Serializer) ([]byte, error) { return ser.Marshal(nil, b.msg) }

// pushEncoder encodes one push at most once per serializer.
type pushEncoder struct {
	svc   *Service
	route string
	body  Body
	enc   [2]struct {
		ser runtime.Serializer
		pkg []byte
		err error
	}
	n int
}

func (e *pushEncoder) packageFor(ser runtime.Serializer) ([]byte, error) {
	for i := 0; i < e.n; i++ {
		if e.enc[i].ser == ser {
			return e.enc[i].pkg, e.enc[i].err
		}
	}
	var pkg []byte
	body, err := e.body.Encode(ser)
	if err != nil {
		err = runtime.Errorf(runtime.ErrInternal, "encode push %s: %v", e.route, err)
	} else {
		pkg, err = e.svc.EncodePushBody(e.route, body)
	}
	if e.n < len(e.enc) {
		e.enc[e.n].ser, e.enc[e.n].pkg, e.enc[e.n].err = ser, pkg, err
		e.n++
	}
	return pkg, err
}

// PushToSessions pushes msg to every listed session, encoding it once per
// serializer and sharing the bytes. It returns the number of sessions the
// message was queued to; its error reports only a message that cannot be
// encoded.
func (svc *Service) PushToSessions(route string, msg proto.Message, sessions []*Session) (int, error) {
	return svc.PushBodyToSessions(route, MessageBody(msg), sessions)
}

// PushBodyToSessions is PushToSessions for a Body. Its error reports only a
// push that cannot be encoded; a session that cannot take it (closing, not
// yet past its handshake, a slow consumer being kicked) is that session's
// affair and is not counted in the number returned.
func (svc *Service) PushBodyToSessions(route string, body Body, sessions []*Session) (int, error) {
	enc := pushEncoder{svc: svc, route: route, body: body}
	sent := 0
	var encErr error
	for _, s := range sessions {
		c := s.Conn()
		pkg, err := enc.packageFor(c.Serializer())
		if err != nil {
			if encErr == nil {
				encErr = err
			}
			continue
		}
		if c.Send(pkg) == nil {
			sent++
		}
	}
	svc.pushed.Add(uint64(sent))
	return sent, encErr
}

// PushToUIDs pushes msg to every session of the uids and returns the uids
// that have no session on this frontend.
func (svc *Service) PushToUIDs(route string, msg proto.Message, uids []string) (failed []string, err error) {
	return svc.PushBodyToUIDs(route, MessageBody(msg), uids)
}

// PushBodyToUIDs is PushToUIDs for a Body.
func (svc *Service) PushBodyToUIDs(route string, body Body, uids []string) (failed []string, err error) {
	targets := make([]*Session, 0, len(uids))
	svc.mu.RLock()
	for _, uid := range uids {
		list := svc.byUID[uid]
		if len(list) == 0 {
			failed = append(failed, uid)
			continue
		}
		targets = append(targets, list...)
	}
	svc.mu.RUnlock()
	_, err = svc.PushBodyToSessions(route, body, targets)
	return failed, err
}

// PushBodyToSIDs pushes body to the listed sessions and returns the ids of
// those that do not exist.
func (svc *Service) PushBodyToSIDs(route string, body Body, sids []uint64) (failed []uint64, err error) {
	targets := make([]*Session, 0, len(sids))
	svc.mu.RLock()
	for _, sid := range sids {
		if s, ok := svc.sessions[sid]; ok {
			targets = append(targets, s)
		} else {
			failed = append(failed, sid)
		}
	}
	svc.mu.RUnlock()
	_, err = svc.PushBodyToSessions(route, body, targets)
	return failed, err
}

// Broadcast pushes msg to every session (only bound ones with boundOnly) for
// which filter, when not nil, returns true.
func (svc *Service) Broadcast(route string, msg proto.Message, boundOnly bool, filter func(*Session) bool) error {
	return svc.BroadcastBody(route, MessageBody(msg), boundOnly, filter)
}

// BroadcastBody is Broadcast for a Body.
func (svc *Service) BroadcastBody(route string, body Body, boundOnly bool, filter func(*Session) bool) error {
	svc.mu.RLock()
	targets := make([]*Session, 0, len(svc.sessions))
	for _, s := range svc.sessions {
		if boundOnly && s.uid == "" {
			continue
		}
		targets = append(targets, s)
	}
	svc.mu.RUnlock()
	if filter != nil {
		targets = slices.DeleteFunc(targets, func(s *Session) bool { return !filter(s) })
	}
	_, err := svc.PushBodyToSessions(route, body, targets)
	return err
}

// Origin returns the Origin of the service's own sessions: Local views of
// them act on the sessions here. Sessions of another frontend are
// NOT_FOUND.
func (svc *Service) Origin() Origin { return serviceOrigin{svc} }

// serviceOrigin is a Service as the Origin of its sessions' Local views.
type serviceOrigin struct{ svc *Service }

func (o serviceOrigin) check(frontendID string) error {
	if frontendID != o.svc.frontendID {
		return runtime.Errorf(runtime.ErrNotFound, "session belongs to frontend %q, not %q", frontendID, o.svc.frontendID)
	}
	return nil
}

func (o serviceOrigin) Bind(_ context.Context, frontendID string, sid uint64, uid string) error {
	if err := o.check(frontendID); err != nil {
		return err
	}
	return o.svc.Bind(sid, uid)
}

func (o serviceOrigin) Unbind(_ context.Context, frontendID string, sid uint64, uid string) error {
	if err := o.check(frontendID); err != nil {
		return err
	}
	return o.svc.Unbind(sid, uid)
}

func (o serviceOrigin) PushSettings(_ context.Context, frontendID string, sid uint64, kv map[string]string, replace bool) error {
	if err := o.check(frontendID); err != nil {
		return err
	}
	s, err := o.svc.get(sid)
	if err != nil {
		return err
	}
	return s.SetSettings(kv, replace)
}

func (o serviceOrigin) KickSession(_ context.Context, frontendID string, sid uint64, reason string) error {
	if err := o.check(frontendID); err != nil {
		return err
	}
	return o.svc.Kick(sid, reason)
}

func (o serviceOrigin) SendTo(_ context.Context, frontendID string, sid uint64, route string, msg proto.Message) error {
	if err := o.check(frontendID); err != nil {
		return err
	}
	s, err := o.svc.get(sid)
	if err != nil {
		return err
	}
	return s.Send(route, msg)
}
