package interop_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/pomelo-go/pomelo/internal/server"
)

// TestWireChecklist checks the server against the compatibility checklist of
// docs/PROTOCOL.md section 9 with hand-built packages over a raw WebSocket, byte
// for byte where the checklist fixes the bytes.
func TestWireChecklist(t *testing.T) {
	// 1. WebSocket on any path, binary frames; several packages per server
	// frame are allowed (the raw reader splits them).
	t.Run("AnyPathBinaryFrames", func(t *testing.T) {
		f := newFixture(t, nil)
		for _, path := range []string{"/", "/x/y/z?q=1", "/socket.io/"} {
			c := dialRaw(t, f.url(path))
			c.handshakeAck() // next() fails on a non-binary frame
			c.c.Close(websocket.StatusNormalClosure, "")
		}
	})

	// 2. Handshake reply {"code":200,"sys":{"heartbeat":N}}, plus the
	// dictionary when enabled.
	t.Run("HandshakeReply", func(t *testing.T) {
		f := newFixture(t, func(c *server.Config) { c.DisableDict = true })
		c := dialRaw(t, f.url("/"))
		h := c.handshake()
		jsonEqual(t, "handshake reply without dictionary", h.raw, `{"code":200,"sys":{"heartbeat":1}}`)
		if !bytes.HasPrefix(h.raw, []byte(`{"code":200,`)) {
			t.Errorf("handshake reply %s", h.raw)
		}
	})
	t.Run("HandshakeReplyDict", func(t *testing.T) {
		f := newFixture(t, nil)
		c := dialRaw(t, f.url("/"))
		h := c.handshake()
		var top map[string]json.RawMessage
		var sys map[string]json.RawMessage
		if err := json.Unmarshal(h.raw, &top); err != nil || json.Unmarshal(top["sys"], &sys) != nil {
			t.Fatalf("handshake reply %s", h.raw)
		}
		if len(top) != 2 || string(top["code"]) != "200" {
			t.Errorf("handshake reply %s: want exactly code and sys", h.raw)
		}
		if string(sys["heartbeat"]) != "1" || string(sys["useDict"]) != "true" || h.Sys.DictVersion == "" {
			t.Errorf("handshake reply %s: want heartbeat 1, useDict true, a dictVersion", h.raw)
		}
		codes := map[uint16]string{}
		for r, code := range h.Sys.Dict {
			if code == 0 || codes[code] != "" {
				t.Errorf("dictionary code %d for %s is 0 or shared with %s", code, r, codes[code])
			}
			codes[code] = r
		}
		for _, r := range []string{routeEcho, routeEnter, routeKickMe, routeNotify, pushNotify, pushPush, pushBroadcast} {
			if h.Sys.Dict[r] == 0 {
				t.Errorf("dictionary lacks %s: %v", r, h.Sys.Dict)
			}
		}
		// Handler routes come first, sorted; push routes follow.
		for i, r := range []string{routeEcho, routeEnter, routeKickMe, routeNotify} {
			if int(h.Sys.Dict[r]) != i+1 {
				t.Errorf("code of %s = %d, want %d (sorted handler routes first)", r, h.Sys.Dict[r], i+1)
			}
		}

		// A client that already holds this dictionary version gets no dict.
		c2 := dialRaw(t, f.url("/"))
		c2.send(pkg(1, fmt.Appendf(nil, `{"sys":{"type":"js-websocket","version":"0.0.1","dictVersion":%q},"user":{}}`, h.Sys.DictVersion)))
		p := c2.expect(1, 5*time.Second)
		var h2 handshakeReply
		if err := json.Unmarshal(p.body, &h2); err != nil || h2.Code != 200 || h2.Sys == nil {
			t.Fatalf("handshake reply %s", p.body)
		}
		if h2.Sys.Dict != nil || !h2.Sys.UseDict || h2.Sys.DictVersion != h.Sys.DictVersion {
			t.Errorf("reply to a client holding the dictionary = %s, want useDict and dictVersion without dict", p.body)
		}
	})

	// 2. 500 / 501 then close.
	t.Run("HandshakeRefused", func(t *testing.T) {
		f := newFixture(t, func(c *server.Config) {
			c.CheckClient = func(typ, version string) bool { return version != "0.0.0-old" }
		})
		for _, tc := range []struct {
			name, body, want string
		}{
			{"not JSON", `hello`, `{"code":500}`},
			{"no sys", `{"user":{}}`, `{"code":500}`},
			{"old client", `{"sys":{"type":"js-websocket","version":"0.0.0-old"},"user":{}}`, `{"code":501}`},
		} {
			t.Run(tc.name, func(t *testing.T) {
				c := dialRaw(t, f.url("/"))
				c.send(pkg(1, []byte(tc.body)))
				p := c.expect(1, 5*time.Second)
				jsonEqual(t, "handshake reply", p.body, tc.want)
				c.expectClosed(5 * time.Second)
			})
		}
	})

	// 3. A HEARTBEAT right after the ACK; every HEARTBEAT answered at once.
	t.Run("Heartbeat", func(t *testing.T) {
		f := newFixture(t, nil)
		c := dialRaw(t, f.url("/"))
		c.handshake()
		c.send([]byte{0x02, 0, 0, 0})
		p, err := c.next(2 * time.Second)
		if err != nil || p.typ != 3 || len(p.body) != 0 {
			t.Fatalf("after the ACK got %d % x (%v), want exactly 03 00 00 00", p.typ, p.body, err)
		}
		for i := range 3 {
			start := time.Now()
			c.send([]byte{0x03, 0, 0, 0})
			p, err := c.next(time.Second)
			if err != nil || p.typ != 3 || len(p.body) != 0 {
				t.Fatalf("heartbeat %d answered with %d % x (%v)", i, p.typ, p.body, err)
			}
			if d := time.Since(start); d > 500*time.Millisecond {
				t.Errorf("heartbeat %d answered after %v", i, d)
			}
		}
	})

	// 4. Response flag 04, the request's varint id, no route; JSON bodies.
	t.Run("Response", func(t *testing.T) {
		f := newFixture(t, nil)
		c := dialRaw(t, f.url("/"))
		h := c.handshakeAck()
		for _, id := range []uint64{1, 127, 128, 300, 16384, 1<<31 - 1} {
			body := fmt.Sprintf(`{"id":%d,"s":"ü"}`, id)
			c.send(pkg(4, requestMsg(id, routeEcho, body)))
			p := c.expect(4, 5*time.Second)
			want := append([]byte{0x04}, varint(id)...)
			if !bytes.HasPrefix(p.body, want) {
				t.Errorf("response to id %d starts % x, want % x", id, p.body[:min(len(p.body), 8)], want)
				continue
			}
			jsonEqual(t, fmt.Sprintf("response body to id %d", id), p.body[len(want):], body)
		}
		// A compressed route gets the same kind of response.
		c.send(pkg(4, requestCompressed(300, h.Sys.Dict[routeEcho], `{"compressed":true}`)))
		p := c.expect(4, 5*time.Second)
		if !bytes.HasPrefix(p.body, []byte{0x04, 0xac, 0x02}) {
			t.Errorf("response to a compressed request starts % x, want 04 ac 02", p.body[:min(len(p.body), 8)])
		} else {
			jsonEqual(t, "response to a compressed request", p.body[3:], `{"compressed":true}`)
		}
		// Errors: still one response, flag 04 (Pitaya's 0x20 bit allowed), code 500.
		for _, tc := range []struct {
			name string
			msg  []byte
			err  string
		}{
			{"unknown route", requestMsg(7, "connector.entryHandler.nope", `{}`), "UNKNOWN_ROUTE"},
			{"route without dots", requestMsg(7, "nodots", `{}`), "UNKNOWN_ROUTE"},
			{"unknown route code", requestCompressed(7, 0xfffe, `{}`), "UNKNOWN_ROUTE"},
			{"undecodable body", requestMsg(7, routeEcho, `[1,2]`), "BAD_REQUEST"},
			{"notify-only route", requestMsg(7, routeNotify, `{}`), "BAD_REQUEST"},
		} {
			c.send(pkg(4, tc.msg))
			p := c.expect(4, 5*time.Second)
			m := decodeMessage(t, p.body)
			if m.flag&^0x20 != 0x04 || m.id != 7 {
				t.Errorf("%s: response flag %#x id %d, want 0x04 (or 0x24) and id 7", tc.name, m.flag, m.id)
			}
			var eb errorBody
			if err := json.Unmarshal(m.body, &eb); err != nil || eb.Code != 500 || eb.Error != tc.err {
				t.Errorf("%s: response body %s, want code 500 and error %s", tc.name, m.body, tc.err)
			}
		}
	})

	// 4. Push flag 06 + route, or 07 + code for a route in the dictionary.
	t.Run("Push", func(t *testing.T) {
		for _, disable := range []bool{false, true} {
			t.Run(fmt.Sprintf("DisableDict=%v", disable), func(t *testing.T) {
				f := newFixture(t, func(c *server.Config) { c.DisableDict = disable })
				c := dialRaw(t, f.url("/"))
				h := c.handshakeAck()
				c.send(pkg(4, requestMsg(1, routeEnter, `{"uid":"carol"}`)))
				c.expect(4, 5*time.Second)

				// A push caused by a notify.
				c.send(pkg(4, notifyMsg(routeNotify, `{"k":"v"}`)))
				p := c.expect(4, 5*time.Second)
				var want []byte
				if disable {
					want = append([]byte{0x06, byte(len(pushNotify))}, pushNotify...)
				} else {
					code := h.Sys.Dict[pushNotify]
					want = []byte{0x07, byte(code >> 8), byte(code)}
				}
				if !bytes.HasPrefix(p.body, want) {
					t.Errorf("push starts % x, want % x", p.body, want)
				} else {
					jsonEqual(t, "push body", p.body[len(want):], `{"k":"v"}`)
				}

				// Pushes from Go: a route in the dictionary and one not in it.
				for _, route := range []string{pushPush, pushUnlisted} {
					failed, err := f.s.Sessions().PushToUIDs(route, mustStruct(t, map[string]any{"r": route}), []string{"carol"})
					if err != nil || len(failed) != 0 {
						t.Fatalf("PushToUIDs %s: %v, failed %q", route, err, failed)
					}
					p := c.expect(4, 5*time.Second)
					m := decodeMessage(t, p.body)
					if code, ok := h.Sys.Dict[route]; ok && !disable {
						if m.flag != 0x07 || m.code != code {
							t.Errorf("push %s: flag %#x code %d, want 0x07 and %d", route, m.flag, m.code, code)
						}
					} else if m.flag != 0x06 || m.route != route {
						t.Errorf("push %s: flag %#x route %q, want 0x06 and the route", route, m.flag, m.route)
					}
					jsonEqual(t, "push "+route, m.body, fmt.Sprintf(`{"r":%q}`, route))
				}
			})
		}
	})

	// 5. KICK with a {"reason":...} body, then close.
	t.Run("Kick", func(t *testing.T) {
		f := newFixture(t, nil)
		t.Run("from a handler", func(t *testing.T) {
			c := dialRaw(t, f.url("/"))
			c.handshakeAck()
			c.send(pkg(4, requestMsg(1, routeKickMe, `{}`)))
			// Ours: the request that kicked its session is answered first.
			if m := decodeMessage(t, c.expect(4, 5*time.Second).body); m.flag&^0x20 != 0x04 || m.id != 1 {
				t.Errorf("before the KICK: flag %#x id %d, want the response to request 1", m.flag, m.id)
			}
			p := c.expect(5, 5*time.Second)
			if string(p.body) != `{"reason":"kicked-by-test"}` {
				t.Errorf("kick body %q", p.body)
			}
			c.expectClosed(5 * time.Second)
		})
		t.Run("by uid", func(t *testing.T) {
			c := dialRaw(t, f.url("/"))
			c.handshakeAck()
			c.send(pkg(4, requestMsg(1, routeEnter, `{"uid":"dave"}`)))
			c.expect(4, 5*time.Second)
			if n := f.s.Sessions().KickByUID("dave", `say "bye"`); n != 1 {
				t.Fatalf("KickByUID kicked %d", n)
			}
			p := c.expect(5, 5*time.Second)
			if string(p.body) != `{"reason":"say \"bye\""}` {
				t.Errorf("kick body %q", p.body)
			}
			c.expectClosed(5 * time.Second)
		})
	})

	// Ours: several packages in one client frame, and text frames.
	t.Run("SeveralPackagesPerClientFrame", func(t *testing.T) {
		f := newFixture(t, nil)
		c := dialRaw(t, f.url("/"))
		c.send(pkg(1, []byte(jsHandshake)), pkg(2, nil))
		c.expect(1, 5*time.Second)
		c.expect(3, 5*time.Second)
		c.send(pkg(3, nil), pkg(4, requestMsg(1, routeEcho, `{"a":1}`)), pkg(4, requestMsg(2, routeEcho, `{"a":2}`)))
		got := map[byte]int{}
		for range 3 {
			p, err := c.next(5 * time.Second)
			if err != nil {
				t.Fatal(err)
			}
			got[p.typ]++
			if p.typ == 4 {
				m := decodeMessage(t, p.body)
				jsonEqual(t, "response", m.body, fmt.Sprintf(`{"a":%d}`, m.id))
			}
		}
		if got[3] != 1 || got[4] != 2 {
			t.Errorf("got packages %v, want one heartbeat and two responses", got)
		}
	})
	t.Run("TextFrames", func(t *testing.T) {
		f := newFixture(t, nil)
		c := dialRaw(t, f.url("/"))
		c.sendFrame(websocket.MessageText, pkg(1, []byte(jsHandshake)))
		c.expect(1, 5*time.Second)
		c.sendFrame(websocket.MessageText, pkg(2, nil))
		c.expect(3, 5*time.Second)
		c.sendFrame(websocket.MessageText, pkg(4, requestMsg(1, routeEcho, `{"text":true}`)))
		m := decodeMessage(t, c.expect(4, 5*time.Second).body)
		jsonEqual(t, "response to a text frame", m.body, `{"text":true}`)
	})
}
