package channel_test

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"sync"
	"testing"

	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/pomelo-go/pomelo/runtime"
	"github.com/pomelo-go/pomelo/runtime/channel"
	"github.com/pomelo-go/pomelo/runtime/session"
)

var ctx = context.Background()

func TestAddLeaveSetSemantics(t *testing.T) {
	cl := newCluster(t, "fe-1", "fe-2")
	alice := cl.login("fe-1", "alice", nil)
	bob := cl.login("fe-2", "bob", nil)
	alice2 := cl.login("fe-2", "alice", nil) // alice is also on fe-2
	svc := channel.NewService(cl, channel.Config{})
	defer svc.Close()
	c := svc.GetOrCreate("room", channel.ChannelConfig{})

	for range 3 {
		if err := c.Add("alice", "fe-1"); err != nil {
			t.Fatal(err)
		}
	}
	if err := c.Add("bob", "fe-2"); err != nil {
		t.Fatal(err)
	}
	if got := c.Len(); got != 2 {
		t.Fatalf("Len = %d, want 2", got)
	}
	want := []channel.Member{{UID: "alice", FrontendID: "fe-1"}, {UID: "bob", FrontendID: "fe-2"}}
	if got := c.Members(); !slices.Equal(got, want) {
		t.Fatalf("Members = %v, want %v", got, want)
	}
	if got := c.UIDs(); !slices.Equal(got, []string{"alice", "bob"}) {
		t.Fatalf("UIDs = %v", got)
	}
	if m, ok := c.Member("alice"); !ok || m.FrontendID != "fe-1" {
		t.Fatalf("Member(alice) = %v, %v", m, ok)
	}
	if _, ok := c.Member("nobody"); ok {
		t.Fatal("Member(nobody) found")
	}

	if failed, err := c.PushMessage(ctx, "onChat", wrapperspb.String("one")); err != nil || failed != nil {
		t.Fatalf("push: %v, %v", failed, err)
	}
	if got := alice.messages(t); !slices.Equal(got, []pushed{{"onChat", `"one"`}}) {
		t.Fatalf("alice got %v, want exactly one push", got)
	}
	if got := alice2.messages(t); len(got) != 0 {
		t.Fatalf("alice on fe-2 got %v before moving", got)
	}

	// Adding alice with fe-2 moves her there.
	if err := c.Add("alice", "fe-2"); err != nil {
		t.Fatal(err)
	}
	if m, _ := c.Member("alice"); m.FrontendID != "fe-2" || c.Len() != 2 {
		t.Fatalf("after move: Member(alice) = %v, Len = %d", m, c.Len())
	}
	if _, err := c.PushMessage(ctx, "onChat", wrapperspb.String("two")); err != nil {
		t.Fatal(err)
	}
	if got := len(alice.messages(t)); got != 1 {
		t.Fatalf("alice on fe-1 got %d pushes after moving, want still 1", got)
	}
	if got := alice2.messages(t); !slices.Equal(got, []pushed{{"onChat", `"two"`}}) {
		t.Fatalf("alice on fe-2 got %v", got)
	}

	// LeaveFrom with another frontend leaves the membership alone.
	if err := c.LeaveFrom("alice", "fe-1"); err != nil {
		t.Fatal(err)
	}
	if _, ok := c.Member("alice"); !ok {
		t.Fatal("LeaveFrom(alice, fe-1) removed alice, who is on fe-2")
	}
	if err := c.LeaveFrom("alice", "fe-2"); err != nil {
		t.Fatal(err)
	}
	if _, ok := c.Member("alice"); ok {
		t.Fatal("LeaveFrom(alice, fe-2) kept alice")
	}
	if err := c.Leave("bob"); err != nil {
		t.Fatal(err)
	}
	if err := c.Leave("bob"); err != nil {
		t.Fatalf("leaving twice: %v", err)
	}
	if c.Len() != 0 || c.Members() != nil || c.UIDs() != nil {
		t.Fatalf("after leaving: Len %d, Members %v, UIDs %v", c.Len(), c.Members(), c.UIDs())
	}
	if failed, err := c.PushMessage(ctx, "onChat", wrapperspb.String("three")); err != nil || failed != nil {
		t.Fatalf("push to empty channel: %v, %v", failed, err)
	}
	if got := len(bob.messages(t)); got != 2 {
		t.Fatalf("bob got %d pushes, want 2", got)
	}

	for _, args := range [][2]string{{"", "fe-1"}, {"carol", ""}} {
		if err := c.Add(args[0], args[1]); !errors.Is(err, runtime.ErrBadRequest) {
			t.Errorf("Add(%q, %q) = %v, want BAD_REQUEST", args[0], args[1], err)
		}
	}
}

