package wire_test

import (
	"bytes"
	"errors"
	"testing"

	"github.com/pomelo-go/pomelo/runtime/wire"
)

// protocolExample is one example of docs/PROTOCOL.md section 3: a message and its exact package.
type protocolExample struct {
	name string
	msg  wire.Message
	pkg  []byte
}

func protocolExamples(t testing.TB) []protocolExample {
	echo := `{"hello":"world","n":42}`
	send := `{"content":"hi","target":"*"}`
	chat := `{"msg":"hi","from":"ann","target":"*"}`
	return []protocolExample{
		{
			name: "request id=1 chat.chatHandler.echo",
			msg:  wire.Message{Type: wire.Request, ID: 1, Route: "chat.chatHandler.echo", Body: []byte(echo)},
			pkg:  hexs(t, "04 00 00 30", "00", "01", "15", "=chat.chatHandler.echo", "="+echo),
		},
		{
			name: "response id=1",
			msg:  wire.Message{Type: wire.Response, ID: 1, Body: []byte(echo)},
			pkg:  hexs(t, "04 00 00 1a", "04", "01", "="+echo),
		},
		{
			name: "notify chat.chatHandler.send",
			msg:  wire.Message{Type: wire.Notify, Route: "chat.chatHandler.send", Body: []byte(send)},
			pkg:  hexs(t, "04 00 00 34", "02", "15", "=chat.chatHandler.send", "="+send),
		},
		{
			name: "push onChat",
			msg:  wire.Message{Type: wire.Push, Route: "onChat", Body: []byte(chat)},
			pkg:  hexs(t, "04 00 00 2e", "06", "06", "=onChat", "="+chat),
		},
		{
			name: "request id=300 route code 4",
			msg:  wire.Message{Type: wire.Request, ID: 300, Compressed: true, RouteCode: 4, Body: []byte(send)},
			pkg:  hexs(t, "04 00 00 22", "01", "ac 02", "00 04", "="+send),
		},
		{
			name: "push compressed code 0x0102",
			msg:  wire.Message{Type: wire.Push, Compressed: true, RouteCode: 0x0102, Body: []byte(chat)},
			pkg:  hexs(t, "04 00 00 29", "07", "01 02", "="+chat),
		},
		{
			name: "notify compressed, empty body",
			msg:  wire.Message{Type: wire.Notify, Compressed: true, RouteCode: 1},
			pkg:  hexs(t, "04 00 00 03", "03", "00 01"),
		},
		{
			name: "response with Pitaya error flag",
			msg:  wire.Message{Type: wire.Response, ID: 127, Error: true, Body: []byte(`{}`)},
			pkg:  hexs(t, "04 00 00 04", "24", "7f", "={}"),
		},
		{
			name: "response with gzip flag",
			msg:  wire.Message{Type: wire.Response, ID: 128, Gzip: true, Body: []byte(`x`)},
			pkg:  hexs(t, "04 00 00 04", "14", "80 01", "=x"),
		},
	}
}

func messagesEqual(a, b wire.Message) bool {
	return a.Type == b.Type && a.ID == b.ID && a.Route == b.Route && a.RouteCode == b.RouteCode &&
		a.Compressed == b.Compressed && a.Error == b.Error && a.Gzip == b.Gzip && bytes.Equal(a.Body, b.Body)
}

func TestProtocolExamples(t *testing.T) {
	for _, ex := range protocolExamples(t) {
		t.Run(ex.name, func(t *testing.T) {
			// Encode, the one-step way.
			got, err := wire.AppendMessagePackage(nil, &ex.msg)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got, ex.pkg) {
				t.Fatalf("AppendMessagePackage:\n got % x\nwant % x", got, ex.pkg)
			}
			// Encode, the two-step way.
			body, err := wire.AppendMessage(nil, &ex.msg)
			if err != nil {
				t.Fatal(err)
			}
			if n := ex.msg.EncodedLen(); n != len(body) {
				t.Errorf("EncodedLen = %d, encoded %d bytes", n, len(body))
			}
			got, err = wire.AppendPackage(nil, wire.TypeData, body)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got, ex.pkg) {
				t.Fatalf("AppendPackage(AppendMessage):\n got % x\nwant % x", got, ex.pkg)
			}
			// Decode.
			calls := 0
			err = wire.SplitPackages(ex.pkg, 0, func(pt wire.PackageType, body []byte) error {
				calls++
				if pt != wire.TypeData {
					t.Errorf("type %v, want DATA", pt)
				}
				m, err := wire.DecodeMessage(body)
				if err != nil {
					return err
				}
				if !messagesEqual(m, ex.msg) {
					t.Errorf("decoded %+v\n   want %+v", m, ex.msg)
				}
				return nil
			})
			if err != nil || calls != 1 {
				t.Fatalf("SplitPackages: %v, %d calls", err, calls)
			}
		})
	}
}

