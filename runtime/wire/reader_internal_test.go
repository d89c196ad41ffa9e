package wire

import (
	"bytes"
	"errors"
	"testing"
)

func TestReaderBufferBounded(t *testing.T) {
	const maxBody = 64 << 10
	// A valid package of exactly maxBody, then a header claiming 16 MiB-1.
	stream, err := AppendPackage(nil, TypeData, make([]byte, maxBody))
	if err != nil {
		t.Fatal(err)
	}
	stream = append(stream, byte(TypeData), 0xff, 0xff, 0xff)
	stream = append(stream, make([]byte, 1<<20)...)
	rd := NewReader(bytes.NewReader(stream), maxBody)
	if _, body, err := rd.Next(); err != nil || len(body) != maxBody {
		t.Fatalf("first package: %d bytes, %v", len(body), err)
	}
	if _, _, err := rd.Next(); !errors.Is(err, ErrTooLarge) {
		t.Fatalf("second package: %v", err)
	}
	if c := cap(rd.buf); c > HeaderLen+maxBody {
		t.Errorf("buffer grew to %d bytes, limit %d", c, HeaderLen+maxBody)
	}

	// Small packages keep the buffer small.
	rd = NewReader(bytes.NewReader(bytes.Repeat(HeartbeatPackage, 10000)), 0)
	for {
		if _, _, err := rd.Next(); err != nil {
			break
		}
	}
	if c := cap(rd.buf); c > initialReaderBuf {
		t.Errorf("buffer grew to %d bytes for empty packages", c)
	}
}

func TestReaderGrowsWithData(t *testing.T) {
	// A header claiming 16 MiB-1 under the default limit, followed by only 100 bytes: the
	// buffer must not jump to the claimed size.
	stream := append([]byte{byte(TypeData), 0xff, 0xff, 0xff}, make([]byte, 100)...)
	rd := NewReader(bytes.NewReader(stream), 0)
	if _, _, err := rd.Next(); !errors.Is(err, ErrTruncated) {
		t.Fatalf("err = %v, want ErrTruncated", err)
	}
	if c := cap(rd.buf); c > initialReaderBuf {
		t.Errorf("buffer grew to %d bytes for 104 bytes of input", c)
	}
	// Growth is by doubling, up to what is needed.
	big, _ := AppendPackage(nil, TypeData, make([]byte, 100000))
	rd = NewReader(bytes.NewReader(big), 0)
	if _, body, err := rd.Next(); err != nil || len(body) != 100000 {
		t.Fatalf("big package: %d bytes, %v", len(body), err)
	}
	if c := cap(rd.buf); c > 2*len(big) {
		t.Errorf("buffer of %d bytes for a %d-byte package", c, len(big))
	}
}

// NewReaderSize starts with the size asked for and still reads larger
// packages, growing only to fit them.
func TestReaderSizeStartsSmallAndGrowsForLargerPackages(t *testing.T) {
	var stream []byte
	for range 100 {
		stream = append(stream, HeartbeatPackage...)
	}
	stream, _ = AppendPackage(stream, TypeData, bytes.Repeat([]byte("x"), 3000))
	rd := NewReaderSize(bytes.NewReader(stream), 0, 64)
	for range 100 {
		if typ, _, err := rd.Next(); err != nil || typ != TypeHeartbeat {
			t.Fatalf("heartbeat: %s, %v", typ, err)
		}
	}
	if c := cap(rd.buf); c != 64 {
		t.Errorf("buffer of %d bytes after heartbeats, want 64", c)
	}
	if _, body, err := rd.Next(); err != nil || len(body) != 3000 {
		t.Fatalf("large package: %d bytes, %v", len(body), err)
	}
	if c := cap(rd.buf); c < HeaderLen+3000 || c > 2*(HeaderLen+3000) {
		t.Errorf("buffer of %d bytes for a %d-byte package", c, HeaderLen+3000)
	}
}
