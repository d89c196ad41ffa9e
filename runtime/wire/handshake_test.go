package wire_test

import (
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/pomelo-go/pomelo/runtime/wire"
)

func TestParseHandshake(t *testing.T) {
	for _, tc := range []struct {
		name string
		body string
		want wire.HandshakeSys
		user string
	}{
		{
			name: "js client",
			body: jsHandshake,
			want: wire.HandshakeSys{Type: "js-websocket", Version: "0.0.1", ProtoVersion: json.RawMessage("0"), RSA: json.RawMessage("{}")},
			user: "{}",
		},
		{
			name: "ours, protobuf",
			body: `{"sys":{"type":"go","version":"1.2.0","dictVersion":"0123456789abcdef","serializer":"protobuf","protoVersion":"abc"}}`,
			want: wire.HandshakeSys{Type: "go", Version: "1.2.0", DictVersion: "0123456789abcdef", Serializer: "protobuf", ProtoVersion: json.RawMessage(`"abc"`)},
		},
		{
			name: "pitaya client, extra fields",
			body: `{"sys":{"platform":"mac","libVersion":"0.3.5-release","clientBuildNumber":"20","clientVersion":"2.1","type":"go-websocket","version":"0.3.5"},"user":{"age":30}}`,
			want: wire.HandshakeSys{Type: "go-websocket", Version: "0.3.5"},
			user: `{"age":30}`,
		},
		{
			name: "numbers and nulls where strings belong",
			body: `{"sys":{"type":null,"version":1.5,"dictVersion":-3,"rsa":null,"protoVersion":null},"user":null}`,
			want: wire.HandshakeSys{Version: "1.5", DictVersion: "-3"},
		},
		{
			name: "empty sys",
			body: ` {"sys":{}} `,
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h, err := wire.ParseHandshake([]byte(tc.body))
			if err != nil {
				t.Fatal(err)
			}
			s := h.Sys
			if s.Type != tc.want.Type || s.Version != tc.want.Version || s.DictVersion != tc.want.DictVersion ||
				s.Serializer != tc.want.Serializer || string(s.ProtoVersion) != string(tc.want.ProtoVersion) ||
				string(s.RSA) != string(tc.want.RSA) {
				t.Errorf("sys = %+v\nwant  %+v", *s, tc.want)
			}
			if string(h.User) != tc.user {
				t.Errorf("user = %s, want %s", h.User, tc.user)
			}
			var raw map[string]json.RawMessage
			if err := json.Unmarshal(s.Raw, &raw); err != nil {
				t.Errorf("Raw %s: %v", s.Raw, err)
			}
		})
	}
}

func TestParseHandshakeResume(t *testing.T) {
	for _, tc := range []struct {
		body string
		want *wire.ResumeRequest
	}{
		{jsHandshake, nil},
		{`{"sys":{"resume":null}}`, nil},
		{`{"sys":{"resume":{}}}`, &wire.ResumeRequest{}},
		{`{"sys":{"resume":{"token":"abc","received":42}}}`, &wire.ResumeRequest{Token: "abc", Received: 42}},
		{`{"sys":{"resume":{"token":null,"received":null,"extra":1}}}`, &wire.ResumeRequest{}},
	} {
		h, err := wire.ParseHandshake([]byte(tc.body))
		if err != nil {
			t.Fatalf("%s: %v", tc.body, err)
		}
		got := h.Sys.Resume
		if (got == nil) != (tc.want == nil) || got != nil && *got != *tc.want {
			t.Errorf("%s: resume = %+v, want %+v", tc.body, got, tc.want)
		}
	}
}

func TestParseHandshakeDoesNotAlias(t *testing.T) {
	body := []byte(jsHandshake)
	h, err := wire.ParseHandshake(body)
	if err != nil {
		t.Fatal(err)
	}
	for i := range body {
		body[i] = 'x'
	}
	if string(h.User) != "{}" || string(h.Sys.RSA) != "{}" || !strings.Contains(string(h.Sys.Raw), "js-websocket") {
		t.Errorf("result aliases the body: %+v %s", h.Sys, h.User)
	}
}

func TestParseHandshakeErrors(t *testing.T) {
	for _, body := range []string{
		"",
		"not json",
		"{",
		"[]",
		"null",
		"42",
		`"sys"`,
		"{}",
		`{"user":{}}`,
		`{"sys":null}`,
		`{"sys":5}`,
		`{"sys":"x"}`,
		`{"sys":[]}`,
		`{"sys":{"type":true}}`,
		`{"sys":{"version":{}}}`,
		`{"sys":{"serializer":["json"]}}`,
		`{"sys":{}} trailing`,
		"{\"sys\":{\"type\":\"\xff\"}",
		`{"sys":{"resume":5}}`,
		`{"sys":{"resume":[]}}`,
		`{"sys":{"resume":{"token":5}}}`,
		`{"sys":{"resume":{"token":"t","received":-1}}}`,
		`{"sys":{"resume":{"token":"t","received":1.5}}}`,
		`{"sys":{"resume":{"token":"t","received":"3"}}}`,
		`{"sys":{"resume":{"token":"t","received":18446744073709551616}}}`,
		`{"sys":{"resume":{"token":"t","received":1e3}}}`,
	} {
		h, err := wire.ParseHandshake([]byte(body))
		if !errors.Is(err, wire.ErrMalformed) || h != nil {
			t.Errorf("ParseHandshake(%q) = %v, %v; want ErrMalformed", body, h, err)
		}
	}
}

