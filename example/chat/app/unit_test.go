package app_test

import (
	"slices"
	"strings"
	"testing"

	"github.com/pomelo-go/pomelo/example/chat/app"
	"github.com/pomelo-go/pomelo/runtime/cluster"
	"github.com/pomelo-go/pomelo/runtime/session"
)

func TestVersionAtLeast(t *testing.T) {
	for _, tc := range []struct {
		v, min string
		want   bool
	}{
		{"0.0.1", "0.0.1", true},
		{"0.0.2", "0.0.1", true},
		{"0.1", "0.0.1", true},
		{"1", "0.9.9", true},
		{"0.0.0", "0.0.1", false},
		{"0.0.1", "0.0.2", false},
		{"0.10.0", "0.9.0", true},
		{"0.0.1.1", "0.0.1", true},
		{"0.0.1", "0.0.1.0", true},
		{"", "0.0.1", false},
		{"1.x", "0.0.1", false},
		{"-1", "0.0.1", false},
		{"anything", "", true},
	} {
		if got := app.VersionAtLeast(tc.v, tc.min); got != tc.want {
			t.Errorf("VersionAtLeast(%q, %q) = %v, want %v", tc.v, tc.min, got, tc.want)
		}
	}
}

func TestChatRoute(t *testing.T) {
	servers := []cluster.ServerInfo{{ID: "chat-1"}, {ID: "chat-2"}, {ID: "chat-3"}}
	sess := func(kv map[string]string) *session.Local {
		return session.NewLocal(session.Snapshot{ID: 7, FrontendID: "connector-1", UID: "ann*lobby", Settings: kv}, nil)
	}
	route := func(rc cluster.RouteContext) string { return app.ChatRoute(rc, servers).ID }

	// By the recorded server while it is a member.
	for _, s := range servers {
		if got := route(cluster.RouteContext{Key: "k", Session: sess(map[string]string{"rid": "lobby", "chat": s.ID})}); got != s.ID {
			t.Errorf("recorded %s, routed to %s", s.ID, got)
		}
	}
	// By the room when the recorded server is gone, or none is recorded:
	// every session of a room goes to one server.
	byRoom := cluster.Rendezvous("lobby", servers).ID
	for _, kv := range []map[string]string{
		{"rid": "lobby", "chat": "chat-9"},
		{"rid": "lobby"},
	} {
		if got := route(cluster.RouteContext{Key: "whatever", Session: sess(kv)}); got != byRoom {
			t.Errorf("settings %v routed to %s, want %s (by room)", kv, got, byRoom)
		}
	}
	// Without a room, by the key.
	spread := map[string]bool{}
	for _, key := range []string{"a", "b", "c", "d", "e", "f", "g", "h"} {
		got := route(cluster.RouteContext{Key: key, Session: sess(nil)})
		if want := cluster.Rendezvous(key, servers).ID; got != want {
			t.Errorf("key %s routed to %s, want %s", key, got, want)
		}
		spread[got] = true
	}
	if len(spread) < 2 {
		t.Errorf("keys without a room all went to %v", spread)
	}
	if got, want := route(cluster.RouteContext{Key: "lobby"}), byRoom; got != want {
		t.Errorf("route key without a session went to %s, want %s", got, want)
	}
}

func TestSelect(t *testing.T) {
	f := testCluster()
	ids := func(l []cluster.ServerInfo) []string {
		var out []string
		for _, s := range l {
			out = append(out, s.ID)
		}
		return out
	}
	got, err := app.Select(f, nil)
	if err != nil {
		t.Fatal(err)
	}
	// Backends first; the optional chat-3 left out.
	if want := []string{"chat-1", "chat-2", "connector-1", "connector-2", "gate-1"}; !slices.Equal(ids(got), want) {
		t.Errorf("default selection %q, want %q", ids(got), want)
	}
	got, err = app.Select(f, []string{"gate-1", "chat-3"})
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{"chat-3", "gate-1"}; !slices.Equal(ids(got), want) {
		t.Errorf("selection %q, want %q", ids(got), want)
	}
	for _, bad := range [][]string{{"chat-9"}, {"chat-1", "chat-1"}} {
		if _, err := app.Select(f, bad); err == nil {
			t.Errorf("Select(%q) succeeded", bad)
		}
	}
	f.Servers = append(f.Servers, cluster.ServerInfo{ID: "x-1", Type: "lobby", Host: "127.0.0.1", RPCPort: 1})
	if _, err := app.Select(f, []string{"x-1"}); err == nil || !strings.Contains(err.Error(), "unknown type") {
		t.Errorf("Select of an unknown type: %v", err)
	}
}