func TestPushReachesBothFrontendsOnce(t *testing.T) {
	cl := newCluster(t, "fe-1", "fe-2")
	conns := map[string]*fakeConn{
		"alice":  cl.login("fe-1", "alice", nil),
		"alice2": cl.login("fe-1", "alice", nil), // a second device
		"bob":    cl.login("fe-1", "bob", runtime.Protobuf),
		"carol":  cl.login("fe-2", "carol", nil),
		"dave":   cl.login("fe-2", "dave", nil),
	}
	outsider := cl.login("fe-2", "outsider", nil)
	svc := channel.NewService(cl, channel.Config{})
	defer svc.Close()
	c, err := svc.Create("room", channel.ChannelConfig{})
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range []channel.Member{{"alice", "fe-1"}, {"bob", "fe-1"}, {"carol", "fe-2"}, {"dave", "fe-2"}} {
		if err := c.Add(m.UID, m.FrontendID); err != nil {
			t.Fatal(err)
		}
	}
	failed, err := c.PushMessage(ctx, "onChat", wrapperspb.String("hi"))
	if err != nil || failed != nil {
		t.Fatalf("push: %v, %v", failed, err)
	}
	if got, want := cl.callCounts(), map[string]int{"fe-1": 1, "fe-2": 1}; !mapsEqual(got, want) {
		t.Fatalf("delivery calls %v, want %v", got, want)
	}
	for name, conn := range conns {
		got := conn.messages(t)
		if len(got) != 1 || got[0].Route != "onChat" {
			t.Fatalf("%s got %v, want one onChat push", name, got)
		}
		want := `"hi"`
		if name == "bob" {
			want = "\n\x02hi" // protobuf StringValue{value: "hi"}
		}
		if got[0].Body != want {
			t.Errorf("%s got body %q, want %q", name, got[0].Body, want)
		}
	}
	if got := outsider.messages(t); len(got) != 0 {
		t.Fatalf("non-member got %v", got)
	}
}

func mapsEqual(a, b map[string]int) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if w, ok := b[k]; !ok || w != v {
			return false
		}
	}
	return true
}

func TestPushFailedUIDs(t *testing.T) {
	cl := newCluster(t, "fe-1", "fe-2")
	alice := cl.login("fe-1", "alice", nil)
	svc := channel.NewService(cl, channel.Config{})
	defer svc.Close()
	c := svc.GetOrCreate("room", channel.ChannelConfig{})
	for _, m := range []channel.Member{{"alice", "fe-1"}, {"ghost", "fe-1"}, {"phantom", "fe-2"}} {
		if err := c.Add(m.UID, m.FrontendID); err != nil {
			t.Fatal(err)
		}
	}
	failed, err := c.PushMessage(ctx, "onChat", wrapperspb.String("x"))
	if err != nil {
		t.Fatal(err)
	}
	slices.Sort(failed)
	if !slices.Equal(failed, []string{"ghost", "phantom"}) {
		t.Fatalf("failed = %v, want [ghost phantom]", failed)
	}
	if len(alice.messages(t)) != 1 {
		t.Fatal("alice missed the push")
	}

	// A frontend that cannot be reached: all its uids fail, with the error.
	if err := c.Add("zed", "fe-9"); err != nil {
		t.Fatal(err)
	}
	failed, err = c.PushMessage(ctx, "onChat", wrapperspb.String("y"))
	if !errors.Is(err, runtime.ErrUnavailable) {
		t.Fatalf("err = %v, want UNAVAILABLE", err)
	}
	slices.Sort(failed)
	if !slices.Equal(failed, []string{"ghost", "phantom", "zed"}) {
		t.Fatalf("failed = %v", failed)
	}
	if len(alice.messages(t)) != 2 {
		t.Fatal("alice missed the second push")
	}
}