func TestHandshakeResponseMarshal(t *testing.T) {
	for _, tc := range []struct {
		r    wire.HandshakeResponse
		want string
	}{
		{wire.HandshakeResponse{Code: wire.CodeOK, Sys: &wire.HandshakeResponseSys{Heartbeat: 3}}, `{"code":200,"sys":{"heartbeat":3}}`},
		{wire.HandshakeResponse{Code: wire.CodeBadHandshake}, `{"code":500}`},
		{wire.HandshakeResponse{Code: wire.CodeOldClient}, `{"code":501}`},
		{
			wire.HandshakeResponse{Code: wire.CodeOK, Sys: &wire.HandshakeResponseSys{
				Heartbeat: 10, Dict: map[string]uint16{"b.h.m": 2, "a.h.m": 1}, UseDict: true,
				DictVersion: "00ff", Serializer: "protobuf",
			}, User: json.RawMessage(`{ "uid" : 7 }`)},
			`{"code":200,"sys":{"heartbeat":10,"dict":{"a.h.m":1,"b.h.m":2},"useDict":true,"dictVersion":"00ff","serializer":"protobuf"},"user":{"uid":7}}`,
		},
		{wire.HandshakeResponse{Code: 200, Sys: &wire.HandshakeResponseSys{}, User: json.RawMessage(`{bad`)}, `{"code":200,"sys":{"heartbeat":0}}`},
		{wire.HandshakeResponse{Code: 200, User: json.RawMessage(`  `)}, `{"code":200}`},
		{
			wire.HandshakeResponse{Code: wire.CodeOK, Sys: &wire.HandshakeResponseSys{Heartbeat: 10, Resume: &wire.ResumeReply{Token: "tok"}}},
			`{"code":200,"sys":{"heartbeat":10,"resume":{"token":"tok","resumed":false}}}`,
		},
		{
			wire.HandshakeResponse{Code: wire.CodeOK, Sys: &wire.HandshakeResponseSys{Heartbeat: 10, Resume: &wire.ResumeReply{Token: "tok", Resumed: true}}},
			`{"code":200,"sys":{"heartbeat":10,"resume":{"token":"tok","resumed":true}}}`,
		},
	} {
		if got := string(tc.r.Marshal()); got != tc.want {
			t.Errorf("Marshal = %s\n    want %s", got, tc.want)
		}
	}
}

func TestKick(t *testing.T) {
	for _, reason := range []string{
		"", "kick", "relogin", `quote " backslash \ slash /`, "new\nline\ttab\x00nul\x1f", "héllo ✓ 🎉",
		"<script>&amp;</script>", "\u2028\u2029", strings.Repeat("r", 1000),
	} {
		body := wire.KickBody(reason)
		if !json.Valid(body) {
			t.Errorf("KickBody(%q) = %s: not JSON", reason, body)
		}
		var v map[string]any
		if err := json.Unmarshal(body, &v); err != nil || len(v) != 1 || v["reason"] != reason {
			t.Errorf("KickBody(%q) = %s", reason, body)
		}
		got, err := wire.ParseKick(body)
		if err != nil || got != reason {
			t.Errorf("ParseKick(KickBody(%q)) = %q, %v", reason, got, err)
		}
	}
	if got := string(wire.KickBody("relogin")); got != `{"reason":"relogin"}` {
		t.Errorf("KickBody(relogin) = %s", got)
	}
	// Invalid UTF-8 becomes U+FFFD, the body stays valid JSON.
	body := wire.KickBody("a\xffb")
	if got, err := wire.ParseKick(body); err != nil || got != "a\uFFFDb" {
		t.Errorf("invalid UTF-8: %s -> %q, %v", body, got, err)
	}
}

func TestParseKick(t *testing.T) {
	for _, tc := range []struct {
		body string
		want string
		err  bool
	}{
		{"", "", false}, // Pitaya
		{"  ", "", false},
		{"{}", "", false},
		{`{"reason":null}`, "", false},
		{`{"reason":"kick","extra":1}`, "kick", false},
		{`{"Reason":"x"}`, "", false},
		{"null", "", true},
		{"[]", "", true},
		{"x", "", true},
		{`"reason"`, "", true},
		{`{"reason":5}`, "", true},
		{`{"reason":{}}`, "", true},
		{`{"reason":"a"`, "", true},
	} {
		got, err := wire.ParseKick([]byte(tc.body))
		if got != tc.want || (err != nil) != tc.err || err != nil && !errors.Is(err, wire.ErrMalformed) {
			t.Errorf("ParseKick(%q) = %q, %v", tc.body, got, err)
		}
	}
}

