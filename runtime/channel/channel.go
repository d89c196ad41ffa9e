package channel

import (
	"cmp"
	"context"
	"fmt"
	"slices"
	"sync"

	"google.golang.org/protobuf/proto"

	"github.com/pomelo-go/pomelo/runtime"
)

// Channel is a named set of members, each a uid with the frontend holding
// the user's session (Pomelo's Channel). Pushing to it reaches every member
// through one delivery per frontend. A Channel is safe for concurrent use.
//
// Once destroyed, by Destroy, Service.Destroy or Service.Close, every
// operation that returns an error fails with an error wrapping
// runtime.ErrClosed; Members and UIDs return nil and Len returns 0.
type Channel struct {
	name string
	svc  *Service

	mu        sync.RWMutex
	members   map[string]member   // by uid
	groups    map[string][]string // frontend id -> its member uids, unordered
	snap      *snapshot           // copy of groups for pushes; nil when stale
	destroyed bool

	leaveOnClose bool // ChannelConfig.LeaveOnClose, never changed
}

// member is where a uid is: its frontend, its index in groups[frontend],
// and the session it was added with (0: any session of the uid there).
type member struct {
	frontendID string
	idx        int
	sid        uint64
}

// ChannelConfig configures a channel when Service.Create or
// Service.GetOrCreate creates it. Its zero value is the default
// configuration.
type ChannelConfig struct {
	// LeaveOnClose makes the channel drop a member when its session
	// closes, as reported to Service.SessionClosed (the App reports every
	// session close its server hears of). A member added with AddSession
	// leaves when that session closes; one added with Add leaves when any
	// session of its uid on its frontend closes. Without it members stay
	// until they leave.
	LeaveOnClose bool
}

// snapshot is the members of a channel grouped by frontend. It is never
// modified once built: pushes share it, and schedulers may keep its uid
// slices.
type snapshot struct {
	groups []group
}

var _ runtime.RoutePusher = (*Channel)(nil)

func newChannel(s *Service, name string, cfg ChannelConfig) *Channel {
	return &Channel{name: name, svc: s, members: make(map[string]member), groups: make(map[string][]string), leaveOnClose: cfg.LeaveOnClose}
}

// LeavesOnClose reports whether the channel was created with
// ChannelConfig.LeaveOnClose.
func (c *Channel) LeavesOnClose() bool { return c.leaveOnClose }

// Name returns the channel's name.
func (c *Channel) Name() string { return c.name }

func (c *Channel) closedErr() error {
	return closedError("channel %q is destroyed", c.name)
}

// Add adds uid, whose session is held by frontend frontendID. Membership is
// a set: adding a member again changes nothing (it still receives each
// push once), and adding a uid with another frontend id moves it to that
// frontend. A uid is thus reached on one frontend only; a user with
// sessions on several frontends receives channel pushes on the last one
// added. Empty arguments are an error wrapping runtime.ErrBadRequest.
func (c *Channel) Add(uid, frontendID string) error {
	return c.add(uid, frontendID, 0)
}

// AddSession adds the user of session s (bound to a uid) through s's
// frontend, like Add, and records the session: in a channel created with
// LeaveOnClose, the member leaves when s closes, and not when another
// session of the uid does (a relogin's late close of the old session
// leaves the new membership alone). Adding the uid again with another
// session replaces the recorded one. A session without a uid is an error
// wrapping runtime.ErrBadRequest.
func (c *Channel) AddSession(s runtime.Session) error {
	return c.add(s.UID(), s.FrontendID(), s.ID())
}