func TestLocalDelivery(t *testing.T) {
	sessions := session.NewService("fe-1", session.AllowMany)
	conn := &fakeConn{}
	s := sessions.Create(conn)
	if err := sessions.Bind(s.ID(), "alice"); err != nil {
		t.Fatal(err)
	}
	d := channel.LocalDelivery(sessions)

	failed, err := d.PushToUIDs(ctx, "fe-1", "onChat", wrapperspb.String("a"), []string{"alice", "bob"})
	if err != nil || !slices.Equal(failed, []string{"bob"}) {
		t.Fatalf("local push: %v, %v", failed, err)
	}
	uids := []string{"alice", "carol"}
	failed, err = d.PushToUIDs(ctx, "fe-2", "onChat", wrapperspb.String("b"), uids)
	if !errors.Is(err, runtime.ErrUnavailable) || !slices.Equal(failed, uids) {
		t.Fatalf("other frontend: %v, %v", failed, err)
	}
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	failed, err = d.PushToUIDs(cctx, "fe-1", "onChat", wrapperspb.String("c"), []string{"alice"})
	if !errors.Is(err, context.Canceled) || !slices.Equal(failed, []string{"alice"}) {
		t.Fatalf("cancelled: %v, %v", failed, err)
	}
	if got := conn.messages(t); !slices.Equal(got, []pushed{{"onChat", `"a"`}}) {
		t.Fatalf("alice got %v", got)
	}
}

