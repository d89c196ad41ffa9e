package wire_test

import (
	"bytes"
	"errors"
	"io"
	"math/rand/v2"
	"runtime"
	"testing"
	"testing/iotest"

	"github.com/pomelo-go/pomelo/runtime/wire"
)

type pkg struct {
	t    wire.PackageType
	body string
}

// randomStream returns a stream of n valid packages and the packages themselves.
func randomStream(r *rand.Rand, n, maxBody int) ([]byte, []pkg) {
	var stream []byte
	var pkgs []pkg
	for range n {
		t := wire.PackageType(1 + r.IntN(5))
		size := r.IntN(64)
		if r.IntN(10) == 0 {
			size = r.IntN(maxBody + 1)
		}
		body := make([]byte, size)
		for i := range body {
			body[i] = byte(r.Uint32())
		}
		stream, _ = wire.AppendPackage(stream, t, body)
		pkgs = append(pkgs, pkg{t, string(body)})
	}
	return stream, pkgs
}

// readAll reads packages until an error and returns them with the error.
func readAll(rd *wire.Reader) ([]pkg, error) {
	var got []pkg
	for {
		t, body, err := rd.Next()
		if err != nil {
			return got, err
		}
		got = append(got, pkg{t, string(body)})
	}
}

func TestReaderStream(t *testing.T) {
	r := rand.New(rand.NewPCG(5, 6))
	const maxBody = 20000
	stream, want := randomStream(r, 300, maxBody)
	for name, wrap := range map[string]func(io.Reader) io.Reader{
		"whole":    func(r io.Reader) io.Reader { return r },
		"one byte": iotest.OneByteReader,
		"half":     iotest.HalfReader,
		"data+err": iotest.DataErrReader,
	} {
		t.Run(name, func(t *testing.T) {
			got, err := readAll(wire.NewReader(wrap(bytes.NewReader(stream)), maxBody))
			if err != io.EOF {
				t.Fatalf("final error %v, want io.EOF", err)
			}
			if len(got) != len(want) {
				t.Fatalf("%d packages, want %d", len(got), len(want))
			}
			for i := range want {
				if got[i] != want[i] {
					t.Fatalf("package %d differs: type %v len %d, want type %v len %d",
						i, got[i].t, len(got[i].body), want[i].t, len(want[i].body))
				}
			}
		})
	}
}

func TestReaderProtocolExamples(t *testing.T) {
	var stream []byte
	stream = append(stream, hexs(t, "01 00 00 55", "="+jsHandshake)...)
	stream = append(stream, wire.HandshakeAckPackage...)
	stream = append(stream, wire.HeartbeatPackage...)
	for _, ex := range protocolExamples(t) {
		stream = append(stream, ex.pkg...)
	}
	rd := wire.NewReader(iotest.OneByteReader(bytes.NewReader(stream)), 0)
	for _, want := range []wire.PackageType{wire.TypeHandshake, wire.TypeHandshakeAck, wire.TypeHeartbeat} {
		if pt, _, err := rd.Next(); pt != want || err != nil {
			t.Fatalf("Next = %v, %v; want %v", pt, err, want)
		}
	}
	for _, ex := range protocolExamples(t) {
		pt, body, err := rd.Next()
		if err != nil || pt != wire.TypeData {
			t.Fatalf("Next = %v, %v", pt, err)
		}
		m, err := wire.DecodeMessage(body)
		if err != nil || !messagesEqual(m, ex.msg) {
			t.Fatalf("%s: %+v, %v", ex.name, m, err)
		}
	}
	if _, _, err := rd.Next(); err != io.EOF {
		t.Fatalf("end: %v", err)
	}
}

func TestReaderErrors(t *testing.T) {
	for _, tc := range []struct {
		name    string
		stream  []byte
		maxBody int
		n       int // packages before the error
		want    []error
	}{
		{"empty", nil, 0, 0, []error{io.EOF}},
		{"partial header", hexs(t, "03 00"), 0, 0, []error{wire.ErrTruncated, io.ErrUnexpectedEOF}},
		{"partial body", hexs(t, "03 00 00 00 04 00 00 05 00 01"), 0, 1, []error{wire.ErrTruncated, io.ErrUnexpectedEOF}},
		{"over maxBody", hexs(t, "03 00 00 00 04 00 01 00"), 255, 1, []error{wire.ErrTooLarge}},
		{"over maxBody before type", hexs(t, "09 00 01 00"), 255, 0, []error{wire.ErrTooLarge}},
		{"unknown type", hexs(t, "03 00 00 00 07 00 00 00"), 0, 1, []error{wire.ErrUnknownType}},
		{"garbage", []byte("GET / HTTP/1.1\r\nHost: x\r\n\r\n"), 0, 0, []error{wire.ErrUnknownType}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rd := wire.NewReader(bytes.NewReader(tc.stream), tc.maxBody)
			got, err := readAll(rd)
			if len(got) != tc.n {
				t.Errorf("%d packages, want %d", len(got), tc.n)
			}
			for _, w := range tc.want {
				if !errors.Is(err, w) {
					t.Errorf("err = %v, want %v", err, w)
				}
			}
			// The error is final.
			if _, _, err2 := rd.Next(); err2 != err {
				t.Errorf("second call: %v, first %v", err2, err)
			}
		})
	}
}