func TestKickExample(t *testing.T) {
	want := hexs(t, "05 00 00 14", `={"reason":"relogin"}`)
	got, err := wire.AppendPackage(nil, wire.TypeKick, wire.KickBody("relogin"))
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want) {
		t.Fatalf("got % x\nwant % x", got, want)
	}
	err = wire.SplitPackages(want, 0, func(pt wire.PackageType, body []byte) error {
		if pt != wire.TypeKick {
			t.Errorf("type %v", pt)
		}
		reason, err := wire.ParseKick(body)
		if reason != "relogin" {
			t.Errorf("reason %q", reason)
		}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
}

const jsHandshake = `{"sys":{"type":"js-websocket","version":"0.0.1","rsa":{},"protoVersion":0},"user":{}}`

func TestHandshakeExample(t *testing.T) {
	want := hexs(t, "01 00 00 55", "="+jsHandshake)
	got, err := wire.AppendPackage(nil, wire.TypeHandshake, []byte(jsHandshake))
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want) {
		t.Fatalf("got % x\nwant % x", got, want)
	}
	err = wire.SplitPackages(want, 0, func(pt wire.PackageType, body []byte) error {
		if pt != wire.TypeHandshake {
			t.Errorf("type %v", pt)
		}
		h, err := wire.ParseHandshake(body)
		if err != nil {
			return err
		}
		s := h.Sys
		if s.Type != "js-websocket" || s.Version != "0.0.1" || string(s.ProtoVersion) != "0" ||
			string(s.RSA) != "{}" || s.DictVersion != "" || s.Serializer != "" || string(h.User) != "{}" {
			t.Errorf("parsed %+v, user %s", s, h.User)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

func TestEmptyPackages(t *testing.T) {
	for _, tc := range []struct {
		t        wire.PackageType
		prebuilt []byte
		want     []byte
	}{
		{wire.TypeHandshakeAck, wire.HandshakeAckPackage, []byte{2, 0, 0, 0}},
		{wire.TypeHeartbeat, wire.HeartbeatPackage, []byte{3, 0, 0, 0}},
	} {
		if !bytes.Equal(tc.prebuilt, tc.want) {
			t.Errorf("%v prebuilt: % x", tc.t, tc.prebuilt)
		}
		got, err := wire.AppendPackage(nil, tc.t, nil)
		if err != nil || !bytes.Equal(got, tc.want) {
			t.Errorf("AppendPackage(%v) = % x, %v", tc.t, got, err)
		}
		got, err = wire.AppendHeader(nil, tc.t, 0)
		if err != nil || !bytes.Equal(got, tc.want) {
			t.Errorf("AppendHeader(%v) = % x, %v", tc.t, got, err)
		}
	}
}

func TestSeveralPackagesPerFrame(t *testing.T) {
	var frame []byte
	frame = append(frame, wire.HeartbeatPackage...)
	ex := protocolExamples(t)
	for _, e := range ex {
		frame = append(frame, e.pkg...)
	}
	frame, _ = wire.AppendPackage(frame, wire.TypeKick, wire.KickBody("kick"))

	var types []wire.PackageType
	var msgs []wire.Message
	err := wire.SplitPackages(frame, 64, func(pt wire.PackageType, body []byte) error {
		types = append(types, pt)
		if pt == wire.TypeData {
			m, err := wire.DecodeMessage(body)
			if err != nil {
				return err
			}
			msgs = append(msgs, m)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(types) != len(ex)+2 || types[0] != wire.TypeHeartbeat || types[len(types)-1] != wire.TypeKick {
		t.Fatalf("types %v", types)
	}
	for i, e := range ex {
		if !messagesEqual(msgs[i], e.msg) {
			t.Errorf("message %d: %+v, want %+v", i, msgs[i], e.msg)
		}
	}
}

func TestSplitPackagesErrors(t *testing.T) {
	stop := errors.New("stop")
	for _, tc := range []struct {
		name    string
		buf     []byte
		maxBody int
		want    error
		calls   int
	}{
		{"empty", nil, 0, nil, 0},
		{"partial header", hexs(t, "03 00 00"), 0, wire.ErrTruncated, 0},
		{"heartbeat then partial header", hexs(t, "03 00 00 00 04"), 0, wire.ErrTruncated, 1},
		{"length larger than body", hexs(t, "04 00 00 10 00 01"), 0, wire.ErrTruncated, 0},
		{"garbage, default max", []byte("GET / HTTP/1.1\r\n"), 0, wire.ErrUnknownType, 0},
		{"garbage, 64 KiB max", []byte("GET / HTTP/1.1\r\n"), 64 << 10, wire.ErrTooLarge, 0},
		{"garbage within limit", []byte("\x00\x00\x00\x01x"), 0, wire.ErrUnknownType, 0},
		{"unknown type 0", hexs(t, "00 00 00 00"), 0, wire.ErrUnknownType, 0},
		{"unknown type 6", hexs(t, "03 00 00 00 06 00 00 00"), 0, wire.ErrUnknownType, 1},
		{"unknown type ff", hexs(t, "ff 00 00 01 00"), 0, wire.ErrUnknownType, 0},
		{"over maxBody", hexs(t, "04 00 00 05 0000000000"), 4, wire.ErrTooLarge, 0},
		{"at maxBody", hexs(t, "04 00 00 04 00000000"), 4, nil, 1},
		{"over maxBody before unknown type", hexs(t, "09 01 00 00"), 4, wire.ErrTooLarge, 0},
		{"over maxBody before truncation", hexs(t, "04 ff ff ff"), 1 << 16, wire.ErrTooLarge, 0},
		{"16 MiB claim, default max", hexs(t, "04 ff ff ff"), 0, wire.ErrTruncated, 0},
		{"fn error", hexs(t, "03 00 00 00 03 00 00 00"), 0, stop, 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			calls := 0
			err := wire.SplitPackages(tc.buf, tc.maxBody, func(pt wire.PackageType, body []byte) error {
				calls++
				if tc.want == stop {
					return stop
				}
				return nil
			})
			if tc.want == nil && err != nil || tc.want != nil && !errors.Is(err, tc.want) {
				t.Errorf("err = %v, want %v", err, tc.want)
			}
			if calls != tc.calls {
				t.Errorf("%d calls, want %d", calls, tc.calls)
			}
		})
	}
}

func TestSplitPackagesBodyCapacity(t *testing.T) {
	frame := hexs(t, "04 00 00 02 aa bb 03 00 00 00")
	_ = wire.SplitPackages(frame, 0, func(pt wire.PackageType, body []byte) error {
		if pt == wire.TypeData && cap(body) != 2 {
			t.Errorf("body capacity %d: appending would overwrite the next package", cap(body))
		}
		return nil
	})
}

func TestAppendHeaderErrors(t *testing.T) {
	dst := []byte("keep")
	for _, tc := range []struct {
		t    wire.PackageType
		n    int
		want error
	}{
		{wire.TypeData, wire.MaxLength + 1, wire.ErrTooLarge},
		{wire.TypeData, -1, wire.ErrMalformed},
		{0, 0, wire.ErrUnknownType},
		{6, 0, wire.ErrUnknownType},
	} {
		got, err := wire.AppendHeader(dst, tc.t, tc.n)
		if !errors.Is(err, tc.want) || string(got) != "keep" {
			t.Errorf("AppendHeader(%d, %d) = %q, %v; want %v", tc.t, tc.n, got, err, tc.want)
		}
	}
	got, err := wire.AppendHeader(nil, wire.TypeData, wire.MaxLength)
	if err != nil || !bytes.Equal(got, []byte{4, 0xff, 0xff, 0xff}) {
		t.Errorf("AppendHeader(MaxLength) = % x, %v", got, err)
	}
	got, err = wire.AppendPackage(dst, wire.TypeData, make([]byte, wire.MaxLength+1))
	if !errors.Is(err, wire.ErrTooLarge) || string(got) != "keep" {
		t.Errorf("AppendPackage(MaxLength+1) = %v", err)
	}
}

func TestTypeStrings(t *testing.T) {
	for v, want := range map[wire.PackageType]string{
		wire.TypeHandshake: "HANDSHAKE", wire.TypeHandshakeAck: "HANDSHAKE_ACK", wire.TypeHeartbeat: "HEARTBEAT",
		wire.TypeData: "DATA", wire.TypeKick: "KICK", 0: "PackageType(0)", 200: "PackageType(200)",
	} {
		if got := v.String(); got != want {
			t.Errorf("PackageType %d: %q, want %q", byte(v), got, want)
		}
	}
	for v, want := range map[wire.MessageType]string{
		wire.Request: "REQUEST", wire.Notify: "NOTIFY", wire.Response: "RESPONSE", wire.Push: "PUSH",
		4: "MessageType(4)",
	} {
		if got := v.String(); got != want {
			t.Errorf("MessageType %d: %q, want %q", byte(v), got, want)
		}
	}
}
