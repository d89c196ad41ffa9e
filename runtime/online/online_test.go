package online_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pomelo-go/pomelo/internal/clustertest"
	"github.com/pomelo-go/pomelo/internal/testservers"
	"github.com/pomelo-go/pomelo/runtime"
	"github.com/pomelo-go/pomelo/runtime/client"
	"github.com/pomelo-go/pomelo/runtime/cluster"
	"github.com/pomelo-go/pomelo/runtime/online"
	"github.com/pomelo-go/pomelo/runtime/session"
)

func frontends(t testing.TB, on *online.Service, uid string) []string {
	t.Helper()
	f, err := on.Frontends(context.Background(), uid)
	if err != nil {
		t.Fatal(err)
	}
	return f
}

func TestStatusFollowsBindUnbindAndClose(t *testing.T) {
	e := start(t, online.Config{})
	fe := e.Members("connector")
	on := e.online("chat-1")

	a1, a2 := dial(t, fe[0]), dial(t, fe[0])
	b := dial(t, fe[1])
	// Bound on the frontend and from the backend: recorded by the time the
	// bind returns.
	call(t, a1, "connector.entry.bind", map[string]any{"uid": "ann"})
	if got := frontends(t, on, "ann"); !slices.Equal(got, []string{"connector-1"}) {
		t.Fatalf("ann on %v after bind", got)
	}
	call(t, a2, "chat.h.bind", map[string]any{"uid": "ann"})
	call(t, b, "chat.h.bind", map[string]any{"uid": "ann"})
	if got := frontends(t, on, "ann"); !slices.Equal(got, []string{"connector-1", "connector-2"}) {
		t.Fatalf("ann on %v with sessions on both frontends", got)
	}
	// Two sessions on connector-1: online there until both are gone.
	a1.Close()
	waitFor(t, "a1 closed", func() bool { return len(fe[0].Server.Sessions().GetByUID("ann")) == 1 })
	if got := frontends(t, on, "ann"); !slices.Equal(got, []string{"connector-1", "connector-2"}) {
		t.Fatalf("ann on %v after one of two sessions on connector-1 closed", got)
	}
	call(t, a2, "chat.h.unbind", nil)
	waitFor(t, "ann off connector-1", func() bool { return slices.Equal(frontends(t, on, "ann"), []string{"connector-2"}) })
	b.Close()
	waitFor(t, "ann offline", func() bool { return len(frontends(t, on, "ann")) == 0 })
	// Re-binding the unbound session brings the user back.
	call(t, a2, "connector.entry.bind", map[string]any{"uid": "ann"})
	if got := frontends(t, on, "ann"); !slices.Equal(got, []string{"connector-1"}) {
		t.Fatalf("ann on %v after binding again", got)
	}
	if ok, err := on.Online(context.Background(), "nobody"); ok || err != nil {
		t.Fatalf("Online(nobody) = %v, %v", ok, err)
	}
}

// TestPushAndKickByUIDReachOtherFrontend pushes and kicks by uid from a
// backend and from the other frontend. A frontend that is in the
// membership but unreachable shows that only the frontends holding the
// uids are called: asking it would fail.
func TestPushAndKickByUIDReachOtherFrontend(t *testing.T) {
	e := start(t, online.Config{})
	fe := e.Members("connector")
	e.Membership.Add(cluster.ServerInfo{ID: "connector-ghost", Type: "connector", Host: "127.0.0.1", RPCPort: 1, Frontend: true})

	bob := dial(t, fe[1])
	var notes atomic.Int32
	bob.OnPush("onNote", func([]byte) { notes.Add(1) })
	call(t, bob, "connector.entry.bind", map[string]any{"uid": "bob"})
	amy := dial(t, fe[0])
	call(t, amy, "connector.entry.bind", map[string]any{"uid": "amy"})

	// From the backend (routed by amy's uid), and from connector-1 itself.
	for _, route := range []string{"chat.h.push", "connector.entry.push"} {
		res := call(t, amy, route, map[string]any{"uids": []any{"bob", "nobody"}, "text": "hi"})
		failed := res.Fields["failed"].GetListValue().GetValues()
		if len(failed) != 1 || failed[0].GetStringValue() != "nobody" {
			t.Fatalf("%s: failed = %v, want [nobody]", route, failed)
		}
	}
	waitFor(t, "bob's pushes", func() bool { return notes.Load() == 2 })

	res := call(t, amy, "chat.h.kick", map[string]any{"uid": "bob"})
	if n := res.Fields["kicked"].GetNumberValue(); n != 1 {
		t.Fatalf("kicked %v sessions, want 1", n)
	}
	select {
	case <-bob.Done():
	case <-time.After(10 * time.Second):
		t.Fatal("bob not disconnected by the kick")
	}
	if r, ok := bob.KickReason(); !ok || r != "bye" {
		t.Fatalf("bob's kick reason = %q, %v", r, ok)
	}
	if notes.Load() != 2 {
		t.Fatalf("bob got %d pushes, want exactly 2", notes.Load())
	}
}

