package channel

import (
	"context"
	"fmt"
	"math/rand/v2"
	"slices"
	"sync"
	"testing"

	"google.golang.org/protobuf/proto"
)

// checkInvariants verifies the bookkeeping between members and groups.
func checkInvariants(t *testing.T, c *Channel, model map[string]string) {
	t.Helper()
	c.mu.RLock()
	defer c.mu.RUnlock()
	if len(c.members) != len(model) {
		t.Fatalf("%d members, model has %d", len(c.members), len(model))
	}
	n := 0
	for fe, g := range c.groups {
		if len(g) == 0 {
			t.Fatalf("empty group %q kept", fe)
		}
		n += len(g)
		for i, uid := range g {
			if m := c.members[uid]; m.frontendID != fe || m.idx != i {
				t.Fatalf("groups[%q][%d] = %q, but members[%q] = %+v", fe, i, uid, uid, m)
			}
		}
	}
	if n != len(c.members) {
		t.Fatalf("groups hold %d uids, members %d", n, len(c.members))
	}
	for uid, fe := range model {
		if m, ok := c.members[uid]; !ok || m.frontendID != fe {
			t.Fatalf("members[%q] = %+v, %v; want frontend %q", uid, m, ok, fe)
		}
	}
}

func TestGroupsBookkeeping(t *testing.T) {
	var mu sync.Mutex // deliveries to several frontends run concurrently
	got := map[string][]string{}
	d := DeliveryFunc(func(_ context.Context, fe, _ string, _ proto.Message, uids []string) ([]string, error) {
		mu.Lock()
		got[fe] = append(got[fe], uids...)
		mu.Unlock()
		return nil, nil
	})
	svc := NewService(d, Config{})
	defer svc.Close()
	c := svc.GetOrCreate("room", ChannelConfig{})
	model := map[string]string{}
	r := rand.New(rand.NewPCG(1, 2))
	for i := range 5000 {
		uid := fmt.Sprintf("u%d", r.IntN(60))
		fe := fmt.Sprintf("fe-%d", r.IntN(4))
		switch r.IntN(4) {
		case 0, 1:
			_ = c.Add(uid, fe)
			model[uid] = fe
		case 2:
			_ = c.Leave(uid)
			delete(model, uid)
		case 3:
			_ = c.LeaveFrom(uid, fe)
			if model[uid] == fe {
				delete(model, uid)
			}
		}
		checkInvariants(t, c, model)
		if i%50 == 0 {
			clear(got)
			if _, err := c.PushMessage(context.Background(), "r", nil); err != nil {
				t.Fatal(err)
			}
			want := map[string][]string{}
			for uid, fe := range model {
				want[fe] = append(want[fe], uid)
			}
			if len(got) != len(want) {
				t.Fatalf("pushed to %d frontends, want %d", len(got), len(want))
			}
			for fe, uids := range want {
				slices.Sort(uids)
				g := slices.Sorted(slices.Values(got[fe]))
				if !slices.Equal(g, uids) {
					t.Fatalf("pushed %v to %s, want %v", g, fe, uids)
				}
			}
		}
	}
}