func (c *Channel) add(uid, frontendID string, sid uint64) error {
	if uid == "" || frontendID == "" {
		return runtime.Errorf(runtime.ErrBadRequest, "channel %q: add needs a uid and a frontend id (got %q, %q)", c.name, uid, frontendID)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.destroyed {
		return c.closedErr()
	}
	if m, ok := c.members[uid]; ok {
		if m.frontendID == frontendID {
			m.sid = sid
			c.members[uid] = m
			return nil
		}
		c.removeLocked(uid, m)
	}
	g := c.groups[frontendID]
	c.members[uid] = member{frontendID: frontendID, idx: len(g), sid: sid}
	c.groups[frontendID] = append(g, uid)
	c.snap = nil
	return nil
}

// removeLocked removes member uid, at m, in O(1): the last uid of its
// frontend's group takes its place.
func (c *Channel) removeLocked(uid string, m member) {
	g := c.groups[m.frontendID]
	last := len(g) - 1
	if m.idx != last {
		moved := g[last]
		g[m.idx] = moved
		mm := c.members[moved]
		mm.idx = m.idx
		c.members[moved] = mm
	}
	g[last] = ""
	if last == 0 {
		delete(c.groups, m.frontendID)
	} else {
		c.groups[m.frontendID] = g[:last]
	}
	delete(c.members, uid)
	c.snap = nil
}

// Leave removes uid from the channel. Leaving when not a member does
// nothing.
func (c *Channel) Leave(uid string) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.destroyed {
		return c.closedErr()
	}
	if m, ok := c.members[uid]; ok {
		c.removeLocked(uid, m)
	}
	return nil
}

// LeaveFrom removes uid only if it is a member through frontend frontendID
// (Pomelo's leave(uid, sid)). Use it where a session closes: when the user
// has meanwhile logged in again through another frontend and been added
// with it, the late close of the old session leaves the new membership
// alone.
func (c *Channel) LeaveFrom(uid, frontendID string) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.destroyed {
		return c.closedErr()
	}
	if m, ok := c.members[uid]; ok && m.frontendID == frontendID {
		c.removeLocked(uid, m)
	}
	return nil
}

// sessionClosed removes the member whose session sid on frontendID closed:
// uid when it is known, else whichever member of frontendID was added with
// that session.
func (c *Channel) sessionClosed(frontendID string, sid uint64, uid string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.destroyed {
		return
	}
	if uid != "" {
		if m, ok := c.members[uid]; ok && m.frontendID == frontendID && (m.sid == 0 || m.sid == sid) {
			c.removeLocked(uid, m)
		}
		return
	}
	for _, u := range c.groups[frontendID] {
		if m := c.members[u]; m.sid == sid {
			c.removeLocked(u, m)
			return
		}
	}
}

// Member returns the member uid, if it is one.
func (c *Channel) Member(uid string) (Member, bool) {
	c.mu.RLock()
	defer c.mu.RUnlock()
	m, ok := c.members[uid]
	if !ok {
		return Member{}, false
	}
	return Member{UID: uid, FrontendID: m.frontendID}, true
}

// Members returns the members, sorted by uid.
func (c *Channel) Members() []Member {
	c.mu.RLock()
	if len(c.members) == 0 {
		c.mu.RUnlock()
		return nil
	}
	ms := make([]Member, 0, len(c.members))
	for uid, m := range c.members {
		ms = append(ms, Member{UID: uid, FrontendID: m.frontendID})
	}
	c.mu.RUnlock()
	slices.SortFunc(ms, func(a, b Member) int { return cmp.Compare(a.UID, b.UID) })
	return ms
}

// UIDs returns the uids of the members, sorted.
func (c *Channel) UIDs() []string {
	c.mu.RLock()
	if len(c.members) == 0 {
		c.mu.RUnlock()
		return nil
	}
	uids := make([]string, 0, len(c.members))
	for uid := range c.members {
		uids = append(uids, uid)
	}
	c.mu.RUnlock()
	slices.Sort(uids)
	return uids
}

// Len returns the number of members.
func (c *Channel) Len() int {
	c.mu.RLock()
	defer c.mu.RUnlock()
	return len(c.members)
}

// Destroy destroys the channel (Pomelo's channel.destroy): it leaves its
// service, its members are dropped, and every later operation fails with
// runtime.ErrClosed, Destroy included. Pushes already handed to a queueing
// scheduler are still delivered.
func (c *Channel) Destroy() error {
	s := c.svc
	s.mu.Lock()
	defer s.mu.Unlock()
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.destroyed {
		return c.closedErr()
	}
	c.destroyLocked()
	if s.channels[c.name] == c {
		s.removeLocked(c)
	}
	return nil
}

// markDestroyed destroys c; the service's lock is held.
func (c *Channel) markDestroyed() {
	c.mu.Lock()
	c.destroyLocked()
	c.mu.Unlock()
}

func (c *Channel) destroyLocked() {
	c.destroyed = true
	c.members = nil
	c.groups = nil
	c.snap = nil
}

