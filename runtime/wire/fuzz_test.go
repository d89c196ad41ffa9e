package wire_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"testing"

	"github.com/pomelo-go/pomelo/runtime/wire"
)

// seedPackages adds the protocol examples as whole packages.
func seedPackages(f *testing.F) [][]byte {
	seeds := [][]byte{
		nil,
		hexs(f, "01 00 00 55", "="+jsHandshake),
		wire.HandshakeAckPackage,
		wire.HeartbeatPackage,
		hexs(f, "05 00 00 14", `={"reason":"relogin"}`),
		hexs(f, "04 ff ff ff"),
		hexs(f, "09 00 00 00"),
		hexs(f, "03 00 00"),
		[]byte("GET / HTTP/1.1\r\n\r\n"),
	}
	var frame []byte
	for _, ex := range protocolExamples(f) {
		seeds = append(seeds, ex.pkg)
		frame = append(frame, ex.pkg...)
	}
	return append(seeds, frame)
}

func FuzzSplitPackages(f *testing.F) {
	for _, s := range seedPackages(f) {
		f.Add(s, 0)
		f.Add(s, 16)
	}
	f.Fuzz(func(t *testing.T, buf []byte, maxBody int) {
		limit := maxBody
		if limit <= 0 || limit > wire.MaxLength {
			limit = wire.MaxLength
		}
		var rebuilt []byte
		err := wire.SplitPackages(buf, maxBody, func(pt wire.PackageType, body []byte) error {
			if len(body) > limit {
				t.Fatalf("body of %d bytes, limit %d", len(body), limit)
			}
			var err error
			rebuilt, err = wire.AppendPackage(rebuilt, pt, body)
			if err != nil {
				t.Fatalf("valid package does not re-encode: %v", err)
			}
			return nil
		})
		// What was delivered is exactly a prefix of the input, and all of it on success.
		if !bytes.HasPrefix(buf, rebuilt) {
			t.Fatalf("re-encoded packages are not a prefix of the input")
		}
		if err == nil && len(rebuilt) != len(buf) {
			t.Fatalf("success, but only %d of %d bytes re-encoded", len(rebuilt), len(buf))
		}
		if err != nil && !errors.Is(err, wire.ErrTruncated) && !errors.Is(err, wire.ErrTooLarge) && !errors.Is(err, wire.ErrUnknownType) {
			t.Fatalf("unexpected error %v", err)
		}
	})
}

// chunkReader returns at most size bytes per Read.
type chunkReader struct {
	r    io.Reader
	size int
}

func (c *chunkReader) Read(p []byte) (int, error) {
	if len(p) > c.size {
		p = p[:c.size]
	}
	return c.r.Read(p)
}

func FuzzReader(f *testing.F) {
	for _, s := range seedPackages(f) {
		f.Add(s, 0, uint8(0))
		f.Add(s, 16, uint8(3))
	}
	f.Fuzz(func(t *testing.T, stream []byte, maxBody int, chunk uint8) {
		// The Reader must agree with SplitPackages on the same bytes, however they arrive.
		var want []pkg
		wantErr := wire.SplitPackages(stream, maxBody, func(pt wire.PackageType, body []byte) error {
			want = append(want, pkg{pt, string(body)})
			return nil
		})
		rd := wire.NewReader(&chunkReader{bytes.NewReader(stream), int(chunk) + 1}, maxBody)
		got, err := readAll(rd)
		if len(got) != len(want) {
			t.Fatalf("Reader got %d packages, SplitPackages %d", len(got), len(want))
		}
		for i := range want {
			if got[i] != want[i] {
				t.Fatalf("package %d differs", i)
			}
		}
		switch {
		case wantErr == nil:
			if err != io.EOF {
				t.Fatalf("Reader error %v at the end of a valid stream", err)
			}
		default:
			for _, sentinel := range []error{wire.ErrTruncated, wire.ErrTooLarge, wire.ErrUnknownType} {
				if errors.Is(wantErr, sentinel) != errors.Is(err, sentinel) {
					t.Fatalf("Reader error %v, SplitPackages error %v", err, wantErr)
				}
			}
		}
	})
}

