// Package globalchannel holds channels in Redis (Pomelo's global channel):
// a channel spans every server, so that any backend can add users to it,
// remove them, list them and push to them, wherever the users are
// connected. A push reaches each member through the frontend holding it,
// with one call per frontend per push.
//
// Members are uid and frontend id pairs, stored per frontend. The state of
// a frontend that crashed is ignored once its liveness key (kept by the
// online status, runtime/online) expires, and deleted by the online
// status's reaper.
//
// An App (github.com/pomelo-go/pomelo) whose Config.Online is set makes
// them: App.GlobalChannels returns them, on any server of the cluster:
//
//	channels := app.GlobalChannels()
//	err = channels.Add(ctx, "room-1", uid, session.FrontendID())
//	failed, err := channels.Push(ctx, "room-1", "onChat", msg)
package globalchannel

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync"

	"github.com/redis/go-redis/v9"
	"google.golang.org/protobuf/proto"

	"github.com/pomelo-go/pomelo/runtime"
	"github.com/pomelo-go/pomelo/runtime/channel"
	"github.com/pomelo-go/pomelo/runtime/online"
)

// Key layout, under the online status's prefix P, for a channel named N
// (written with its length, so that no two names or frontend ids give the
// same key) and a frontend F:
//
//	P gc:<len(N)>:N:fronts  set  frontend ids with members of the channel
//	P gc:<len(N)>:N:f:F     set  uids of the channel's members on F
//	P gcf:F                 set  names of the channels with members on F

// Service is the cluster's global channels, as used from one server. It is
// safe for concurrent use.
type Service struct {
	on       *online.Service
	rdb      redis.UniversalClient
	p        string
	delivery channel.Delivery
}

// Config configures a Service. Its zero value is the default
// configuration.
type Config struct {
	// Delivery, when set, carries the pushes to the frontends instead of
	// the attached node's PushToFrontend.
	Delivery channel.Delivery
}

// New returns the global channels stored next to on's online status (same
// Redis, same prefix), configured by cfg. Create it before on is attached
// (before the App serves), so that a frontend attaching also clears the
// channel memberships an earlier run of it left.
func New(on *online.Service, cfg Config) *Service {
	g := &Service{on: on, rdb: on.Client(), p: on.Prefix(), delivery: cfg.Delivery}
	on.OnReap(g.reap)
	return g
}

func (g *Service) base(name string) string {
	return g.p + "gc:" + strconv.Itoa(len(name)) + ":" + name + ":"
}

func (g *Service) frontsKey(name string) string       { return g.base(name) + "fronts" }
func (g *Service) membersKey(name, fid string) string { return g.base(name) + "f:" + fid }
func (g *Service) byFrontKey(fid string) string       { return g.p + "gcf:" + fid }

func (g *Service) ctx(ctx context.Context) (context.Context, context.CancelFunc) {
	if _, ok := ctx.Deadline(); ok {
		return ctx, func() {}
	}
	return context.WithTimeout(ctx, g.on.Config().Timeout)
}

func check(name, uid, fid string) error {
	if name == "" || uid == "" || fid == "" {
		return runtime.Errorf(runtime.ErrBadRequest, "global channel: need a channel name, a uid and a frontend id (got %q, %q, %q)", name, uid, fid)
	}
	return nil
}

// Add adds uid, whose session is held by frontend frontendID, to channel
// name (created on first use). Adding a member again changes nothing; a
// uid may be a member through several frontends. The frontend must be
// alive in the online status.
func (g *Service) Add(ctx context.Context, name, uid, frontendID string) error {
	if err := check(name, uid, frontendID); err != nil {
		return err
	}
	ctx, cancel := g.ctx(ctx)
	defer cancel()
	err := addScript.Run(ctx, g.rdb,
		[]string{g.frontsKey(name), g.membersKey(name, frontendID), g.byFrontKey(frontendID), g.on.AliveKey(frontendID)},
		name, uid, frontendID).Err()
	if err != nil {
		if msg, ok := strings.CutPrefix(err.Error(), "OFFLINE "); ok {
			return runtime.Errorf(runtime.ErrUnavailable, "global channel %q: %s", name, msg)
		}
		return runtime.Errorf(runtime.ErrUnavailable, "global channel %q: add: %v", name, err)
	}
	return nil
}

