package wire_test

import (
	"bytes"
	"errors"
	"math"
	"math/rand/v2"
	"strings"
	"testing"
	"testing/quick"

	"github.com/pomelo-go/pomelo/runtime/wire"
)

func TestVarint(t *testing.T) {
	for _, tc := range []struct {
		v   uint64
		hex string
	}{
		{0, "00"},
		{1, "01"},
		{127, "7f"},
		{128, "80 01"},
		{300, "ac 02"},
		{16383, "ff 7f"},
		{16384, "80 80 01"},
		{1<<31 - 1, "ff ff ff ff 07"},
		{math.MaxUint64, "ff ff ff ff ff ff ff ff ff 01"},
	} {
		want := hexs(t, tc.hex)
		got := wire.AppendVarint(nil, tc.v)
		if !bytes.Equal(got, want) {
			t.Errorf("AppendVarint(%d) = % x, want % x", tc.v, got, want)
		}
		if n := wire.VarintLen(tc.v); n != len(want) {
			t.Errorf("VarintLen(%d) = %d, want %d", tc.v, n, len(want))
		}
		v, n, err := wire.ReadVarint(append(want, 0xaa))
		if err != nil || v != tc.v || n != len(want) {
			t.Errorf("ReadVarint(% x) = %d, %d, %v", want, v, n, err)
		}
	}
}

func TestReadVarintErrors(t *testing.T) {
	for _, tc := range []struct {
		hex  string
		want error
	}{
		{"", wire.ErrTruncated},
		{"80", wire.ErrTruncated},
		{"ff ff ff", wire.ErrTruncated},
		{"ff ff ff ff ff ff ff ff ff", wire.ErrTruncated},
		{"ff ff ff ff ff ff ff ff ff 02", wire.ErrMalformed},    // 65 bits
		{"ff ff ff ff ff ff ff ff ff 81 00", wire.ErrMalformed}, // 11 bytes
		{"80 80 80 80 80 80 80 80 80 80 01", wire.ErrMalformed}, // 11 bytes, value 0
	} {
		if _, _, err := wire.ReadVarint(hexs(t, tc.hex)); !errors.Is(err, tc.want) {
			t.Errorf("ReadVarint(%s): %v, want %v", tc.hex, err, tc.want)
		}
	}
	// Non-minimal encodings are accepted.
	if v, n, err := wire.ReadVarint(hexs(t, "81 80 00")); v != 1 || n != 3 || err != nil {
		t.Errorf("ReadVarint(81 80 00) = %d, %d, %v", v, n, err)
	}
}

func TestDecodeMessageErrors(t *testing.T) {
	for _, tc := range []struct {
		name string
		hex  string
		also error // wrapped besides ErrMalformed
	}{
		{"empty", "", wire.ErrTruncated},
		{"unknown type 4", "08", wire.ErrUnknownType},
		{"unknown type 7", "0f 01 02", wire.ErrUnknownType},
		{"request without id", "00", wire.ErrTruncated},
		{"response without id", "04", wire.ErrTruncated},
		{"truncated varint", "00 80", wire.ErrTruncated},
		{"truncated varint, long", "04 ff ff ff ff", wire.ErrTruncated},
		{"varint overflow 65 bits", "00 ff ff ff ff ff ff ff ff ff 02 00", wire.ErrMalformed},
		{"varint overflow 11 bytes", "04 80 80 80 80 80 80 80 80 80 80 01", wire.ErrMalformed},
		{"request without route length", "00 01", wire.ErrTruncated},
		{"notify without route length", "02", wire.ErrTruncated},
		{"route length past end", "02 05 61 62", wire.ErrTruncated},
		{"route length past end, request", "00 01 15 61", wire.ErrTruncated},
		{"route length ff, nothing", "06 ff", wire.ErrTruncated},
		{"compressed route missing code", "03", wire.ErrTruncated},
		{"compressed route half a code", "03 00", wire.ErrTruncated},
		{"compressed request missing code", "01 ac 02 00", wire.ErrTruncated},
		{"compressed push missing code", "07", wire.ErrTruncated},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m, err := wire.DecodeMessage(hexs(t, tc.hex))
			if !errors.Is(err, wire.ErrMalformed) || !errors.Is(err, tc.also) {
				t.Errorf("err = %v, want %v and %v", err, wire.ErrMalformed, tc.also)
			}
			if !messagesEqual(m, wire.Message{}) {
				t.Errorf("partial message returned: %+v", m)
			}
		})
	}
}

