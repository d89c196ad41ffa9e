package channel

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"

	"google.golang.org/protobuf/proto"

	"github.com/pomelo-go/pomelo/runtime"
)

// ErrExists matches, with errors.Is, the error of Create for a channel that
// exists. Its name on the wire is CHANNEL_EXISTS.
var ErrExists = runtime.DefineError(runtime.CodeFrameworkError, "CHANNEL_EXISTS")

// Config configures a Service. Its zero value is the default
// configuration.
type Config struct {
	// Scheduler decides when pushes are delivered (nil: DirectScheduler).
	// The Service owns it from then on and closes it in Close, so one
	// Scheduler serves one Service.
	Scheduler Scheduler
}

// Member is a receiver of a push: a uid and the id of the frontend server
// holding the user's connection.
type Member struct {
	// UID is the user id.
	UID string
	// FrontendID is the id of the frontend holding the user's session.
	FrontendID string
}

// Service is Pomelo's ChannelService: the channels of one server, by name,
// and pushes to lists of receivers. It is safe for concurrent use.
type Service struct {
	delivery Delivery
	sched    Scheduler
	async    bool // sched only queues

	mu       sync.RWMutex
	channels map[string]*Channel
	leaving  map[*Channel]struct{} // the channels created with LeaveOnClose
	closed   bool
}

// NewService returns a channel service whose pushes go through d, which
// must not be nil, configured by cfg.
func NewService(d Delivery, cfg Config) *Service {
	if d == nil {
		panic("channel: NewService with a nil Delivery")
	}
	s := &Service{delivery: d, sched: cfg.Scheduler, channels: make(map[string]*Channel), leaving: make(map[*Channel]struct{})}
	if s.sched == nil {
		s.sched = DirectScheduler()
	}
	_, s.async = s.sched.(queueing)
	return s
}

func closedError(format string, args ...any) error {
	return runtime.Errorf(runtime.ErrClosed, format, args...)
}

// Create creates the channel name, configured by cfg. It returns an error wrapping
// runtime.ErrBadRequest for an empty name, one matching ErrExists when the
// channel exists (Pomelo's createChannel
// returns the existing channel instead: see GetOrCreate), and one wrapping
// runtime.ErrClosed once the service is closed.
func (s *Service) Create(name string, cfg ChannelConfig) (*Channel, error) {
	if name == "" {
		return nil, runtime.Errorf(runtime.ErrBadRequest, "channel: empty name")
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil, closedError("channel service is closed")
	}
	if _, ok := s.channels[name]; ok {
		return nil, runtime.Errorf(ErrExists, "channel %q exists", name)
	}
	c := newChannel(s, name, cfg)
	s.addLocked(c)
	return c, nil
}

// GetOrCreate returns the channel name, creating it configured by cfg when
// it does not exist (Pomelo's createChannel); an existing channel keeps the
// configuration it was created with. Once the service is closed it returns a destroyed
// channel, whose operations fail with runtime.ErrClosed.
func (s *Service) GetOrCreate(name string, cfg ChannelConfig) *Channel {
	s.mu.RLock()
	c, ok := s.channels[name]
	s.mu.RUnlock()
	if ok {
		return c
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if c, ok := s.channels[name]; ok {
		return c
	}
	c = newChannel(s, name, cfg)
	if s.closed {
		c.destroyed = true
		return c
	}
	s.addLocked(c)
	return c
}

func (s *Service) addLocked(c *Channel) {
	s.channels[c.name] = c
	if c.leaveOnClose {
		s.leaving[c] = struct{}{}
	}
}

// removeLocked removes c, which is in the service.
func (s *Service) removeLocked(c *Channel) {
	delete(s.channels, c.name)
	delete(s.leaving, c)
}

// Get returns the channel name, if it exists (Pomelo's getChannel).
func (s *Service) Get(name string) (*Channel, bool) {
	s.mu.RLock()
	c, ok := s.channels[name]
	s.mu.RUnlock()
	return c, ok
}

// Destroy destroys the channel name (Pomelo's destroyChannel): it leaves
// the service and every operation on it fails with runtime.ErrClosed. It
// returns an error wrapping runtime.ErrNotFound when there is no such
// channel.
func (s *Service) Destroy(name string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	c, ok := s.channels[name]
	if !ok {
		return runtime.Errorf(runtime.ErrNotFound, "no channel %q", name)
	}
	s.removeLocked(c)
	c.markDestroyed()
	return nil
}

// SessionClosed tells the service that session sid of user uid on frontend
// frontendID closed: every channel created with LeaveOnClose drops the
// member it was for (see ChannelConfig.LeaveOnClose). uid may be "" when it is not
// known (the frontend was gone); then only members added with that session
// (AddSession) leave. Other channels are left alone. The App calls it for
// every session close its server hears of: on a frontend, its own
// sessions'; on a backend, those of the sessions it handled requests of.
func (s *Service) SessionClosed(frontendID string, sid uint64, uid string) {
	s.mu.RLock()
	if len(s.leaving) == 0 {
		s.mu.RUnlock()
		return
	}
	chs := make([]*Channel, 0, len(s.leaving))
	for c := range s.leaving {
		chs = append(chs, c)
	}
	s.mu.RUnlock()
	for _, c := range chs {
		c.sessionClosed(frontendID, sid, uid)
	}
}

// Names returns the names of the channels, sorted.
func (s *Service) Names() []string {
	s.mu.RLock()
	names := make([]string, 0, len(s.channels))
	for name := range s.channels {
		names = append(names, name)
	}
	s.mu.RUnlock()
	slices.Sort(names)
	return names
}

// Len returns the number of channels.
func (s *Service) Len() int {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return len(s.channels)
}

// Close destroys every channel and closes the scheduler (a BatchScheduler
// delivers what it has queued first). Afterwards Create and PushToMembers
// fail with runtime.ErrClosed. Closing twice is harmless.
func (s *Service) Close() error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	s.closed = true
	for _, c := range s.channels {
		c.markDestroyed()
		s.removeLocked(c)
	}
	s.mu.Unlock()
	return s.sched.Close()
}