func TestLocatorFallsBackToEveryFrontendWithoutRedis(t *testing.T) {
	e := start(t, online.Config{Timeout: 500 * time.Millisecond})
	fe := e.Members("connector")
	bob := dial(t, fe[1])
	got := make(chan struct{}, 1)
	bob.OnPush("onNote", func([]byte) { got <- struct{}{} })
	call(t, bob, "connector.entry.bind", map[string]any{"uid": "bob"})
	// A locator that fails: the node asks every frontend instead.
	backend := e.Members("chat")[0].Node
	backend.SetLocator(func(ctx context.Context, uids []string) (map[string][]string, error) {
		return nil, errors.New("redis is down")
	})
	failed, err := backend.PushToUIDs(context.Background(), "onNote", obj(map[string]any{"text": "x"}), []string{"bob"})
	if err != nil || len(failed) != 0 {
		t.Fatalf("push with a failing locator: failed %v, err %v", failed, err)
	}
	select {
	case <-got:
	case <-time.After(10 * time.Second):
		t.Fatal("push not delivered")
	}
}

// TestCrashedFrontendExpires kills a frontend without cleanup: its users
// are offline once its liveness expires, and the reaper deletes its
// entries.
func TestCrashedFrontendExpires(t *testing.T) {
	e := start(t, online.Config{TTL: time.Second})
	fe := e.Members("connector")
	on := e.online("chat-1")
	c := dial(t, fe[1])
	call(t, c, "connector.entry.bind", map[string]any{"uid": "cat"})
	call(t, dial(t, fe[0]), "connector.entry.bind", map[string]any{"uid": "dog"})
	if got := frontends(t, on, "cat"); !slices.Equal(got, []string{"connector-2"}) {
		t.Fatalf("cat on %v", got)
	}
	e.online("connector-2").Kill()
	e.Kill("connector-2")
	waitFor(t, "cat offline", func() bool { return len(frontends(t, on, "cat")) == 0 })
	ctx := context.Background()
	waitFor(t, "connector-2 reaped", func() bool {
		n, err := e.rdb.Exists(ctx, e.prefix+"u:cat", e.prefix+"f:connector-2:s", e.prefix+"f:connector-2:c").Result()
		return err == nil && n == 0
	})
	if ok, _ := e.rdb.SIsMember(ctx, e.prefix+"fronts", "connector-2").Result(); ok {
		t.Fatal("connector-2 still listed")
	}
	// The live frontend's users are untouched.
	if got := frontends(t, on, "dog"); !slices.Equal(got, []string{"connector-1"}) {
		t.Fatalf("dog on %v", got)
	}
}

// TestRestartedFrontendClearsItsOldEntries starts a frontend with the id
// of one that crashed a moment ago (its entries not yet expired).
func TestRestartedFrontendClearsItsOldEntries(t *testing.T) {
	rdb := newRedis(t)
	prefix := testservers.Prefix(t)
	var first *online.Service
	kit := clustertest.Start(t, clustertest.Options{
		Servers: []clustertest.Spec{{Type: "connector", Frontend: true}},
		Setup: func(m *clustertest.Member) error {
			first = online.New(rdb, online.Config{Prefix: prefix, TTL: time.Minute})
			setupHandlers(t, m, first)
			return first.Attach(m.Node)
		},
	})
	call(t, dial(t, kit.Members("connector")[0]), "connector.entry.bind", map[string]any{"uid": "eve"})
	first.Kill()
	kit.Kill("connector-1")
	if ok, _ := first.Online(context.Background(), "eve"); !ok {
		t.Fatal("eve offline right after the crash; want her entry to outlive it for the test")
	}
	var second *online.Service
	clustertest.Start(t, clustertest.Options{
		Servers: []clustertest.Spec{{Type: "connector", Frontend: true}},
		Setup: func(m *clustertest.Member) error {
			second = online.New(rdb, online.Config{Prefix: prefix, TTL: time.Minute})
			return second.Attach(m.Node)
		},
	})
	t.Cleanup(func() { second.Close() })
	if ok, _ := second.Online(context.Background(), "eve"); ok {
		t.Fatal("eve still online after her frontend restarted")
	}
}