func TestDecodeMessageLenient(t *testing.T) {
	// Bits 6 and 7 are ignored, as Pomelo and Pitaya do.
	m, err := wire.DecodeMessage(hexs(t, "c6 02", "=hi", "=body"))
	want := wire.Message{Type: wire.Push, Route: "hi", Body: []byte("body")}
	if err != nil || !messagesEqual(m, want) {
		t.Errorf("high flag bits: %+v, %v", m, err)
	}
	// A route may be empty.
	m, err = wire.DecodeMessage(hexs(t, "02 00"))
	if err != nil || m.Type != wire.Notify || m.Route != "" || len(m.Body) != 0 {
		t.Errorf("empty route: %+v, %v", m, err)
	}
	// A response with the compressed bit: no code follows, the bit is reported.
	m, err = wire.DecodeMessage(hexs(t, "05 01 7b 7d"))
	want = wire.Message{Type: wire.Response, ID: 1, Compressed: true, Body: []byte("{}")}
	if err != nil || !messagesEqual(m, want) {
		t.Errorf("compressed response: %+v, %v", m, err)
	}
	out, _ := wire.AppendMessage(nil, &m)
	if !bytes.Equal(out, hexs(t, "05 01 7b 7d")) {
		t.Errorf("compressed response re-encoded as % x", out)
	}
}

func TestDecodeMessageAliases(t *testing.T) {
	b := hexs(t, "06 02", "=hi", "=body")
	m, err := wire.DecodeMessage(b)
	if err != nil {
		t.Fatal(err)
	}
	b[len(b)-1] = 'Y'
	b[2] = 'X'
	if string(m.Body) != "bodY" {
		t.Errorf("Body does not alias the input: %q", m.Body)
	}
	if m.Route != "hi" {
		t.Errorf("Route aliases the input: %q", m.Route)
	}
}

func TestAppendMessageErrors(t *testing.T) {
	dst := []byte("keep")
	long := strings.Repeat("r", 256)
	for _, tc := range []struct {
		name string
		m    wire.Message
		want error
	}{
		{"route of 256 bytes", wire.Message{Type: wire.Request, ID: 1, Route: long}, wire.ErrTooLarge},
		{"push route of 256 bytes", wire.Message{Type: wire.Push, Route: long}, wire.ErrTooLarge},
		{"message type 4", wire.Message{Type: 4}, wire.ErrUnknownType},
		{"message type 255", wire.Message{Type: 255}, wire.ErrMalformed},
	} {
		got, err := wire.AppendMessage(dst, &tc.m)
		if !errors.Is(err, tc.want) || string(got) != "keep" {
			t.Errorf("%s: AppendMessage = %q, %v; want %v", tc.name, got, err, tc.want)
		}
		got, err = wire.AppendMessagePackage(dst, &tc.m)
		if !errors.Is(err, tc.want) || string(got) != "keep" {
			t.Errorf("%s: AppendMessagePackage = %q, %v; want %v", tc.name, got, err, tc.want)
		}
		if n := tc.m.EncodedLen(); n >= 0 {
			t.Errorf("%s: EncodedLen = %d", tc.name, n)
		}
	}
	// Fields a type does not carry are ignored: a response with a long route is fine, and so
	// is a compressed route with a long Route.
	for _, m := range []wire.Message{
		{Type: wire.Response, ID: 1, Route: long},
		{Type: wire.Push, Compressed: true, RouteCode: 9, Route: long},
		{Type: wire.Request, ID: 1, Route: long[:255]},
	} {
		if _, err := wire.AppendMessage(nil, &m); err != nil {
			t.Errorf("AppendMessage(%v, route %d bytes): %v", m.Type, len(m.Route), err)
		}
	}
	m := wire.Message{Type: wire.Response, ID: 1, Body: make([]byte, wire.MaxLength)}
	if _, err := wire.AppendMessagePackage(nil, &m); !errors.Is(err, wire.ErrTooLarge) {
		t.Errorf("AppendMessagePackage of an oversized message: %v", err)
	}
}

