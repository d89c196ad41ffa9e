package wire_test

import (
	"testing"

	"github.com/pomelo-go/pomelo/runtime/wire"
)

var (
	benchBody     = []byte(`{"code":200,"msg":"ok","data":{"uid":12345,"name":"ann","room":"lobby"}}`)
	benchResponse = wire.Message{Type: wire.Response, ID: 300, Body: benchBody}
	benchPush     = wire.Message{Type: wire.Push, Route: "onChat", Body: benchBody}
	benchRequest  = wire.Message{Type: wire.Request, ID: 300, Route: "chat.chatHandler.send", Body: benchBody}
	benchCompReq  = wire.Message{Type: wire.Request, ID: 300, Compressed: true, RouteCode: 4, Body: benchBody}
)

func BenchmarkAppendMessage(b *testing.B) {
	for _, bc := range []struct {
		name string
		m    *wire.Message
	}{{"response", &benchResponse}, {"push", &benchPush}, {"request", &benchRequest}} {
		b.Run(bc.name, func(b *testing.B) {
			buf := make([]byte, 0, 256)
			b.ReportAllocs()
			b.SetBytes(int64(bc.m.EncodedLen()))
			for b.Loop() {
				var err error
				if buf, err = wire.AppendMessage(buf[:0], bc.m); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

func BenchmarkAppendMessagePackage(b *testing.B) {
	buf := make([]byte, 0, 256)
	b.ReportAllocs()
	for b.Loop() {
		var err error
		if buf, err = wire.AppendMessagePackage(buf[:0], &benchResponse); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkDecodeMessage(b *testing.B) {
	for _, bc := range []struct {
		name string
		m    *wire.Message
	}{{"compressed request", &benchCompReq}, {"response", &benchResponse}, {"request", &benchRequest}} {
		enc, _ := wire.AppendMessage(nil, bc.m)
		b.Run(bc.name, func(b *testing.B) {
			b.ReportAllocs()
			b.SetBytes(int64(len(enc)))
			for b.Loop() {
				if _, err := wire.DecodeMessage(enc); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// benchFrame is a frame of 8 packages, as a server might batch them.
func benchFrame() []byte {
	var frame []byte
	for i := 0; i < 4; i++ {
		frame, _ = wire.AppendMessagePackage(frame, &benchResponse)
		frame, _ = wire.AppendMessagePackage(frame, &benchPush)
	}
	return frame
}

func BenchmarkSplitPackages(b *testing.B) {
	frame := benchFrame()
	n := 0
	fn := func(t wire.PackageType, body []byte) error {
		n += len(body)
		return nil
	}
	b.ReportAllocs()
	b.SetBytes(int64(len(frame)))
	for b.Loop() {
		if err := wire.SplitPackages(frame, 0, fn); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkAppendPackage(b *testing.B) {
	body, _ := wire.AppendMessage(nil, &benchResponse)
	buf := make([]byte, 0, 256)
	b.ReportAllocs()
	b.SetBytes(int64(wire.HeaderLen + len(body)))
	for b.Loop() {
		var err error
		if buf, err = wire.AppendPackage(buf[:0], wire.TypeData, body); err != nil {
			b.Fatal(err)
		}
	}
}

// repeatReader replays a byte slice forever.
type repeatReader struct {
	data []byte
	off  int
}

func (r *repeatReader) Read(p []byte) (int, error) {
	n := 0
	for n < len(p) {
		c := copy(p[n:], r.data[r.off:])
		n += c
		r.off = (r.off + c) % len(r.data)
	}
	return n, nil
}

func BenchmarkReader(b *testing.B) {
	frame := benchFrame()
	rd := wire.NewReader(&repeatReader{data: frame}, 64<<10)
	pkgLen := int64(len(frame) / 8)
	b.ReportAllocs()
	b.SetBytes(pkgLen)
	for b.Loop() {
		if _, _, err := rd.Next(); err != nil {
			b.Fatal(err)
		}
	}
}