func (s *Service) isClosed() bool {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.closed
}

// PushToMembers pushes msg under route to the members (Pomelo's
// channelService.pushMessageByUids): they are grouped by frontend, one
// scheduled delivery per frontend, run concurrently when there are several
// and the scheduler delivers at once. A (uid, frontend) pair listed twice
// receives the message once. Members with an empty uid are ignored; members
// with an empty frontend id are returned as failed. It returns the uids that
// could not be reached and the errors of the deliveries, joined.
func (s *Service) PushToMembers(ctx context.Context, route string, msg proto.Message, members []Member) (failed []string, err error) {
	if s.isClosed() {
		return nil, closedError("channel service is closed")
	}
	groups, failed := groupMembers(members)
	f, err := s.push(ctx, route, msg, groups)
	if len(failed) == 0 {
		return f, err
	}
	return append(failed, f...), err
}

// group is the uids of one frontend.
type group struct {
	frontendID string
	uids       []string
}

// groupMembers groups members by frontend (sorted by frontend id, then
// uid), without duplicates; members without a frontend id are returned as
// failed.
func groupMembers(members []Member) (groups []group, failed []string) {
	ms := make([]Member, 0, len(members))
	for _, m := range members {
		switch {
		case m.UID == "":
		case m.FrontendID == "":
			failed = append(failed, m.UID)
		default:
			ms = append(ms, m)
		}
	}
	slices.SortFunc(ms, func(a, b Member) int {
		if c := cmp.Compare(a.FrontendID, b.FrontendID); c != 0 {
			return c
		}
		return cmp.Compare(a.UID, b.UID)
	})
	ms = slices.Compact(ms)
	uids := make([]string, len(ms))
	for i, m := range ms {
		uids[i] = m.UID
	}
	for i := 0; i < len(ms); {
		j := i + 1
		for j < len(ms) && ms[j].FrontendID == ms[i].FrontendID {
			j++
		}
		groups = append(groups, group{frontendID: ms[i].FrontendID, uids: uids[i:j:j]})
		i = j
	}
	return groups, failed
}

// push schedules one delivery per group, concurrently when there are
// several and the scheduler delivers at once, and collects the failed uids
// and the errors.
func (s *Service) push(ctx context.Context, route string, msg proto.Message, groups []group) ([]string, error) {
	switch {
	case len(groups) == 0:
		return nil, nil
	case len(groups) == 1:
		g := &groups[0]
		failed, err := s.sched.Schedule(ctx, g.frontendID, route, msg, g.uids, s.delivery)
		return failed, wrapPushError(route, g.frontendID, err)
	}
	type result struct {
		failed []string
		err    error
	}
	results := make([]result, len(groups))
	if s.async {
		for i := range groups {
			g := &groups[i]
			results[i].failed, results[i].err = s.sched.Schedule(ctx, g.frontendID, route, msg, g.uids, s.delivery)
		}
	} else {
		var wg sync.WaitGroup
		for i := 1; i < len(groups); i++ {
			g, r := &groups[i], &results[i]
			wg.Go(func() {
				r.failed, r.err = s.sched.Schedule(ctx, g.frontendID, route, msg, g.uids, s.delivery)
			})
		}
		results[0].failed, results[0].err = s.sched.Schedule(ctx, groups[0].frontendID, route, msg, groups[0].uids, s.delivery)
		wg.Wait()
	}
	var failed []string
	var errs []error
	nFailed := 0
	for i := range results {
		nFailed += len(results[i].failed)
		if results[i].err != nil {
			errs = append(errs, wrapPushError(route, groups[i].frontendID, results[i].err))
		}
	}
	if nFailed > 0 {
		failed = make([]string, 0, nFailed)
		for i := range results {
			failed = append(failed, results[i].failed...)
		}
	}
	switch len(errs) {
	case 0:
		return failed, nil
	case 1:
		return failed, errs[0]
	}
	return failed, errors.Join(errs...)
}

func wrapPushError(route, frontendID string, err error) error {
	if err == nil {
		return nil
	}
	return fmt.Errorf("push %s to frontend %s: %w", route, frontendID, err)
}