func FuzzDecodeMessage(f *testing.F) {
	for _, ex := range protocolExamples(f) {
		f.Add(ex.pkg[wire.HeaderLen:])
	}
	for _, s := range []string{
		"", "00", "08", "00 80", "00 ff ff ff ff ff ff ff ff ff 02", "02 05 61 62", "03", "03 00",
		"c6 02 68 69", "05 01 7b 7d", "00 80 80 00 01 61",
	} {
		f.Add(hexs(f, s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		m, err := wire.DecodeMessage(b)
		if err != nil {
			if !errors.Is(err, wire.ErrMalformed) {
				t.Fatalf("error does not wrap ErrMalformed: %v", err)
			}
			return
		}
		if len(m.Body) > 0 && &m.Body[len(m.Body)-1] != &b[len(b)-1] {
			t.Fatal("Body does not alias the end of the input")
		}
		enc, err := wire.AppendMessage(nil, &m)
		if err != nil {
			t.Fatalf("decoded message does not re-encode: %+v: %v", m, err)
		}
		if len(enc) != m.EncodedLen() {
			t.Fatalf("EncodedLen %d, encoded %d", m.EncodedLen(), len(enc))
		}
		m2, err := wire.DecodeMessage(enc)
		if err != nil || !messagesEqual(m, m2) {
			t.Fatalf("re-encoded message decodes differently: %+v vs %+v, %v", m, m2, err)
		}
		// Re-encoding can only shorten the input (a non-minimal varint id) or clear the unused
		// flag bits 6 and 7; a canonical input comes back byte for byte.
		if len(enc) > len(b) {
			t.Fatalf("re-encoding grew %d -> %d bytes", len(b), len(enc))
		}
		if b[0]&0xc0 == 0 && len(enc) == len(b) && !bytes.Equal(enc, b) {
			t.Fatalf("canonical input % x re-encoded as % x", b, enc)
		}
		if b[0]&0xc0 != 0 && len(enc) == len(b) && (enc[0] != b[0]&^0xc0 || !bytes.Equal(enc[1:], b[1:])) {
			t.Fatalf("input % x re-encoded as % x", b, enc)
		}
	})
}

func FuzzParseHandshake(f *testing.F) {
	for _, s := range []string{
		jsHandshake,
		`{"sys":{"type":"go","version":"1.2.0","dictVersion":"0123456789abcdef","serializer":"protobuf","protoVersion":"abc"}}`,
		`{"sys":{"platform":"mac","libVersion":"0.3.5-release","type":"go-websocket","version":"0.3.5"},"user":{"age":30}}`,
		`{"sys":{"type":null,"version":1.5,"dictVersion":-3,"rsa":null},"user":null}`,
		`{"sys":null}`, `{"sys":{"type":true}}`, "", "null", "[]", "{}",
		`{"sys":{"type":"go-client","resume":{}}}`, `{"sys":{"resume":{"token":"AAAAAAAAAAAAAAAAAAAAAA","received":42}}}`,
		`{"sys":{"resume":null}}`, `{"sys":{"resume":{"token":5}}}`, `{"sys":{"resume":{"received":-1}}}`,
		`{"sys":{"resume":{"received":1.5}}}`, `{"sys":{"resume":[]}}`, `{"sys":{"resume":{"token":null,"received":null}}}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		h, err := wire.ParseHandshake(body)
		if err != nil {
			if h != nil || !errors.Is(err, wire.ErrMalformed) {
				t.Fatalf("ParseHandshake = %v, %v", h, err)
			}
			return
		}
		if h.Sys == nil {
			t.Fatal("nil Sys without an error")
		}
		if !json.Valid(h.Sys.Raw) || h.User != nil && !json.Valid(h.User) ||
			h.Sys.RSA != nil && !json.Valid(h.Sys.RSA) || h.Sys.ProtoVersion != nil && !json.Valid(h.Sys.ProtoVersion) {
			t.Fatalf("invalid raw JSON kept: %+v", h)
		}
		// What we parsed encodes back to a handshake that parses to the same thing.
		again, err := json.Marshal(h)
		if err != nil {
			t.Fatalf("Marshal: %v", err)
		}
		h2, err := wire.ParseHandshake(again)
		if err != nil {
			t.Fatalf("re-encoded handshake %s: %v", again, err)
		}
		a, b := h.Sys, h2.Sys
		if a.Type != b.Type || a.Version != b.Version || a.DictVersion != b.DictVersion || a.Serializer != b.Serializer ||
			(a.RSA == nil) != (b.RSA == nil) || (a.ProtoVersion == nil) != (b.ProtoVersion == nil) || (h.User == nil) != (h2.User == nil) ||
			(a.Resume == nil) != (b.Resume == nil) || a.Resume != nil && *a.Resume != *b.Resume {
			t.Fatalf("round trip: %+v / %s\n       vs %+v / %s", *a, h.User, *b, h2.User)
		}
	})
}

func FuzzParseKick(f *testing.F) {
	for _, s := range []string{
		`{"reason":"relogin"}`, `{"reason":"kick"}`, "", "{}", `{"reason":null}`, `{"reason":5}`,
		`{"reason":"\u00e9\ud83c\udf89\n"}`, "null", "[]", "x",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		reason, err := wire.ParseKick(body)
		if err != nil {
			if reason != "" || !errors.Is(err, wire.ErrMalformed) {
				t.Fatalf("ParseKick = %q, %v", reason, err)
			}
			return
		}
		kb := wire.KickBody(reason)
		if !json.Valid(kb) {
			t.Fatalf("KickBody(%q) = %s: invalid JSON", reason, kb)
		}
		again, err := wire.ParseKick(kb)
		if err != nil || again != reason {
			t.Fatalf("ParseKick(KickBody(%q)) = %q, %v", reason, again, err)
		}
	})
}
