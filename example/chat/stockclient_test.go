package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/pomelo-go/pomelo/example/chat/app"
	"github.com/pomelo-go/pomelo/internal/testenv"
	"github.com/pomelo-go/pomelo/runtime/cluster"
)

// nodeModules is where the interop tests install the real Pomelo client:
// npm install --prefix interop/js --no-package-lock
const nodeModules = "../../interop/js/node_modules"

// stockEvent is one JSON line printed by testdata/stockclient.js.
type stockEvent struct {
	Event  string          `json:"event"`
	User   string          `json:"user"`
	Route  string          `json:"route"`
	Body   json.RawMessage `json:"body"`
	Reason *string         `json:"reason"`
	Port   int             `json:"port"`
	line   string
}

func stockClient(t *testing.T) (node string, env []string) {
	t.Helper()
	node = testenv.LookPath(t, "node", "node")
	for _, f := range []string{
		"pomelo-jsclient-websocket/lib/pomelo-client.js",
		"pomelo-protocol/lib/protocol.js",
		"ws/package.json",
	} {
		if _, err := os.Stat(filepath.Join(nodeModules, f)); err != nil {
			testenv.Missing(t, "node", "interop/js/node_modules/"+f+" is missing: run `npm install --prefix interop/js --no-package-lock` from the repository root")
		}
	}
	abs, err := filepath.Abs(nodeModules)
	if err != nil {
		t.Fatal(err)
	}
	return node, append(os.Environ(), "NODE_PATH="+abs)
}