// Leave removes uid's membership through frontend frontendID from channel
// name. Leaving when not a member does nothing.
func (g *Service) Leave(ctx context.Context, name, uid, frontendID string) error {
	if err := check(name, uid, frontendID); err != nil {
		return err
	}
	ctx, cancel := g.ctx(ctx)
	defer cancel()
	err := leaveScript.Run(ctx, g.rdb,
		[]string{g.frontsKey(name), g.membersKey(name, frontendID), g.byFrontKey(frontendID)},
		name, uid, frontendID).Err()
	if err != nil {
		return runtime.Errorf(runtime.ErrUnavailable, "global channel %q: leave: %v", name, err)
	}
	return nil
}

// groups returns the members of channel name on live frontends, by
// frontend id.
func (g *Service) groups(ctx context.Context, name string) (map[string][]string, error) {
	ctx, cancel := g.ctx(ctx)
	defer cancel()
	before, after := g.on.AliveKeyAffixes()
	res, err := membersScript.Run(ctx, g.rdb, []string{g.frontsKey(name)}, g.base(name), before, after).Slice()
	if err != nil {
		return nil, runtime.Errorf(runtime.ErrUnavailable, "global channel %q: members: %v", name, err)
	}
	out := map[string][]string{}
	for i := 0; i+1 < len(res); i += 2 {
		fid, _ := res[i].(string)
		list, _ := res[i+1].([]any)
		uids := make([]string, 0, len(list))
		for _, u := range list {
			if s, ok := u.(string); ok {
				uids = append(uids, s)
			}
		}
		if len(uids) > 0 {
			out[fid] = uids
		}
	}
	return out, nil
}

// Members returns the members of channel name on live frontends, sorted by
// uid and frontend id.
func (g *Service) Members(ctx context.Context, name string) ([]channel.Member, error) {
	groups, err := g.groups(ctx, name)
	if err != nil {
		return nil, err
	}
	var out []channel.Member
	for fid, uids := range groups {
		for _, u := range uids {
			out = append(out, channel.Member{UID: u, FrontendID: fid})
		}
	}
	slices.SortFunc(out, func(a, b channel.Member) int {
		return cmp.Or(cmp.Compare(a.UID, b.UID), cmp.Compare(a.FrontendID, b.FrontendID))
	})
	return out, nil
}

// MembersOn returns the uids of channel name's members on frontend
// frontendID, sorted (Pomelo's getMembersBySid); none when the frontend is
// not alive.
func (g *Service) MembersOn(ctx context.Context, name, frontendID string) ([]string, error) {
	ctx, cancel := g.ctx(ctx)
	defer cancel()
	pipe := g.rdb.Pipeline()
	alive := pipe.Exists(ctx, g.on.AliveKey(frontendID))
	members := pipe.SMembers(ctx, g.membersKey(name, frontendID))
	if _, err := pipe.Exec(ctx); err != nil && !errors.Is(err, redis.Nil) {
		return nil, runtime.Errorf(runtime.ErrUnavailable, "global channel %q: members: %v", name, err)
	}
	if alive.Val() == 0 {
		return nil, nil
	}
	uids := members.Val()
	slices.Sort(uids)
	return uids, nil
}

