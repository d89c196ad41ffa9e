package interop_test

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"testing"
	"time"

	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/types/known/structpb"

	"github.com/pomelo-go/pomelo/internal/server"
)

// These tests drive the server with the real Pomelo JavaScript client
// (pomelo-jsclient-websocket 0.1.1 on pomelo-protocol 0.1.6, under node with
// ws as the WebSocket); see js/harness.js for the client side of each
// scenario.

const (
	pkgHandshake    = 1
	pkgHandshakeAck = 2
	pkgHeartbeat    = 3
	pkgData         = 4
	pkgKick         = 5
)

func isWire(dir string, typ int) func(event) bool {
	return func(e event) bool { return e.Event == "wire" && e.Dir == dir && e.Type == typ }
}

func isResponse(route string) func(event) bool {
	return func(e event) bool { return e.Event == "response" && e.Route == route }
}

// errorBody is a framework error response as stock clients see it.
type errorBody struct {
	Code    int    `json:"code"`
	Error   string `json:"error"`
	Message string `json:"message"`
}

// TestJSClientSession runs a whole session with the JS client: handshake,
// request/response, error responses, bind, notify and the push it causes,
// pushes from the server (PushToUIDs and Broadcast), and a kick from a
// handler. With the route dictionary (the default) routes are compressed
// both ways; with DisableDict they are not.
func TestJSClientSession(t *testing.T) {
	for _, tc := range []struct {
		name        string
		disableDict bool
		path        string
	}{
		{"dict", false, "/"},
		{"no-dict", true, "/any/path"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			nodeHarness(t)
			f := newFixture(t, func(c *server.Config) { c.DisableDict = tc.disableDict })

			// Once alice is bound, push to her and broadcast, from Go.
			pushErr := make(chan error, 1)
			go func() {
				pushErr <- func() error {
					if err := f.waitBound("alice", 20*time.Second); err != nil {
						return err
					}
					toAlice, _ := structpb.NewStruct(map[string]any{"msg": "to alice", "n": 1})
					toAll, _ := structpb.NewStruct(map[string]any{"msg": "to everyone"})
					failed, err := f.s.Sessions().PushToUIDs(pushPush, toAlice, []string{"alice", "nobody"})
					if err != nil {
						return fmt.Errorf("PushToUIDs: %v", err)
					}
					if !slices.Equal(failed, []string{"nobody"}) {
						return fmt.Errorf("PushToUIDs failed uids = %q, want [nobody]", failed)
					}
					if err := f.s.Sessions().Broadcast(pushBroadcast, toAll, true, nil); err != nil {
						return fmt.Errorf("Broadcast: %v", err)
					}
					return nil
				}()
			}()

			events := runHarness(t, nil, "session", f.url(tc.path))
			if err := <-pushErr; err != nil {
				t.Fatal(err)
			}

			// Handshake: reply shape as seen by the client, then ACK.
			hs, hsAt, ok := firstEvent(events, isWire("in", pkgHandshake))
			if !ok {
				t.Fatal("no handshake reply seen by the client")
			}
			var reply map[string]any
			if err := json.Unmarshal(hs.JSON, &reply); err != nil {
				t.Fatalf("handshake reply %s: %v", hs.JSON, err)
			}
			sys, _ := reply["sys"].(map[string]any)
			if reply["code"] != float64(200) || sys["heartbeat"] != float64(1) {
				t.Errorf("handshake reply = %s, want code 200 and sys.heartbeat 1", hs.JSON)
			}
			dict, hasDict := sys["dict"].(map[string]any)
			if tc.disableDict {
				if hasDict || sys["useDict"] != nil {
					t.Errorf("DisableDict: handshake reply %s carries a dictionary", hs.JSON)
				}
			} else {
				if !hasDict || sys["useDict"] != true {
					t.Errorf("handshake reply %s has no dictionary", hs.JSON)
				}
				for _, r := range []string{routeEcho, routeEnter, routeNotify, routeKickMe, pushNotify, pushPush, pushBroadcast} {
					if _, ok := dict[r]; !ok {
						t.Errorf("dictionary %v lacks %s", dict, r)
					}
				}
			}
			if _, ackAt, ok := firstEvent(events, isWire("out", pkgHandshakeAck)); !ok || ackAt < hsAt {
				t.Errorf("client sent no ACK after the handshake reply")
			}
			if _, _, ok := firstEvent(events, func(e event) bool { return e.Event == "connected" }); !ok {
				t.Errorf("init callback never ran")
			}

			// Responses, in request order.
			responses := filterEvents(events, func(e event) bool { return e.Event == "response" })
			if len(responses) < 6 {
				t.Fatalf("got %d responses, want at least 6:\n%v", len(responses), responses)
			}
			r := responses[0]
			if r.Route != routeEcho {
				t.Fatalf("first response is for %s", r.Route)
			}
			jsonEqual(t, "echo response", r.Body, `{"hello":"world","n":42,"list":[1,"two",true,null],"nested":{"a":{"b":"c"}},"text":"héllo wörld ✓"}`)

			for i, want := range []struct{ route, name string }{
				{"connector.entryHandler.nope", "UNKNOWN_ROUTE"},
				{"nodots", "UNKNOWN_ROUTE"},
				{routeEcho, "BAD_REQUEST"},
			} {
				r := responses[1+i]
				var eb errorBody
				if err := json.Unmarshal(r.Body, &eb); err != nil || r.Route != want.route || eb.Code != 500 || eb.Error != want.name || eb.Message == "" {
					t.Errorf("response %d to %s = %s, want {code:500, error:%s, message:...} to %s", 1+i, r.Route, r.Body, want.name, want.route)
				}
			}
			if r := responses[4]; r.Route != routeEnter {
				t.Errorf("response 4 is for %s, want %s", r.Route, routeEnter)
			} else {
				jsonEqual(t, "enter response", r.Body, `{"code":200,"uid":"alice"}`)
			}

			// Notify: the handler ran in Go with the client's body, and the
			// push it sent back reached the client.
			select {
			case st := <-f.notified:
				b, _ := protojson.Marshal(st)
				jsonEqual(t, "body received by the notify handler", b, `{"text":"hi","n":7}`)
			default:
				t.Errorf("the notify handler never ran")
			}
			pushes := filterEvents(events, func(e event) bool { return e.Event == "push" })
			wantPushes := map[string]string{
				pushNotify:    `{"text":"hi","n":7}`,
				pushPush:      `{"msg":"to alice","n":1}`,
				pushBroadcast: `{"msg":"to everyone"}`,
			}
			if len(pushes) != len(wantPushes) {
				t.Errorf("got %d pushes, want %d: %v", len(pushes), len(wantPushes), pushes)
			}
			for _, p := range pushes {
				if want, ok := wantPushes[p.Route]; ok {
					jsonEqual(t, "push "+p.Route, p.Body, want)
				} else {
					t.Errorf("unexpected push %v", p)
				}
			}
			if r := responses[5]; r.Route != routeEcho {
				t.Errorf("response 5 is for %s, want %s", r.Route, routeEcho)
			} else {
				jsonEqual(t, "echo after pushes", r.Body, `{"after":"pushes"}`)
			}

			// Kick from a handler: reason, then the connection closes.
			kick, kickAt, ok := firstEvent(events, func(e event) bool { return e.Event == "kick" })
			if !ok || kick.Reason != kickReasonByTest {
				t.Errorf("kick event = %v, want reason %q", kick, kickReasonByTest)
			}
			if _, closeAt, ok := firstEvent(events, func(e event) bool { return e.Event == "close" }); !ok || closeAt < kickAt {
				t.Errorf("connection not closed after the kick")
			}

			// Route compression, both ways, as the tapped socket saw it.
			var reqFlags, notifyFlags, respFlags, pushFlags []int
			for _, e := range filterEvents(events, isWire("out", pkgData)) {
				switch typ := (*e.Flag >> 1) & 7; typ {
				case 0:
					reqFlags = append(reqFlags, *e.Flag)
				case 1:
					notifyFlags = append(notifyFlags, *e.Flag)
				default:
					t.Errorf("client sent a message of type %d", typ)
				}
			}
			for _, e := range filterEvents(events, isWire("in", pkgData)) {
				switch typ := (*e.Flag >> 1) & 7; typ {
				case 2:
					respFlags = append(respFlags, *e.Flag)
				case 3:
					pushFlags = append(pushFlags, *e.Flag)
				default:
					t.Errorf("server sent a message of type %d", typ)
				}
			}
			// echo, nope, nodots, echo([1,2]), enter, echo, kickMe
			wantReq := []int{0x01, 0x00, 0x00, 0x01, 0x01, 0x01, 0x01}
			wantNotify, wantPush := []int{0x03}, []int{0x07, 0x07, 0x07}
			if tc.disableDict {
				wantReq = []int{0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00}
				wantNotify, wantPush = []int{0x02}, []int{0x06, 0x06, 0x06}
			}
			if !slices.Equal(reqFlags, wantReq) {
				t.Errorf("request flags sent by the client = %#x, want %#x", reqFlags, wantReq)
			}
			if !slices.Equal(notifyFlags, wantNotify) {
				t.Errorf("notify flags sent by the client = %#x, want %#x", notifyFlags, wantNotify)
			}
			if !slices.Equal(pushFlags, wantPush) {
				t.Errorf("push flags received by the client = %#x, want %#x", pushFlags, wantPush)
			}
			for _, fl := range respFlags {
				if fl&^0x20 != 0x04 {
					t.Errorf("response flag %#x, want 0x04 (0x20 allowed on errors)", fl)
				}
			}
			// Every request is answered, kickMe too: its answer comes
			// before the KICK it caused.
			if len(respFlags) != 7 {
				t.Errorf("client received %d responses, want 7 (one per request, kickMe's before its KICK)", len(respFlags))
			}
		})
	}
}

