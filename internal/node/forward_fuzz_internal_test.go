package node

import (
	"maps"
	"testing"
	"unicode/utf8"

	"github.com/pomelo-go/pomelo/runtime"
	"github.com/pomelo-go/pomelo/runtime/session"
)

// decodeAll decodes a request batch into copies of its messages.
func decodeAll(d *fwdDecoder, batch []byte) ([]fwdMsg, error) {
	var out []fwdMsg
	var m fwdMsg
	err := d.decode(batch, &m, func(m *fwdMsg) { out = append(out, *m) })
	return out, err
}

// FuzzForwardFrames encodes a batch around one message made of arbitrary
// client input (route, uid, a setting, body, trace context) between two
// good ones, as a frontend's stream does, and decodes it as its backend
// does: every message comes back in order with its route, body, flags and
// deadline unchanged, and its session with invalid UTF-8 replaced; the
// second message of a session carries no snapshot and still has it.
func FuzzForwardFrames(f *testing.F) {
	f.Add("chat.room.echo", "ann", "rid", "lobby", []byte(`{"n":1}`), false, int64(1))
	f.Add("chat.\xff\xfe.echo", "ann", "rid", "lobby", []byte(`{}`), true, int64(0))
	f.Add("chat.room.echo", "\xc0\x80", "\xff", "\xfe\xfe", []byte{0xff, 0}, false, int64(-5))
	f.Add("", "", "", "", []byte(nil), true, int64(1)<<62)
	f.Fuzz(func(t *testing.T, route, uid, key, value string, body []byte, notify bool, deadline int64) {
		deadline = max(deadline, 0)
		var enc fwdEncoder
		var b []byte
		good := fwdOut{route: "chat.room.echo", body: []byte(`{}`), protobuf: true}
		goodSnap := session.Snapshot{ID: 1, FrontendID: "connector-1", UID: "u"}
		odd := fwdOut{route: route, notify: notify, body: body, deadline: deadline, trace: map[string]string{key: value}}
		oddSnap := session.Snapshot{ID: 2, FrontendID: "connector-\xff", UID: uid, Settings: map[string]string{key: value}}
		b = enc.appendMessage(b, 1, goodSnap, &good)
		b = enc.appendMessage(b, 2, oddSnap, &odd)
		b = enc.appendMessage(b, 3, goodSnap, &good)
		b = enc.appendMessage(b, 4, oddSnap, &odd)
		var dec fwdDecoder
		got, err := decodeAll(&dec, b)
		if err != nil {
			t.Fatalf("decode: %v", err)
		}
		if len(got) != 4 {
			t.Fatalf("decoded %d messages, want 4", len(got))
		}
		for i, m := range got {
			if m.seq != uint64(i+1) {
				t.Fatalf("message %d has seq %d", i+1, m.seq)
			}
			want, snap := good, goodSnap
			if i%2 == 1 {
				want, snap = odd, oddSnap
			}
			if m.route != want.route || string(m.body) != string(want.body) || m.notify != want.notify || m.deadline != want.deadline ||
				(m.ser == runtime.Protobuf) != want.protobuf || !maps.Equal(m.trace, want.trace) {
				t.Fatalf("message %d: got %+v, want %+v", i+1, m, want)
			}
			if m.session.ID != snap.ID || m.session.FrontendID != snap.FrontendID || m.session.UID != validUTF8(snap.UID) {
				t.Fatalf("message %d: session %+v, want %+v", i+1, m.session, snap)
			}
			for k, v := range m.session.Settings {
				if !utf8.ValidString(k) || !utf8.ValidString(v) {
					t.Fatalf("message %d: setting %q=%q is not UTF-8", i+1, k, v)
				}
			}
			if len(m.session.Settings) != len(snap.Settings) {
				t.Fatalf("message %d: %d settings, want %d", i+1, len(m.session.Settings), len(snap.Settings))
			}
		}
	})
}

// FuzzForwardFrameDecode decodes arbitrary bytes as a request batch and
// as a response batch: decoding returns the messages before the first
// malformed record and an error, never panics, and allocates no more than
// the input could describe.
func FuzzForwardFrameDecode(f *testing.F) {
	var enc fwdEncoder
	seed := enc.appendMessage(nil, 7, session.Snapshot{ID: 3, FrontendID: "c", Settings: map[string]string{"k": "v"}}, &fwdOut{route: "a.b.c", body: []byte("x"), deadline: 9, trace: map[string]string{"t": "p"}})
	seed = enc.appendDrop(seed, sessionKey{"c", 3})
	f.Add(seed)
	f.Add(appendResponse(appendResponse(nil, 1, []byte("ok"), nil), 2, nil, runtime.Errorf(runtime.ErrTimeout, "late")))
	f.Add([]byte{recMessage, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff})
	f.Add([]byte{recMessage, 1, flagSession, 1, 0, 0xff, 0xff, 0xff, 0xff, 0x0f})
	f.Add([]byte{recFrontend, 0})
	f.Add([]byte{recFrontend, 1, '0', recFrontend, 0})
	f.Fuzz(func(t *testing.T, b []byte) {
		var dec fwdDecoder
		got, err := decodeAll(&dec, b)
		if err == nil && len(b) > 0 && len(got) == 0 && len(dec.sessions) == 0 && dec.frontend == "" {
			// Only drop records (of sessions never sent) and frontend
			// records, the last naming no frontend, decode to nothing.
			for r := (frameReader{b: b}); len(r.b) > 0; {
				switch r.byte() {
				case recDrop:
					r.uvarint()
				case recFrontend:
					r.string()
				default:
					t.Fatalf("%x decoded to nothing without an error", b)
				}
			}
		}
		n := 0
		err = decodeResponses(b, func(uint64, []byte, *runtime.Error) { n++ })
		if err == nil && len(b) > 0 && n == 0 {
			t.Fatalf("%x: no response and no error", b)
		}
	})
}