func TestEncodeOncePerSerializer(t *testing.T) {
	cl := newCluster(t, "fe-1", "fe-2")
	jsonSer := &countingSerializer{Serializer: runtime.JSON}
	pbSer := &countingSerializer{Serializer: runtime.Protobuf}
	a := cl.login("fe-1", "alice", jsonSer)
	b := cl.login("fe-1", "bob", jsonSer)
	c1 := cl.login("fe-1", "carol", pbSer)
	c2 := cl.login("fe-1", "dave", pbSer)
	svc := channel.NewService(cl, channel.Config{})
	defer svc.Close()
	ch := svc.GetOrCreate("room", channel.ChannelConfig{})
	for _, uid := range []string{"alice", "bob", "carol", "dave"} {
		if err := ch.Add(uid, "fe-1"); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := ch.PushMessage(ctx, "onChat", wrapperspb.String("once")); err != nil {
		t.Fatal(err)
	}
	if n := jsonSer.marshals.Load(); n != 1 {
		t.Errorf("JSON Marshal called %d times, want 1", n)
	}
	if n := pbSer.marshals.Load(); n != 1 {
		t.Errorf("protobuf Marshal called %d times, want 1", n)
	}
	ra, rb, rc, rd := a.raw(), b.raw(), c1.raw(), c2.raw()
	if len(ra) != 1 || len(rb) != 1 || len(rc) != 1 || len(rd) != 1 {
		t.Fatalf("sends: %d %d %d %d", len(ra), len(rb), len(rc), len(rd))
	}
	if &ra[0][0] != &rb[0][0] {
		t.Error("the two JSON sessions got different byte slices")
	}
	if &rc[0][0] != &rd[0][0] {
		t.Error("the two protobuf sessions got different byte slices")
	}
	if &ra[0][0] == &rc[0][0] {
		t.Error("JSON and protobuf sessions share bytes")
	}
}

func TestDestroyedChannel(t *testing.T) {
	cl := newCluster(t, "fe-1")
	svc := channel.NewService(cl, channel.Config{})
	defer svc.Close()

	check := func(t *testing.T, c *channel.Channel) {
		t.Helper()
		ops := map[string]error{
			"Add":       c.Add("bob", "fe-1"),
			"Leave":     c.Leave("alice"),
			"LeaveFrom": c.LeaveFrom("alice", "fe-1"),
			"Destroy":   c.Destroy(),
		}
		_, ops["PushMessage"] = c.PushMessage(ctx, "onChat", wrapperspb.String("x"))
		_, ops["PushMessageExcept"] = c.PushMessageExcept(ctx, "onChat", wrapperspb.String("x"), "alice")
		for op, err := range ops {
			if !errors.Is(err, runtime.ErrClosed) {
				t.Errorf("%s on a destroyed channel: %v, want CLOSED", op, err)
			}
		}
		if c.Len() != 0 || c.Members() != nil || c.UIDs() != nil {
			t.Errorf("destroyed channel has members: %v", c.Members())
		}
		if _, ok := c.Member("alice"); ok {
			t.Error("destroyed channel has member alice")
		}
		if got, ok := svc.Get(c.Name()); ok && got == c {
			t.Error("destroyed channel still in the service")
		}
		if slices.Contains(svc.Names(), c.Name()) {
			t.Errorf("Names = %v still lists %q", svc.Names(), c.Name())
		}
	}

	t.Run("Channel.Destroy", func(t *testing.T) {
		c := svc.GetOrCreate("a", channel.ChannelConfig{})
		_ = c.Add("alice", "fe-1")
		if err := c.Destroy(); err != nil {
			t.Fatal(err)
		}
		check(t, c)
	})
	t.Run("Service.Destroy", func(t *testing.T) {
		c := svc.GetOrCreate("b", channel.ChannelConfig{})
		_ = c.Add("alice", "fe-1")
		if err := svc.Destroy("b"); err != nil {
			t.Fatal(err)
		}
		check(t, c)
		if err := svc.Destroy("b"); !errors.Is(err, runtime.ErrNotFound) {
			t.Fatalf("destroying twice: %v, want NOT_FOUND", err)
		}
		// The name is free again, for a new channel.
		c2 := svc.GetOrCreate("b", channel.ChannelConfig{})
		if c2 == c {
			t.Fatal("GetOrCreate returned the destroyed channel")
		}
		if err := c2.Add("alice", "fe-1"); err != nil {
			t.Fatal(err)
		}
		// Destroying the old value does not touch the new one.
		if err := c.Destroy(); !errors.Is(err, runtime.ErrClosed) {
			t.Fatal(err)
		}
		if got, ok := svc.Get("b"); !ok || got != c2 {
			t.Fatal("new channel b lost")
		}
	})
}

func TestServiceCreateGetNames(t *testing.T) {
	cl := newCluster(t, "fe-1")
	svc := channel.NewService(cl, channel.Config{})
	if got := svc.Names(); len(got) != 0 {
		t.Fatalf("Names = %v", got)
	}
	c, err := svc.Create("b", channel.ChannelConfig{})
	if err != nil {
		t.Fatal(err)
	}
	if c.Name() != "b" {
		t.Fatalf("Name = %q", c.Name())
	}
	if _, err := svc.Create("b", channel.ChannelConfig{}); !errors.Is(err, channel.ErrExists) {
		t.Fatalf("Create existing: %v, want CHANNEL_EXISTS", err)
	}
	if _, err := svc.Create("", channel.ChannelConfig{}); !errors.Is(err, runtime.ErrBadRequest) {
		t.Fatalf("Create empty: %v", err)
	}
	if got := svc.GetOrCreate("b", channel.ChannelConfig{}); got != c {
		t.Fatal("GetOrCreate did not return the existing channel")
	}
	a := svc.GetOrCreate("a", channel.ChannelConfig{})
	if got, ok := svc.Get("a"); !ok || got != a {
		t.Fatal("Get(a)")
	}
	if _, ok := svc.Get("zzz"); ok {
		t.Fatal("Get(zzz) found")
	}
	if got := svc.Names(); !slices.Equal(got, []string{"a", "b"}) {
		t.Fatalf("Names = %v", got)
	}
	if svc.Len() != 2 {
		t.Fatalf("Len = %d", svc.Len())
	}

	if err := svc.Close(); err != nil {
		t.Fatal(err)
	}
	if err := svc.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	if err := a.Add("alice", "fe-1"); !errors.Is(err, runtime.ErrClosed) {
		t.Fatalf("channel of a closed service: %v", err)
	}
	if _, err := svc.Create("c", channel.ChannelConfig{}); !errors.Is(err, runtime.ErrClosed) {
		t.Fatalf("Create after Close: %v", err)
	}
	if err := svc.GetOrCreate("c", channel.ChannelConfig{}).Add("alice", "fe-1"); !errors.Is(err, runtime.ErrClosed) {
		t.Fatalf("GetOrCreate after Close: %v", err)
	}
	if _, err := svc.PushToMembers(ctx, "onChat", wrapperspb.String("x"), []channel.Member{{"alice", "fe-1"}}); !errors.Is(err, runtime.ErrClosed) {
		t.Fatalf("PushToMembers after Close: %v", err)
	}
	if len(svc.Names()) != 0 {
		t.Fatalf("Names after Close = %v", svc.Names())
	}
}

func TestPushToMembersGrouping(t *testing.T) {
	cl := newCluster(t, "fe-1", "fe-2")
	alice := cl.login("fe-1", "alice", nil)
	bob := cl.login("fe-1", "bob", nil)
	carol := cl.login("fe-2", "carol", nil)
	svc := channel.NewService(cl, channel.Config{})
	defer svc.Close()

	members := []channel.Member{
		{"carol", "fe-2"}, {"bob", "fe-1"}, {"alice", "fe-1"},
		{"alice", "fe-1"}, // listed twice: pushed once
		{"ghost", "fe-2"}, // no session
		{"lost", ""},      // no frontend
		{"", "fe-1"},      // no uid: ignored
	}
	failed, err := svc.PushToMembers(ctx, "onNews", wrapperspb.String("n"), members)
	if err != nil {
		t.Fatal(err)
	}
	slices.Sort(failed)
	if !slices.Equal(failed, []string{"ghost", "lost"}) {
		t.Fatalf("failed = %v", failed)
	}
	if got, want := cl.callCounts(), map[string]int{"fe-1": 1, "fe-2": 1}; !mapsEqual(got, want) {
		t.Fatalf("delivery calls %v, want %v", got, want)
	}
	if got := cl.callUIDs("fe-1"); len(got) != 1 || !slices.Equal(got[0], []string{"alice", "bob"}) {
		t.Fatalf("fe-1 got uids %v", got)
	}
	if got := cl.callUIDs("fe-2"); len(got) != 1 || !slices.Equal(got[0], []string{"carol", "ghost"}) {
		t.Fatalf("fe-2 got uids %v", got)
	}
	for name, c := range map[string]*fakeConn{"alice": alice, "bob": bob, "carol": carol} {
		if got := c.messages(t); !slices.Equal(got, []pushed{{"onNews", `"n"`}}) {
			t.Errorf("%s got %v", name, got)
		}
	}

	if failed, err := svc.PushToMembers(ctx, "onNews", wrapperspb.String("n"), nil); failed != nil || err != nil {
		t.Fatalf("empty push: %v, %v", failed, err)
	}
}

func TestPushMessageExcept(t *testing.T) {
	cl := newCluster(t, "fe-1", "fe-2")
	alice := cl.login("fe-1", "alice", nil)
	bob := cl.login("fe-1", "bob", nil)
	carol := cl.login("fe-2", "carol", nil)
	svc := channel.NewService(cl, channel.Config{})
	defer svc.Close()
	c := svc.GetOrCreate("room", channel.ChannelConfig{})
	for _, m := range []channel.Member{{"alice", "fe-1"}, {"bob", "fe-1"}, {"carol", "fe-2"}} {
		_ = c.Add(m.UID, m.FrontendID)
	}

	// alice speaks: everyone else hears it; alice listed twice and a
	// non-member in except change nothing.
	if _, err := c.PushMessageExcept(ctx, "onChat", wrapperspb.String("1"), "alice", "nobody", "alice"); err != nil {
		t.Fatal(err)
	}
	if len(alice.messages(t)) != 0 || len(bob.messages(t)) != 1 || len(carol.messages(t)) != 1 {
		t.Fatalf("except alice: alice %d, bob %d, carol %d", len(alice.messages(t)), len(bob.messages(t)), len(carol.messages(t)))
	}
	if got := cl.callUIDs("fe-1"); !slices.Equal(got[0], []string{"bob"}) {
		t.Fatalf("fe-1 uids %v", got)
	}

	// Excepting all members of a frontend skips it.
	cl.resetCalls()
	if _, err := c.PushMessageExcept(ctx, "onChat", wrapperspb.String("2"), "carol"); err != nil {
		t.Fatal(err)
	}
	if got := cl.callCounts(); !mapsEqual(got, map[string]int{"fe-1": 1}) {
		t.Fatalf("calls %v, want fe-1 only", got)
	}
	if len(alice.messages(t)) != 1 || len(bob.messages(t)) != 2 || len(carol.messages(t)) != 1 {
		t.Fatal("except carol: wrong receivers")
	}

	// No except is PushMessage.
	if _, err := c.PushMessageExcept(ctx, "onChat", wrapperspb.String("3")); err != nil {
		t.Fatal(err)
	}
	if len(alice.messages(t)) != 2 || len(bob.messages(t)) != 3 || len(carol.messages(t)) != 2 {
		t.Fatal("no except: wrong receivers")
	}
}

// TestConcurrency runs adds, leaves, pushes and channel creation at once;
// run it with -race.
func TestConcurrency(t *testing.T) {
	for _, sched := range []struct {
		name string
		cfg  func() channel.Config
	}{
		{"direct", func() channel.Config { return channel.Config{Scheduler: channel.DirectScheduler()} }},
		{"batch", func() channel.Config {
			return channel.Config{Scheduler: channel.BatchScheduler(channel.BatchConfig{MaxBatch: 16})}
		}},
	} {
		t.Run(sched.name, func(t *testing.T) {
			cl := newCluster(t, "fe-1", "fe-2")
			const users = 20
			conns := make([]*fakeConn, users)
			for i := range users {
				fe := fmt.Sprintf("fe-%d", i%2+1)
				conns[i] = cl.login(fe, fmt.Sprintf("u%d", i), nil)
			}
			svc := channel.NewService(cl, sched.cfg())
			room := svc.GetOrCreate("room", channel.ChannelConfig{})
			var wg sync.WaitGroup
			for g := range 8 {
				wg.Go(func() {
					r := rand.New(rand.NewPCG(uint64(g), 1))
					for i := range 300 {
						u := r.IntN(users)
						uid := fmt.Sprintf("u%d", u)
						switch r.IntN(8) {
						case 0, 1:
							_ = room.Add(uid, fmt.Sprintf("fe-%d", u%2+1))
						case 2:
							_ = room.Leave(uid)
						case 3:
							_ = room.LeaveFrom(uid, "fe-1")
						case 4:
							_, _ = room.PushMessage(ctx, "onChat", wrapperspb.String("m"))
						case 5:
							_, _ = room.PushMessageExcept(ctx, "onChat", wrapperspb.String("m"), uid)
						case 6:
							_ = room.Members()
							_ = room.Len()
							_, _ = room.Member(uid)
						case 7:
							name := fmt.Sprintf("tmp-%d-%d", g, i%4)
							c := svc.GetOrCreate(name, channel.ChannelConfig{})
							_ = c.Add(uid, "fe-1")
							_, _ = c.PushMessage(ctx, "onTmp", wrapperspb.String("t"))
							if i%3 == 0 {
								_ = svc.Destroy(name)
							}
							_ = svc.Names()
						}
					}
				})
			}
			wg.Wait()
			if err := svc.Close(); err != nil {
				t.Fatal(err)
			}
			// Whatever arrived decodes as whole pushes.
			for _, c := range conns {
				for _, m := range c.messages(t) {
					if m.Route != "onChat" && m.Route != "onTmp" {
						t.Fatalf("unexpected push %v", m)
					}
				}
			}
		})
	}
}