func TestAppendMessageIgnoresUncarriedFields(t *testing.T) {
	for _, tc := range []struct {
		m    wire.Message
		want string
	}{
		{wire.Message{Type: wire.Response, ID: 2, Route: "x", RouteCode: 7, Body: []byte("b")}, "04 02 62"},
		{wire.Message{Type: wire.Notify, ID: 2, Route: "x", RouteCode: 7}, "02 01 78"},
		{wire.Message{Type: wire.Push, ID: 2, Route: "x", RouteCode: 7, Compressed: true}, "07 00 07"},
	} {
		got, err := wire.AppendMessage(nil, &tc.m)
		if err != nil || !bytes.Equal(got, hexs(t, tc.want)) {
			t.Errorf("AppendMessage(%+v) = % x, %v; want %s", tc.m, got, err, tc.want)
		}
	}
}

// randomMessage returns a valid message whose fields not carried by its type are zero, so
// that it survives an encode/decode round trip unchanged.
func randomMessage(r *rand.Rand) wire.Message {
	m := wire.Message{Type: wire.MessageType(r.IntN(4)), Error: r.IntN(4) == 0, Gzip: r.IntN(8) == 0}
	if m.Type.HasID() {
		switch r.IntN(3) {
		case 0:
			m.ID = uint64(r.IntN(300))
		case 1:
			m.ID = uint64(r.Int32())
		default:
			m.ID = r.Uint64() >> r.IntN(64)
		}
	}
	if m.Type.HasRoute() {
		if r.IntN(2) == 0 {
			m.Compressed = true
			m.RouteCode = uint16(r.Uint32())
		} else {
			route := make([]byte, r.IntN(256))
			for i := range route {
				route[i] = byte(r.Uint32())
			}
			m.Route = string(route)
		}
	} else if r.IntN(8) == 0 {
		m.Compressed = true // reported and reproduced for responses
	}
	m.Body = make([]byte, r.IntN(64))
	for i := range m.Body {
		m.Body[i] = byte(r.Uint32())
	}
	return m
}

func TestMessageRoundTrip(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	buf := make([]byte, 0, 512)
	for i := 0; i < 20000; i++ {
		m := randomMessage(r)
		prefix := []byte{0xde, 0xad}
		enc, err := wire.AppendMessage(append(buf[:0], prefix...), &m)
		if err != nil {
			t.Fatalf("AppendMessage(%+v): %v", m, err)
		}
		if !bytes.Equal(enc[:2], prefix) || len(enc)-2 != m.EncodedLen() {
			t.Fatalf("prefix clobbered or EncodedLen %d != %d", m.EncodedLen(), len(enc)-2)
		}
		got, err := wire.DecodeMessage(enc[2:])
		if err != nil {
			t.Fatalf("DecodeMessage(% x): %v", enc[2:], err)
		}
		if !messagesEqual(got, m) {
			t.Fatalf("round trip:\n got %+v\nwant %+v", got, m)
		}
		// Every strict prefix is an error or the same message with a shorter body: never a
		// panic, never a different header. (Checked on a sample: it is quadratic.)
		if i%16 != 0 {
			continue
		}
		for cut := 0; cut < len(enc)-2; cut++ {
			p, err := wire.DecodeMessage(enc[2 : 2+cut])
			if err == nil && (p.Type != m.Type || p.ID != m.ID || p.Route != m.Route || p.RouteCode != m.RouteCode) {
				t.Fatalf("prefix %d of % x decoded as %+v", cut, enc[2:], p)
			}
		}
	}
}

func TestMessageRoundTripQuick(t *testing.T) {
	f := func(typ uint8, id uint64, route string, code uint16, compressed, isErr, gz bool, body []byte) bool {
		m := wire.Message{Type: wire.MessageType(typ % 4), Compressed: compressed, Error: isErr, Gzip: gz, Body: body}
		if m.Type.HasID() {
			m.ID = id
		}
		if m.Type.HasRoute() {
			if compressed {
				m.RouteCode = code
			} else {
				m.Route = route[:min(len(route), 255)]
			}
		}
		enc, err := wire.AppendMessage(nil, &m)
		if err != nil {
			return false
		}
		got, err := wire.DecodeMessage(enc)
		return err == nil && messagesEqual(got, m)
	}
	if err := quick.Check(f, &quick.Config{MaxCount: 5000}); err != nil {
		t.Error(err)
	}
}

func TestVarintRoundTrip(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 4))
	for i := 0; i < 100000; i++ {
		v := r.Uint64() >> r.IntN(64)
		enc := wire.AppendVarint(nil, v)
		got, n, err := wire.ReadVarint(enc)
		if err != nil || got != v || n != len(enc) || n != wire.VarintLen(v) {
			t.Fatalf("varint %d: % x -> %d, %d, %v", v, enc, got, n, err)
		}
	}
}