// TestJSClientHeartbeat keeps an idle JS client connected well past the
// heartbeat timeout (heartbeat 1s, timeout 2s, 5s idle): the server sends a
// HEARTBEAT right after the ACK, so the client heartbeats, the server
// answers, and a request after the idle period still works.
func TestJSClientHeartbeat(t *testing.T) {
	nodeHarness(t)
	f := newFixture(t, nil)
	start := time.Now()
	events := runHarness(t, nil, "heartbeat", f.url("/"), "5000")
	if d := time.Since(start); d < 5*time.Second {
		t.Fatalf("harness finished after %v, before its 5s idle period", d)
	}
	for _, e := range events {
		switch e.Event {
		case "close", "heartbeat-timeout", "kick", "io-error":
			t.Errorf("unexpected %v", e)
		}
	}
	r := filterEvents(events, isResponse(routeEcho))
	if len(r) != 2 {
		t.Fatalf("got %d echo responses, want 2", len(r))
	}
	jsonEqual(t, "echo after idle", r[1].Body, `{"after":"idle"}`)

	_, ackAt, ok := firstEvent(events, isWire("out", pkgHandshakeAck))
	if !ok {
		t.Fatal("no ACK sent")
	}
	// The first package after the ACK is the server's HEARTBEAT, and the
	// client's heartbeats follow it.
	if _, hbAt, ok := firstEvent(events[ackAt:], isWire("in", pkgHeartbeat)); !ok {
		t.Errorf("the server sent no HEARTBEAT after the ACK")
	} else if _, outAt, ok := firstEvent(events[ackAt:], isWire("out", pkgHeartbeat)); ok && outAt < hbAt {
		t.Errorf("the client heartbeated before the server's first HEARTBEAT")
	}
	idle, _, _ := firstEvent(events, func(e event) bool { return e.Event == "idle" })
	sent := filterEvents(events, func(e event) bool { return isWire("out", pkgHeartbeat)(e) && e.T >= idle.T })
	answered := filterEvents(events, func(e event) bool { return isWire("in", pkgHeartbeat)(e) && e.T >= idle.T })
	if len(sent) < 3 {
		t.Errorf("client sent %d heartbeats in 5s idle, want at least 3", len(sent))
	}
	if len(answered) < len(sent)-1 {
		t.Errorf("server answered %d of %d heartbeats", len(answered), len(sent))
	}
	t.Logf("during 5s idle: %d client heartbeats, %d server heartbeats", len(sent), len(answered))
}