// claimReader yields a header claiming a 16 MiB-1 body, then endless zeros, and counts what
// it hands out.
type claimReader struct{ n int }

func (c *claimReader) Read(p []byte) (int, error) {
	hdr := []byte{byte(wire.TypeData), 0xff, 0xff, 0xff}
	for i := range p {
		if c.n < len(hdr) {
			p[i] = hdr[c.n]
		} else {
			p[i] = 0
		}
		c.n++
	}
	return len(p), nil
}

func TestReaderRejectsHugeClaimWithoutAllocating(t *testing.T) {
	const maxBody = 64 << 10
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	src := &claimReader{}
	rd := wire.NewReader(src, maxBody)
	_, _, err := rd.Next()
	runtime.ReadMemStats(&after)
	if !errors.Is(err, wire.ErrTooLarge) {
		t.Fatalf("err = %v, want ErrTooLarge", err)
	}
	if alloc := after.TotalAlloc - before.TotalAlloc; alloc > 1<<20 {
		t.Errorf("allocated %d bytes for a rejected package", alloc)
	}
	if src.n > maxBody+wire.HeaderLen {
		t.Errorf("read %d bytes from the stream", src.n)
	}
}

// flakyReader returns an error once, at a given offset, then carries on.
type flakyReader struct {
	r      io.Reader
	failAt int
	off    int
	failed bool
}

var errTimeout = errors.New("timeout")

func (f *flakyReader) Read(p []byte) (int, error) {
	if !f.failed && f.off == f.failAt {
		f.failed = true
		return 0, errTimeout
	}
	if !f.failed && f.off+len(p) > f.failAt {
		p = p[:f.failAt-f.off]
	}
	n, err := f.r.Read(p)
	f.off += n
	return n, err
}

func TestReaderResumesAfterTransientError(t *testing.T) {
	stream := hexs(t, "03 00 00 00 04 00 00 05 06 01 61 62 63 05 00 00 00")
	for failAt := 0; failAt <= len(stream); failAt++ {
		rd := wire.NewReader(&flakyReader{r: bytes.NewReader(stream), failAt: failAt}, 0)
		var got []pkg
		sawErr := false
		for {
			pt, body, err := rd.Next()
			if errors.Is(err, errTimeout) {
				if sawErr {
					t.Fatalf("failAt %d: timeout twice", failAt)
				}
				sawErr = true
				continue
			}
			if err == io.EOF {
				break
			}
			if err != nil {
				t.Fatalf("failAt %d: %v", failAt, err)
			}
			got = append(got, pkg{pt, string(body)})
		}
		want := []pkg{{wire.TypeHeartbeat, ""}, {wire.TypeData, "\x06\x01abc"}, {wire.TypeKick, ""}}
		if len(got) != len(want) || got[0] != want[0] || got[1] != want[1] || got[2] != want[2] {
			t.Errorf("failAt %d: got %v", failAt, got)
		}
		if !sawErr {
			t.Errorf("failAt %d: the error was swallowed", failAt)
		}
	}
}

type zeroReader struct{}

func (zeroReader) Read([]byte) (int, error) { return 0, nil }

func TestReaderNoProgress(t *testing.T) {
	if _, _, err := wire.NewReader(zeroReader{}, 0).Next(); err != io.ErrNoProgress {
		t.Errorf("err = %v, want io.ErrNoProgress", err)
	}
}

func TestReaderBodyValidUntilNext(t *testing.T) {
	stream := hexs(t, "04 00 00 02 61 62 04 00 00 02 63 64")
	rd := wire.NewReader(bytes.NewReader(stream), 0)
	_, b1, _ := rd.Next()
	if string(b1) != "ab" {
		t.Fatalf("first body %q", b1)
	}
	if cap(b1) != 2 {
		t.Errorf("body capacity %d", cap(b1))
	}
	_, b2, _ := rd.Next()
	if string(b2) != "cd" {
		t.Fatalf("second body %q", b2)
	}
}