// TestFrontendRewritesItsSessionsAfterLosingLiveness deletes a frontend's
// liveness key and reaps it, as another server would after a long Redis
// outage: the frontend notices at its next heartbeat and writes its
// sessions again.
func TestFrontendRewritesItsSessionsAfterLosingLiveness(t *testing.T) {
	e := start(t, online.Config{TTL: 900 * time.Millisecond})
	on := e.online("chat-1")
	c := dial(t, e.Members("connector")[0])
	call(t, c, "connector.entry.bind", map[string]any{"uid": "fay"})
	ctx := context.Background()
	if err := e.rdb.Del(ctx, on.AliveKey("connector-1")).Err(); err != nil {
		t.Fatal(err)
	}
	if err := on.ReapOnce(ctx); err != nil {
		t.Fatal(err)
	}
	if ok, _ := on.Online(ctx, "fay"); ok {
		t.Fatal("fay still online after her frontend was reaped")
	}
	waitFor(t, "fay online again", func() bool { ok, _ := on.Online(ctx, "fay"); return ok })
}

// racePolicy races two logins of one uid on two frontends, many times, and
// checks that exactly one session is left each time.
func racePolicy(t *testing.T, policy session.Policy) {
	e := start(t, online.Config{Policy: policy})
	fe := e.Members("connector")
	on := e.online("chat-1")
	const rounds = 30
	wins := [2]int{}
	for i := range rounds {
		uid := fmt.Sprintf("racer-%d", i)
		clients := [2]*client.Client{dial(t, fe[0]), dial(t, fe[1])}
		// Log in through the frontend's own handler on one side and through
		// the backend on the other, alternating.
		routes := [2]string{"connector.entry.login", "chat.h.login"}
		if i%2 == 1 {
			routes[0], routes[1] = routes[1], routes[0]
		}
		var errs [2]error
		var wg sync.WaitGroup
		startCh := make(chan struct{})
		for k := range 2 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				<-startCh
				_, errs[k] = tryCall(clients[k], routes[k], map[string]any{"uid": uid})
			}()
		}
		close(startCh)
		wg.Wait()

		var holders []int
		for k, f := range fe {
			for range f.Server.Sessions().GetByUID(uid) {
				holders = append(holders, k)
			}
		}
		if len(holders) != 1 {
			t.Fatalf("round %d: %d sessions of %s (errors %v, %v), want exactly 1", i, len(holders), uid, errs[0], errs[1])
		}
		w := holders[0]
		wins[w]++
		if errs[w] != nil {
			t.Fatalf("round %d: the surviving session's login failed: %v", i, errs[w])
		}
		loser := 1 - w
		switch policy {
		case session.RejectNew:
			if !errors.Is(errs[loser], session.ErrDuplicateLogin) {
				t.Fatalf("round %d: the refused login got %v, want %s", i, errs[loser], session.ErrDuplicateLogin.Name)
			}
		case session.KickOld:
			// The loser was kicked, before or after its own bind.
			select {
			case <-clients[loser].Done():
			case <-time.After(10 * time.Second):
				t.Fatalf("round %d: the losing client was not disconnected", i)
			}
			if r, ok := clients[loser].KickReason(); !ok || r != session.KickReasonRelogin {
				t.Fatalf("round %d: loser kick reason %q, %v", i, r, ok)
			}
		}
		// The loser's frontend records its session's close in the
		// background: wait for the status to settle on the winner alone.
		waitFor(t, fmt.Sprintf("round %d: %s online only on %s", i, uid, fe[w].Info.ID), func() bool {
			return slices.Equal(frontends(t, on, uid), []string{fe[w].Info.ID})
		})
		if got := frontends(t, on, uid); !slices.Equal(got, []string{fe[w].Info.ID}) {
			t.Fatalf("round %d: online on %v, want only %s", i, got, fe[w].Info.ID)
		}
		// Logging out releases the login: a new login succeeds.
		clients[w].Close()
		waitFor(t, "winner gone", func() bool { return len(fe[w].Server.Sessions().GetByUID(uid)) == 0 })
		if i == 0 {
			again := dial(t, fe[loser])
			call(t, again, "connector.entry.login", map[string]any{"uid": uid})
			again.Close()
		}
		clients[loser].Close()
	}
	t.Logf("%d rounds: frontend wins %v", rounds, wins)
}

