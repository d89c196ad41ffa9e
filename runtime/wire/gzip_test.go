package wire_test

import (
	"bytes"
	"compress/gzip"
	"errors"
	goruntime "runtime"
	"testing"

	"github.com/pomelo-go/pomelo/runtime/wire"
)

// gz compresses b.
func gz(t testing.TB, b []byte) []byte {
	t.Helper()
	var buf bytes.Buffer
	zw := gzip.NewWriter(&buf)
	if _, err := zw.Write(b); err != nil {
		t.Fatal(err)
	}
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func TestGunzipRestoresBodyWithinLimit(t *testing.T) {
	body := []byte(`{"hello":"world","n":42}`)
	for _, limit := range []int{len(body), 1 << 10, 0} {
		got, err := wire.Gunzip(gz(t, body), limit)
		if err != nil || !bytes.Equal(got, body) {
			t.Fatalf("limit %d: Gunzip = %q, %v; want %q", limit, got, err, body)
		}
	}
}

func TestGunzipRefusesBombBeyondLimit(t *testing.T) {
	bomb := gz(t, make([]byte, 8<<20)) // 8 MiB of zeros in a few KiB
	const limit = 1000
	got, err := wire.Gunzip(bomb, limit)
	if !errors.Is(err, wire.ErrTooLarge) || got != nil {
		t.Fatalf("Gunzip(bomb, %d) = %d bytes, %v; want ErrTooLarge", limit, len(got), err)
	}
	if _, err := wire.Gunzip(gz(t, make([]byte, limit+1)), limit); !errors.Is(err, wire.ErrTooLarge) {
		t.Fatalf("one byte over the limit: %v, want ErrTooLarge", err)
	}
	// The output buffer stops at the limit: allocation is bounded by the limit plus the
	// decompressor's own state, far below the 8 MiB the bomb expands to.
	var before, after goruntime.MemStats
	goruntime.ReadMemStats(&before)
	wire.Gunzip(bomb, limit)
	goruntime.ReadMemStats(&after)
	if n := after.TotalAlloc - before.TotalAlloc; n > 1<<20 {
		t.Fatalf("Gunzip of a bomb with limit %d allocated %d bytes", limit, n)
	}
}

func TestGunzipRejectsWhatIsNotGzip(t *testing.T) {
	good := gz(t, []byte("hello"))
	for name, in := range map[string][]byte{
		"empty":     nil,
		"plain":     []byte(`{"hello":"world"}`),
		"truncated": good[:len(good)-3],
		"trailing":  append(append([]byte(nil), good...), "junk"...),
		"corrupt":   append(append([]byte(nil), good[:12]...), bytes.Repeat([]byte{0xff}, 20)...),
	} {
		if _, err := wire.Gunzip(in, 1<<10); !errors.Is(err, wire.ErrMalformed) {
			t.Errorf("%s: Gunzip error %v, want ErrMalformed", name, err)
		}
	}
}

func FuzzGunzip(f *testing.F) {
	f.Add(gz(f, []byte(`{"hello":"world"}`)), 64)
	f.Add(gz(f, make([]byte, 1<<16)), 100)
	f.Add([]byte("\x1f\x8b"), 10)
	f.Fuzz(func(t *testing.T, in []byte, limit int) {
		ceil := limit
		if ceil <= 0 || ceil > wire.MaxLength {
			ceil = wire.MaxLength
		}
		out, err := wire.Gunzip(in, limit)
		if err != nil {
			if !errors.Is(err, wire.ErrTooLarge) && !errors.Is(err, wire.ErrMalformed) {
				t.Fatalf("error %v wraps neither ErrTooLarge nor ErrMalformed", err)
			}
			return
		}
		if len(out) > ceil {
			t.Fatalf("%d bytes out, limit %d", len(out), ceil)
		}
		// What decompressed recompresses and decompresses to itself.
		again, err := wire.Gunzip(gz(t, out), limit)
		if err != nil || !bytes.Equal(again, out) {
			t.Fatalf("round trip: %v", err)
		}
	})
}