// TestJSClientKickedByServer kicks a bound JS client from Go: by uid with a
// reason, and by shutting the server down with a reason.
func TestJSClientKickedByServer(t *testing.T) {
	for _, tc := range []struct {
		name   string
		reason string
		kick   func(f *fixture) error
	}{
		{"KickByUID", "kicked-from-go", func(f *fixture) error {
			if n := f.s.Sessions().KickByUID("bob", "kicked-from-go"); n != 1 {
				return fmt.Errorf("KickByUID kicked %d sessions, want 1", n)
			}
			return nil
		}},
		{"Shutdown", "maintenance", func(f *fixture) error {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			return f.s.Shutdown(ctx, "maintenance")
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			nodeHarness(t)
			f := newFixture(t, nil)
			kickErr := make(chan error, 1)
			events := runHarness(t, func(e event) {
				if e.Event == "ready" {
					go func() { kickErr <- tc.kick(f) }()
				}
			}, "kicked", f.url("/"), "bob")
			if err := <-kickErr; err != nil {
				t.Fatal(err)
			}
			kick, kickAt, ok := firstEvent(events, func(e event) bool { return e.Event == "kick" })
			if !ok || kick.Reason != tc.reason {
				t.Errorf("kick = %v, want reason %q", kick, tc.reason)
			}
			if w, ok := lastEventBefore(events, kickAt, isWire("in", pkgKick)); ok {
				jsonEqual(t, "kick body", w.JSON, fmt.Sprintf(`{"reason":%q}`, tc.reason))
			}
			if _, closeAt, ok := firstEvent(events, func(e event) bool { return e.Event == "close" }); !ok || closeAt < kickAt {
				t.Errorf("no close after the kick")
			}
		})
	}
}