func TestLoginRaceRejectNew(t *testing.T) { racePolicy(t, session.RejectNew) }

func TestLoginRaceKickOld(t *testing.T) { racePolicy(t, session.KickOld) }

func TestLoginKickOldAcrossFrontends(t *testing.T) {
	e := start(t, online.Config{Policy: session.KickOld})
	fe := e.Members("connector")
	old := dial(t, fe[0])
	call(t, old, "connector.entry.login", map[string]any{"uid": "gus"})
	// Logging in again on the same session is allowed.
	call(t, old, "chat.h.login", map[string]any{"uid": "gus"})
	neu := dial(t, fe[1])
	call(t, neu, "chat.h.login", map[string]any{"uid": "gus"})
	select {
	case <-old.Done():
	case <-time.After(10 * time.Second):
		t.Fatal("old session not kicked")
	}
	if r, _ := old.KickReason(); r != session.KickReasonRelogin {
		t.Fatalf("kick reason %q", r)
	}
	if got := frontends(t, e.online("chat-1"), "gus"); !slices.Equal(got, []string{"connector-2"}) {
		t.Fatalf("gus on %v", got)
	}
}

func TestLoginRejectTakesOverStaleOwner(t *testing.T) {
	e := start(t, online.Config{Policy: session.RejectNew})
	on := e.online("chat-1")
	ctx := context.Background()
	// An owner record for a session that no longer exists on a live
	// frontend (its release never reached Redis).
	inc, err := e.rdb.Get(ctx, on.AliveKey("connector-1")).Result()
	if err != nil {
		t.Fatal(err)
	}
	if err := e.rdb.Set(ctx, e.prefix+"own:hal", inc+":999:connector-1", 0).Err(); err != nil {
		t.Fatal(err)
	}
	c := dial(t, e.Members("connector")[1])
	call(t, c, "connector.entry.login", map[string]any{"uid": "hal"})
	// And a live owner blocks.
	d := dial(t, e.Members("connector")[0])
	_, err = tryCall(d, "chat.h.login", map[string]any{"uid": "hal"})
	if !errors.Is(err, session.ErrDuplicateLogin) {
		t.Fatalf("second login: %v", err)
	}
}

func TestLoginNeedsAttachedFrontend(t *testing.T) {
	rdb := newRedis(t)
	prefix := testservers.Prefix(t)
	var backendOn *online.Service
	kit := clustertest.Start(t, clustertest.Options{
		Servers: []clustertest.Spec{{Type: "connector", Frontend: true}, {Type: "chat"}},
		Setup: func(m *clustertest.Member) error {
			if m.Info.Type != "chat" {
				return nil // the frontend does not attach
			}
			backendOn = online.New(rdb, online.Config{Prefix: prefix, Policy: session.KickOld})
			setupHandlers(t, m, backendOn)
			return backendOn.Attach(m.Node)
		},
	})
	t.Cleanup(func() { backendOn.Close() })
	c := dial(t, kit.Members("connector")[0])
	_, err := tryCall(c, "chat.h.login", map[string]any{"uid": "ivy"})
	// The client learns the service is unavailable; which frontend is
	// not attached is the server log's business, not the client's.
	if !errors.Is(err, runtime.ErrUnavailable) || strings.Contains(err.Error(), "connector-1") {
		t.Fatalf("login through a frontend without online status: %v, want UNAVAILABLE without server ids", err)
	}
}
