package channel_test

import (
	"slices"
	"testing"

	"github.com/pomelo-go/pomelo/runtime/channel"
	"github.com/pomelo-go/pomelo/runtime/session"
)

func sessionOf(fe string, sid uint64, uid string) *session.Local {
	return session.NewLocal(session.Snapshot{ID: sid, FrontendID: fe, UID: uid}, nil)
}

func TestLeaveOnCloseDropsTheClosedSessionsMemberOnly(t *testing.T) {
	svc := channel.NewService(newCluster(t, "fe-1", "fe-2"), channel.Config{})
	defer svc.Close()
	leaving := svc.GetOrCreate("room", channel.ChannelConfig{LeaveOnClose: true})
	keeping := svc.GetOrCreate("keep", channel.ChannelConfig{})
	if !leaving.LeavesOnClose() || keeping.LeavesOnClose() {
		t.Fatalf("LeavesOnClose = %v, %v; want true, false", leaving.LeavesOnClose(), keeping.LeavesOnClose())
	}
	for _, c := range []*channel.Channel{leaving, keeping} {
		for _, s := range []*session.Local{sessionOf("fe-1", 1, "alice"), sessionOf("fe-1", 2, "bob"), sessionOf("fe-2", 1, "carol")} {
			if err := c.AddSession(s); err != nil {
				t.Fatal(err)
			}
		}
		if err := c.Add("dave", "fe-2"); err != nil {
			t.Fatal(err)
		}
	}

	svc.SessionClosed("fe-2", 1, "alice") // alice's session is on fe-1
	svc.SessionClosed("fe-1", 7, "bob")   // another session of bob's
	svc.SessionClosed("fe-1", 1, "alice")
	svc.SessionClosed("fe-2", 1, "")     // uid unknown: by session
	svc.SessionClosed("fe-2", 9, "dave") // added without a session: any of dave's
	if got := leaving.UIDs(); !slices.Equal(got, []string{"bob"}) {
		t.Fatalf("leave-on-close channel has %v, want [bob]", got)
	}
	if got := keeping.UIDs(); !slices.Equal(got, []string{"alice", "bob", "carol", "dave"}) {
		t.Fatalf("plain channel has %v, want everyone", got)
	}
}

func TestLeaveOnCloseSparesARelogin(t *testing.T) {
	svc := channel.NewService(newCluster(t, "fe-1"), channel.Config{})
	defer svc.Close()
	c, err := svc.Create("room", channel.ChannelConfig{LeaveOnClose: true})
	if err != nil {
		t.Fatal(err)
	}
	if err := c.AddSession(sessionOf("fe-1", 1, "alice")); err != nil {
		t.Fatal(err)
	}
	if err := c.AddSession(sessionOf("fe-1", 2, "alice")); err != nil { // relogin
		t.Fatal(err)
	}
	svc.SessionClosed("fe-1", 1, "alice") // the old session's late close
	if _, ok := c.Member("alice"); !ok {
		t.Fatal("the old session's close removed the relogged-in member")
	}
	svc.SessionClosed("fe-1", 2, "alice")
	if _, ok := c.Member("alice"); ok {
		t.Fatal("the member stayed after its session closed")
	}
}

func TestSessionClosedIgnoresDestroyedChannels(t *testing.T) {
	svc := channel.NewService(newCluster(t, "fe-1"), channel.Config{})
	defer svc.Close()
	c := svc.GetOrCreate("room", channel.ChannelConfig{LeaveOnClose: true})
	if err := c.AddSession(sessionOf("fe-1", 1, "alice")); err != nil {
		t.Fatal(err)
	}
	if err := c.Destroy(); err != nil {
		t.Fatal(err)
	}
	again := svc.GetOrCreate("room", channel.ChannelConfig{}) // a new channel of the same name, without the option
	if err := again.AddSession(sessionOf("fe-1", 1, "alice")); err != nil {
		t.Fatal(err)
	}
	svc.SessionClosed("fe-1", 1, "alice")
	if again.Len() != 1 || c.Len() != 0 {
		t.Fatalf("Len = %d (new), %d (destroyed); want 1, 0", again.Len(), c.Len())
	}
}
