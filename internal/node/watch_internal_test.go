package node

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/pomelo-go/pomelo/runtime"
	"github.com/pomelo-go/pomelo/runtime/cluster"
	"github.com/pomelo-go/pomelo/runtime/session"
)

// A message of a session can reach a backend after the session's close
// did (they travel on different streams). The backend has reported the
// close already and must not watch the session again: the frontend would
// report it gone, a second time.
func TestLateMessageOfAClosedSessionIsNotReportedAgain(t *testing.T) {
	st := cluster.NewStatic()
	front := reviewNode(t, st, "connector-1", "connector", true)
	back := reviewNode(t, st, "chat-1", "chat", false)
	var mu sync.Mutex
	heard := map[uint64]int{}
	back.OnSessionClosed(func(ev cluster.SessionEvent) {
		mu.Lock()
		heard[ev.Session.ID]++
		mu.Unlock()
	})
	count := func(sid uint64) int {
		mu.Lock()
		defer mu.Unlock()
		return heard[sid]
	}
	forward := func(sid uint64) {
		m := &fwdMsg{route: "chat.h.none", notify: true, ser: runtime.JSON, session: session.Snapshot{ID: sid, FrontendID: "connector-1"}}
		back.runForwarded(context.Background(), m)
	}
	waitHeard := func(sid uint64) {
		t.Helper()
		for deadline := time.Now().Add(5 * time.Second); count(sid) == 0; time.Sleep(10 * time.Millisecond) {
			if time.Now().After(deadline) {
				t.Fatalf("close of session %d not reported", sid)
			}
		}
	}

	svc := front.srv.Sessions()
	s := svc.Create(reviewConn{})
	for range 3 {
		forward(s.ID())
	}
	svc.CloseSession(s, "", false)
	waitHeard(s.ID())
	forward(s.ID())    // late
	const never = 5000 // a session the frontend never had: gone at once
	forward(never)
	forward(never)
	waitHeard(never)
	time.Sleep(200 * time.Millisecond) // a second report would arrive meanwhile
	if a, b := count(s.ID()), count(never); a != 1 || b != 1 {
		t.Fatalf("closes reported %d and %d times, want once each", a, b)
	}
}