func TestDict(t *testing.T) {
	handlers := []string{"connector.entryHandler.enter", "chat.chatHandler.send", "area.playerHandler.move", "chat.chatHandler.send"}
	extras := []string{"onLeave", "onChat", "chat.chatHandler.send", "onAdd", "onChat"}
	d, err := wire.NewDict(handlers, extras)
	if err != nil {
		t.Fatal(err)
	}
	want := []string{
		"area.playerHandler.move", "chat.chatHandler.send", "connector.entryHandler.enter",
		"onAdd", "onChat", "onLeave",
	}
	if d.Len() != len(want) {
		t.Fatalf("Len = %d, want %d", d.Len(), len(want))
	}
	if got := d.Routes(); fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("Routes = %v", got)
	}
	for i, r := range want {
		code := uint16(i + 1)
		if c, ok := d.Code(r); !ok || c != code {
			t.Errorf("Code(%s) = %d, %v; want %d", r, c, ok, code)
		}
		if got, ok := d.Route(code); !ok || got != r {
			t.Errorf("Route(%d) = %s, %v; want %s", code, got, ok, r)
		}
	}
	for _, code := range []uint16{0, uint16(len(want) + 1), 65535} {
		if r, ok := d.Route(code); ok {
			t.Errorf("Route(%d) = %s", code, r)
		}
	}
	if c, ok := d.Code("nope"); ok {
		t.Errorf("Code(nope) = %d", c)
	}
	m := d.Map()
	if len(m) != len(want) || m["onLeave"] != 6 {
		t.Errorf("Map = %v", m)
	}
	m["onLeave"] = 99
	delete(m, "onAdd")
	if c, _ := d.Code("onLeave"); c != 6 || d.Len() != 6 {
		t.Error("Map is not a copy")
	}
	if len(d.Version()) != 16 {
		t.Errorf("Version = %q", d.Version())
	}

	// Same content in another order: same dictionary and version.
	d2, err := wire.NewDict([]string{"chat.chatHandler.send", "area.playerHandler.move", "connector.entryHandler.enter"},
		[]string{"onAdd", "onChat", "onLeave"})
	if err != nil || d2.Version() != d.Version() || fmt.Sprint(d2.Routes()) != fmt.Sprint(want) {
		t.Errorf("reordered input: version %s vs %s, %v", d2.Version(), d.Version(), err)
	}
	// Different content: different version. Moving a route from handlers to extras changes
	// nothing if it sorts the same, but changing a route does.
	d3, _ := wire.NewDict(handlers, []string{"onAdd", "onChat", "onLeave2"})
	if d3.Version() == d.Version() {
		t.Error("different dictionaries share a version")
	}
	// Extras come after handlers even when they sort before them.
	d4, _ := wire.NewDict([]string{"z.h.m"}, []string{"a"})
	if c, _ := d4.Code("a"); c != 2 {
		t.Errorf("extra route code %d, want 2", c)
	}
	// The version is a hash of the ordered routes joined by \n.
	empty, err := wire.NewDict(nil, nil)
	if err != nil || empty.Len() != 0 || empty.Version() != "e3b0c44298fc1c14" {
		t.Errorf("empty dictionary: %d routes, version %s, %v", empty.Len(), empty.Version(), err)
	}
}

func TestNilDict(t *testing.T) {
	var d *wire.Dict
	if _, ok := d.Code("a.b.c"); ok {
		t.Error("nil Code found a route")
	}
	if _, ok := d.Route(1); ok {
		t.Error("nil Route found a code")
	}
	if d.Len() != 0 || d.Version() != "" || d.Map() != nil || d.Routes() != nil {
		t.Error("nil dictionary is not empty")
	}
}

func TestDictLimits(t *testing.T) {
	routes := make([]string, wire.MaxDictLen+1)
	for i := range routes {
		routes[i] = fmt.Sprintf("s.h.m%05d", i)
	}
	d, err := wire.NewDict(routes[:wire.MaxDictLen-1], routes[wire.MaxDictLen-1:wire.MaxDictLen])
	if err != nil || d.Len() != wire.MaxDictLen {
		t.Fatalf("65535 routes: %v", err)
	}
	if r, ok := d.Route(65535); !ok || r != routes[wire.MaxDictLen-1] {
		t.Errorf("Route(65535) = %s, %v", r, ok)
	}
	if _, err := wire.NewDict(routes[:wire.MaxDictLen], routes[wire.MaxDictLen:]); !errors.Is(err, wire.ErrTooLarge) {
		t.Errorf("65536 routes: %v", err)
	}
	if _, err := wire.NewDict(routes, routes); !errors.Is(err, wire.ErrTooLarge) {
		t.Errorf("65536 routes, repeated: %v", err)
	}
	for _, tc := range [][2][]string{{{"a", ""}, nil}, {{"a"}, {""}}} {
		if _, err := wire.NewDict(tc[0], tc[1]); !errors.Is(err, wire.ErrMalformed) {
			t.Errorf("empty route %q: %v", tc, err)
		}
	}
}