// lastEventBefore returns the last event at or before index before that keeps.
func lastEventBefore(events []event, before int, keep func(event) bool) (event, bool) {
	for i := before; i >= 0; i-- {
		if keep(events[i]) {
			return events[i], true
		}
	}
	return event{}, false
}

// TestJSClientRejected refuses the JS client in CheckClient: it gets 501
// ("client version not fullfill") and the connection is closed.
func TestJSClientRejected(t *testing.T) {
	nodeHarness(t)
	clients := make(chan [2]string, 16)
	f := newFixture(t, func(c *server.Config) {
		c.CheckClient = func(typ, version string) bool {
			clients <- [2]string{typ, version}
			return false
		}
	})
	events := runHarness(t, nil, "reject", f.url("/"))
	select {
	case c := <-clients:
		if c != [2]string{"js-websocket", "0.0.1"} {
			t.Errorf("CheckClient saw %q, want js-websocket 0.0.1", c)
		}
	default:
		t.Error("CheckClient never ran")
	}
	hs, _, ok := firstEvent(events, isWire("in", pkgHandshake))
	if !ok {
		t.Fatal("no handshake reply")
	}
	jsonEqual(t, "handshake reply", hs.JSON, `{"code":501}`)
	if e, _, _ := firstEvent(events, func(e event) bool { return e.Event == "error" }); e.Error != "client version not fullfill" {
		t.Errorf("client error = %q, want the JS client's old-client error", e.Error)
	}
	if _, _, ok := firstEvent(events, isWire("out", pkgHandshakeAck)); ok {
		t.Error("client acknowledged a refused handshake")
	}
}

// TestSilentClientClosed: a client that completes the handshake but never
// sends a HEARTBEAT is closed by the server after the heartbeat timeout
// (2 x 1s), without a KICK (docs/PROTOCOL.md section 6).
func TestSilentClientClosed(t *testing.T) {
	f := newFixture(t, nil)
	c := dialRaw(t, f.url("/"))
	h := c.handshakeAck()
	if h.Sys == nil || h.Sys.Heartbeat != 1 {
		t.Fatalf("handshake reply %s, want heartbeat 1", h.raw)
	}
	acked := time.Now()
	c.expectClosed(6 * time.Second)
	d := time.Since(acked)
	if d < 1500*time.Millisecond || d > 4*time.Second {
		t.Errorf("silent client closed %v after the ACK, want about 2s (2 x heartbeat)", d)
	}
	t.Logf("silent client closed %v after the ACK", d)
}

// TestJSClientBulk pipelines 300 requests (ids above 127 take two varint
// bytes) and echoes a 60 KB body through the JS client. (Far larger bodies
// overflow the stack in the stock client's own decoder, pomelo-protocol's
// browser strdecode, which calls String.fromCharCode.apply on every byte:
// a client limit that Pomelo servers share.)
func TestJSClientBulk(t *testing.T) {
	nodeHarness(t)
	f := newFixture(t, nil)
	events := runHarness(t, nil, "bulk", f.url("/"), "300", "60")
	seen := map[float64]bool{}
	for _, e := range filterEvents(events, isResponse(routeEcho)) {
		var body struct {
			Seq *float64 `json:"seq"`
			Big string   `json:"big"`
		}
		if err := json.Unmarshal(e.Body, &body); err != nil {
			t.Fatalf("response %s: %v", e.Body, err)
		}
		switch {
		case body.Seq != nil:
			seen[*body.Seq] = true
		case len(body.Big) != 60*1024:
			t.Errorf("unexpected response %.100s", e.Body)
		}
	}
	for i := 1; i <= 300; i++ {
		if !seen[float64(i)] {
			t.Errorf("no response for seq %d", i)
		}
	}
}