// Push pushes msg under route to every member of channel name, with one
// delivery per live frontend holding members, concurrently. It returns the
// uids that could not be reached (on a frontend that no longer has their
// session, or that failed) and the first delivery error.
func (g *Service) Push(ctx context.Context, name, route string, msg proto.Message) (failed []string, err error) {
	groups, err := g.groups(ctx, name)
	if err != nil {
		return nil, err
	}
	d := g.delivery
	if d == nil {
		n := g.on.Node()
		if n == nil {
			return nil, errors.New("globalchannel: online status not attached to a node")
		}
		d = channel.DeliveryFunc(n.PushToFrontend)
	}
	var (
		mu       sync.Mutex
		wg       sync.WaitGroup
		firstErr error
		seen     = map[string]bool{}
	)
	for fid, uids := range groups {
		wg.Add(1)
		go func() {
			defer wg.Done()
			f, err := d.PushToUIDs(ctx, fid, route, msg, uids)
			mu.Lock()
			defer mu.Unlock()
			if err != nil && firstErr == nil {
				firstErr = err
			}
			for _, u := range f {
				if !seen[u] {
					seen[u] = true
					failed = append(failed, u)
				}
			}
		}()
	}
	wg.Wait()
	slices.Sort(failed)
	return failed, firstErr
}

// Destroy deletes channel name and all its members.
func (g *Service) Destroy(ctx context.Context, name string) error {
	ctx, cancel := g.ctx(ctx)
	defer cancel()
	err := destroyScript.Run(ctx, g.rdb, []string{g.frontsKey(name)}, g.base(name), g.p+"gcf:", name).Err()
	if err != nil {
		return runtime.Errorf(runtime.ErrUnavailable, "global channel %q: destroy: %v", name, err)
	}
	return nil
}

// reapBatch is how many channels one reap script handles.
const reapBatch = 200

// reap deletes the channel memberships on frontend fid (online.OnReap).
func (g *Service) reap(ctx context.Context, fid string, force bool) error {
	f := "0"
	if force {
		f = "1"
	}
	before, after := g.on.AliveKeyAffixes()
	var cursor uint64
	for {
		cctx, cancel := context.WithTimeout(ctx, g.on.Config().Timeout)
		names, next, err := g.rdb.SScan(cctx, g.byFrontKey(fid), cursor, "", reapBatch).Result()
		if err == nil && len(names) > 0 {
			args := []any{fid, f, g.p + "gc:"}
			for _, n := range names {
				args = append(args, n)
			}
			var ok int
			ok, err = reapScript.Run(cctx, g.rdb, []string{before + fid + after, g.byFrontKey(fid)}, args...).Int()
			if err == nil && ok == 0 {
				cancel()
				return nil // alive again
			}
		}
		cancel()
		if err != nil {
			return fmt.Errorf("globalchannel: reap %s: %w", fid, err)
		}
		if cursor = next; cursor == 0 {
			return nil
		}
	}
}

// Channel returns a handle on channel name. It is a runtime.RoutePusher,
// for typed pushes: onChat.ToGroup(ctx, channels.Channel("room-1"), msg).
func (g *Service) Channel(name string) *Channel { return &Channel{g: g, name: name} }

// Channel is a handle on one global channel.
type Channel struct {
	g    *Service
	name string
}

var _ runtime.RoutePusher = (*Channel)(nil)

// Name returns the channel's name.
func (c *Channel) Name() string { return c.name }

// Add adds uid on frontend frontendID: see Service.Add.
func (c *Channel) Add(ctx context.Context, uid, frontendID string) error {
	return c.g.Add(ctx, c.name, uid, frontendID)
}

// Leave removes uid on frontend frontendID: see Service.Leave.
func (c *Channel) Leave(ctx context.Context, uid, frontendID string) error {
	return c.g.Leave(ctx, c.name, uid, frontendID)
}

// Members returns the members: see Service.Members.
func (c *Channel) Members(ctx context.Context) ([]channel.Member, error) {
	return c.g.Members(ctx, c.name)
}

// PushMessage implements runtime.RoutePusher: see Service.Push.
func (c *Channel) PushMessage(ctx context.Context, route string, msg proto.Message) ([]string, error) {
	return c.g.Push(ctx, c.name, route, msg)
}

// Destroy deletes the channel: see Service.Destroy.
func (c *Channel) Destroy(ctx context.Context) error { return c.g.Destroy(ctx, c.name) }