// TestStockClient runs the demo's flow with the real Pomelo JavaScript
// client: the gate, enter (and its alias entry), echo, send to everyone and
// to one user (request and notify), onAdd, onChat, onLeave, and the kick of
// a relogin.
func TestStockClient(t *testing.T) {
	node, env := stockClient(t)
	a := startApp(t, app.Options{})
	gate := a.Server("gate-1").Info()

	// alice and bob on different connectors, as the gate places them.
	var connectors []cluster.ServerInfo
	for _, s := range a.Members() {
		if s.Type == app.TypeConnector {
			connectors = append(connectors, s)
		}
	}
	alice, bob := "alice", ""
	for i := 0; bob == ""; i++ {
		name := fmt.Sprintf("bob%d", i)
		if cluster.Rendezvous(name, connectors).ID != cluster.Rendezvous(alice, connectors).ID {
			bob = name
		}
	}

	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, node, "testdata/stockclient.js", wsURL(gate), alice, bob)
	cmd.Env = env
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	var events []stockEvent
	sc := bufio.NewScanner(bytes.NewReader(out))
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		var e stockEvent
		if jerr := json.Unmarshal(sc.Bytes(), &e); jerr != nil {
			t.Errorf("bad line from the script: %s", sc.Text())
			continue
		}
		e.line = sc.Text()
		events = append(events, e)
	}
	dump := func() string {
		var b strings.Builder
		for _, e := range events {
			b.WriteString("  " + e.line + "\n")
		}
		return "events:\n" + b.String() + "stderr:\n" + stderr.String()
	}
	if err != nil || len(events) == 0 || events[len(events)-1].Event != "done" {
		t.Fatalf("stockclient.js: %v\n%s", err, dump())
	}

	find := func(pred func(stockEvent) bool) []stockEvent {
		var out []stockEvent
		for _, e := range events {
			if pred(e) {
				out = append(out, e)
			}
		}
		return out
	}
	responses := func(user, route string) []stockEvent {
		return find(func(e stockEvent) bool { return e.Event == "response" && e.User == user && e.Route == route })
	}
	pushes := func(user, route string) []stockEvent {
		return find(func(e stockEvent) bool { return e.Event == "push" && e.User == user && e.Route == route })
	}
	bodies := func(evs []stockEvent) []string {
		var out []string
		for _, e := range evs {
			out = append(out, string(e.Body))
		}
		return out
	}
	check := func(what string, got []stockEvent, want ...string) {
		t.Helper()
		if len(got) != len(want) {
			t.Errorf("%s: got %d, want %d: %q\n%s", what, len(got), len(want), bodies(got), dump())
			return
		}
		for i := range want {
			if !jsonEqual(got[i].Body, want[i]) {
				t.Errorf("%s #%d = %s, want %s", what, i, got[i].Body, want[i])
			}
		}
	}

	check("alice's queryEntry", responses("alice", "gate.gateHandler.queryEntry"),
		fmt.Sprintf(`{"code":200,"host":"127.0.0.1","port":%d}`, wsPortOf(a, cluster.Rendezvous(alice, connectors).ID)))
	check("bob's queryEntry", responses("bob", "gate.gateHandler.queryEntry"),
		fmt.Sprintf(`{"code":200,"host":"127.0.0.1","port":%d}`, wsPortOf(a, cluster.Rendezvous(bob, connectors).ID)))
	check("alice's enter", responses("alice", "connector.entryHandler.enter"), `{"code":200,"users":["alice"]}`)
	check("echo", responses("alice", "chat.chatHandler.echo"),
		`{"hello":"world","n":42,"list":[1,"two",true,null],"nested":{"a":{"b":"c"}},"text":"héllo ✓"}`)
	check("bob's entry", responses("bob", "connector.entryHandler.entry"), fmt.Sprintf(`{"code":200,"users":["alice",%q]}`, bob))
	check("alice's onAdd", pushes("alice", "onAdd"), fmt.Sprintf(`{"user":%q}`, bob))
	check("bob's onAdd", pushes("bob", "onAdd"))
	check("alice's send", responses("alice", "chat.chatHandler.send"), `{"code":200}`)
	check("alice's onChat", pushes("alice", "onChat"),
		`{"msg":"hello","from":"alice","target":"*"}`,
		fmt.Sprintf(`{"msg":"psst","from":%q,"target":"alice"}`, bob))
	check("bob's onChat", pushes("bob", "onChat"),
		`{"msg":"hello","from":"alice","target":"*"}`,
		fmt.Sprintf(`{"msg":"psst","from":%q,"target":"alice"}`, bob),
		`{"msg":"back","from":"alice","target":"*"}`)

	kicks := find(func(e stockEvent) bool { return e.Event == "kick" })
	if len(kicks) != 1 || kicks[0].User != "alice" || kicks[0].Reason == nil || *kicks[0].Reason != "relogin" {
		t.Errorf("kicks = %v, want the old alice kicked with reason relogin", kicks)
	}
	check("the new alice's enter", responses("alice2", "connector.entryHandler.enter"), fmt.Sprintf(`{"code":200,"users":["alice",%q]}`, bob))
	check("the new alice's send", responses("alice2", "chat.chatHandler.send"), `{"code":200}`)
	check("the new alice's onChat", pushes("alice2", "onChat"), `{"msg":"back","from":"alice","target":"*"}`)
	check("the new alice's onLeave", pushes("alice2", "onLeave"), fmt.Sprintf(`{"user":%q}`, bob))
	// Nobody saw alice leave and enter again on the relogin.
	check("bob's onLeave", pushes("bob", "onLeave"))
	check("bob's onAdd after the relogin", pushes("bob", "onAdd"))
	if errs := find(func(e stockEvent) bool { return e.Event == "error" }); len(errs) > 0 {
		t.Errorf("client errors: %v", errs)
	}
}

func wsPortOf(a *app.App, id string) int {
	for _, s := range a.Members() {
		if s.ID == id {
			return s.WSPort
		}
	}
	return 0
}

// jsonEqual compares two JSON texts by value.
func jsonEqual(got json.RawMessage, want string) bool {
	var g, w any
	if json.Unmarshal(got, &g) != nil || json.Unmarshal([]byte(want), &w) != nil {
		return false
	}
	return reflect.DeepEqual(g, w)
}