// load returns the members grouped by frontend, building the grouping if
// membership changed since the last push. With except, it also returns
// those of the except uids that are members, read consistently with the
// grouping.
func (c *Channel) load(except []string) (*snapshot, []Member, error) {
	c.mu.RLock()
	if c.destroyed {
		c.mu.RUnlock()
		return nil, nil, c.closedErr()
	}
	if sn := c.snap; sn != nil {
		ex := c.exceptLocked(except)
		c.mu.RUnlock()
		return sn, ex, nil
	}
	c.mu.RUnlock()

	c.mu.Lock()
	defer c.mu.Unlock()
	if c.destroyed {
		return nil, nil, c.closedErr()
	}
	if c.snap == nil {
		c.snap = c.buildLocked()
	}
	return c.snap, c.exceptLocked(except), nil
}

func (c *Channel) exceptLocked(except []string) []Member {
	var ex []Member
	for _, uid := range except {
		if m, ok := c.members[uid]; ok && !slices.ContainsFunc(ex, func(x Member) bool { return x.UID == uid }) {
			ex = append(ex, Member{UID: uid, FrontendID: m.frontendID})
		}
	}
	return ex
}

// buildLocked copies the groups for pushes: one backing array for all
// uids, groups sorted by frontend id.
func (c *Channel) buildLocked() *snapshot {
	sn := &snapshot{}
	if len(c.members) == 0 {
		return sn
	}
	sn.groups = make([]group, 0, len(c.groups))
	for fe := range c.groups {
		sn.groups = append(sn.groups, group{frontendID: fe})
	}
	slices.SortFunc(sn.groups, func(a, b group) int { return cmp.Compare(a.frontendID, b.frontendID) })
	uids := make([]string, len(c.members))
	off := 0
	for i := range sn.groups {
		g := &sn.groups[i]
		n := copy(uids[off:], c.groups[g.frontendID])
		g.uids = uids[off : off+n : off+n]
		off += n
	}
	return sn
}

// PushMessage pushes msg under route to every member (Pomelo's
// channel.pushMessage). The members are grouped by frontend, with one
// scheduled delivery per frontend, run concurrently when there are several
// and the scheduler delivers at once. Every frontend gets the same msg,
// which must not be modified while a scheduler may still hold it.
//
// It returns the uids the deliveries reported as not reached, in no
// particular order (members with no session on their frontend, every
// member of a frontend that could not be reached), and the deliveries'
// errors, joined. With a queueing scheduler it returns nil, nil once the
// push is queued. It implements runtime.RoutePusher.
func (c *Channel) PushMessage(ctx context.Context, route string, msg proto.Message) (failed []string, err error) {
	sn, _, err := c.load(nil)
	if err != nil {
		return nil, err
	}
	return c.push(ctx, route, msg, sn.groups)
}

// PushMessageExcept is PushMessage to every member but the except uids,
// such as the sender of a chat message.
func (c *Channel) PushMessageExcept(ctx context.Context, route string, msg proto.Message, except ...string) (failed []string, err error) {
	sn, ex, err := c.load(except)
	if err != nil {
		return nil, err
	}
	if len(ex) == 0 {
		return c.push(ctx, route, msg, sn.groups)
	}
	groups := make([]group, 0, len(sn.groups))
	for _, g := range sn.groups {
		skip := 0
		for _, m := range ex {
			if m.FrontendID == g.frontendID {
				skip++
			}
		}
		if skip == 0 {
			groups = append(groups, g)
			continue
		}
		if skip >= len(g.uids) {
			continue // everyone of this frontend is excepted
		}
		uids := make([]string, 0, len(g.uids)-skip)
		for _, uid := range g.uids {
			if !slices.ContainsFunc(ex, func(m Member) bool { return m.UID == uid }) {
				uids = append(uids, uid)
			}
		}
		groups = append(groups, group{frontendID: g.frontendID, uids: uids})
	}
	return c.push(ctx, route, msg, groups)
}

func (c *Channel) push(ctx context.Context, route string, msg proto.Message, groups []group) ([]string, error) {
	failed, err := c.svc.push(ctx, route, msg, groups)
	if err != nil {
		err = fmt.Errorf("channel %q: %w", c.name, err)
	}
	return failed, err
}
