package server_test

// A raw Pomelo client for benchmarks: it pre-encodes its request once and
// reads replies into reused buffers, so that it allocates nothing per round
// trip and the allocations a benchmark reports are the server's. It speaks
// raw TCP, or WebSocket with its own minimal framing (no compression).

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	goruntime "runtime"
	"sync"
	"syscall"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	testingv1 "github.com/pomelo-go/pomelo/gen/pomelo/testing/v1"
	"github.com/pomelo-go/pomelo/internal/metrics"
	"github.com/pomelo-go/pomelo/internal/server"
	"github.com/pomelo-go/pomelo/runtime"
	"github.com/pomelo-go/pomelo/runtime/connector"
	"github.com/pomelo-go/pomelo/runtime/wire"
)

// benchHeartbeat keeps benchmark connections alive for the whole run: raw
// clients never send heartbeats, and the Go client's are then rare.
const benchHeartbeat = 10 * time.Minute

// benchEcho answers Echo with its text and nothing else.
type benchEcho struct {
	testingv1.UnimplementedEchoHandlerServer
}

func (benchEcho) Echo(_ context.Context, _ runtime.Session, r *testingv1.EchoRequest) (*testingv1.EchoResponse, error) {
	return &testingv1.EchoResponse{Code: 200, Text: r.Text}, nil
}

// benchStartServer starts an "echo" frontend with WebSocket and TCP
// listeners, stopped when the benchmark ends.
func benchStartServer(b *testing.B) *server.Server { return benchStartServerWith(b, nil) }

// benchStartServerWith starts the echo frontend recording into m (nil for
// no metrics).
func benchStartServerWith(b *testing.B, m *metrics.Server) *server.Server {
	b.Helper()
	s, err := server.New(server.Config{ID: "bench-echo-1", Type: "echo", Frontend: true,
		WSAddr: "127.0.0.1:0", TCPAddr: "127.0.0.1:0",
		Connector: connector.Config{Heartbeat: benchHeartbeat}, Metrics: m})
	if err != nil {
		b.Fatal(err)
	}
	if err := testingv1.RegisterEchoHandlerServer(s, benchEcho{}); err != nil {
		b.Fatal(err)
	}
	if err := s.Start(); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		s.Shutdown(ctx, "")
	})
	return s
}

// benchCPU returns the process's CPU time (user + system).
func benchCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// benchReportCPU reports the CPU time used since start per iteration.
func benchReportCPU(b *testing.B, start time.Duration) {
	if b.N > 0 {
		b.ReportMetric(float64(benchCPU()-start)/float64(b.N), "cpu-ns/op")
	}
}

// benchParallelism sets RunParallel to run about n goroutines and returns
// how many it will run.
func benchParallelism(b *testing.B, n int) int {
	procs := goruntime.GOMAXPROCS(0)
	p := max(1, (n+procs-1)/procs)
	b.SetParallelism(p)
	return p * procs
}

// benchRawConn is one raw client connection.
type benchRawConn struct {
	nc    net.Conn
	ws    bool
	rd    *wire.Reader  // TCP
	br    *bufio.Reader // WebSocket
	hdr   [14]byte
	frame []byte // WebSocket: payload of the last frame
	pkgs  []byte // WebSocket: packages of the frame not yet returned
	codes map[string]uint16
	req   []byte // the pre-encoded request, framed for the transport
}

// benchDialRawErr connects to a frontend and completes the Pomelo
// handshake with the named serializer ("json" or "protobuf").
func benchDialRawErr(addr net.Addr, ws bool, ser string) (*benchRawConn, error) {
	nc, err := net.DialTimeout("tcp", addr.String(), 5*time.Second)
	if err != nil {
		return nil, err
	}
	c := &benchRawConn{nc: nc, ws: ws}
	fail := func(err error) (*benchRawConn, error) {
		nc.Close()
		return nil, err
	}
	nc.SetDeadline(time.Now().Add(10 * time.Second))
	if ws {
		c.br = bufio.NewReaderSize(nc, 64<<10)
		req := "GET / HTTP/1.1\r\nHost: " + addr.String() + "\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n" +
			"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
		if _, err := io.WriteString(nc, req); err != nil {
			return fail(err)
		}
		resp, err := http.ReadResponse(c.br, nil)
		if err != nil {
			return fail(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusSwitchingProtocols {
			return fail(fmt.Errorf("websocket upgrade: %s", resp.Status))
		}
	} else {
		c.rd = wire.NewReader(nc, 0)
	}
	hs, _ := wire.AppendPackage(nil, wire.TypeHandshake, fmt.Appendf(nil,
		`{"sys":{"type":"bench-raw","version":"0.0.1","protoVersion":0,"serializer":%q,"rsa":{}},"user":{}}`, ser))
	if _, err := nc.Write(c.frameOf(hs)); err != nil {
		return fail(err)
	}
	typ, body, err := c.next()
	if err != nil {
		return fail(err)
	}
	var reply wire.HandshakeResponse
	if typ != wire.TypeHandshake || json.Unmarshal(body, &reply) != nil || reply.Code != wire.CodeOK {
		return fail(fmt.Errorf("handshake reply %v %q", typ, body))
	}
	if reply.Sys != nil && reply.Sys.UseDict {
		c.codes = reply.Sys.Dict
	}
	if _, err := nc.Write(c.frameOf(wire.HandshakeAckPackage)); err != nil {
		return fail(err)
	}
	if typ, _, err := c.next(); err != nil || typ != wire.TypeHeartbeat {
		return fail(fmt.Errorf("no heartbeat after the ack: %v %v", typ, err))
	}
	nc.SetDeadline(time.Time{})
	return c, nil
}

// frameOf returns pkgs framed for the transport: as they are on TCP, as one
// masked binary frame on WebSocket.
func (c *benchRawConn) frameOf(pkgs []byte) []byte {
	if !c.ws {
		return pkgs
	}
	f := []byte{0x82}
	switch n := len(pkgs); {
	case n < 126:
		f = append(f, 0x80|byte(n))
	case n < 1<<16:
		f = append(f, 0x80|126, byte(n>>8), byte(n))
	default:
		f = append(f, 0x80|127, 0, 0, 0, 0, byte(n>>24), byte(n>>16), byte(n>>8), byte(n))
	}
	key := [4]byte{0x5a, 0xa5, 0x3c, 0xc3}
	f = append(f, key[:]...)
	for i, v := range pkgs {
		f = append(f, v^key[i&3])
	}
	return f
}

// prepare pre-encodes the request the round trips send: route (compressed
// when the dictionary has it) and msg in the serializer ser.
func (c *benchRawConn) prepare(tb testing.TB, ser runtime.Serializer, route string, msg proto.Message) {
	tb.Helper()
	body, err := ser.Marshal(nil, msg)
	if err != nil {
		tb.Fatal(err)
	}
	m := wire.Message{Type: wire.Request, ID: 1, Route: route, Body: body}
	if code, ok := c.codes[route]; ok {
		m.Compressed, m.RouteCode, m.Route = true, code, ""
	}
	pkg, err := wire.AppendMessagePackage(nil, &m)
	if err != nil {
		tb.Fatal(err)
	}
	c.req = c.frameOf(pkg)
}

var errBenchUnexpected = errors.New("unexpected reply")

// roundTrip sends the prepared request and waits for its response.
func (c *benchRawConn) roundTrip() error {
	if _, err := c.nc.Write(c.req); err != nil {
		return err
	}
	for {
		typ, body, err := c.next()
		if err != nil {
			return err
		}
		if typ != wire.TypeData {
			continue
		}
		if len(body) == 0 || wire.MessageType(body[0]&0x0e>>1) != wire.Response || body[0]&wire.FlagError != 0 {
			return errBenchUnexpected
		}
		return nil
	}
}

// next returns the next package from the server; its body is valid until
// the next call.
func (c *benchRawConn) next() (wire.PackageType, []byte, error) {
	if !c.ws {
		return c.rd.Next()
	}
	for len(c.pkgs) == 0 {
		if err := c.readFrame(); err != nil {
			return 0, nil, err
		}
	}
	if len(c.pkgs) < wire.HeaderLen {
		return 0, nil, errBenchUnexpected
	}
	t, n := wire.PackageType(c.pkgs[0]), int(c.pkgs[1])<<16|int(c.pkgs[2])<<8|int(c.pkgs[3])
	if len(c.pkgs) < wire.HeaderLen+n {
		return 0, nil, errBenchUnexpected
	}
	body := c.pkgs[wire.HeaderLen : wire.HeaderLen+n]
	c.pkgs = c.pkgs[wire.HeaderLen+n:]
	return t, body, nil
}

// readFrame reads one unfragmented server frame; data frames become the
// packages next returns, control frames are skipped, a close frame is EOF.
func (c *benchRawConn) readFrame() error {
	if _, err := io.ReadFull(c.br, c.hdr[:2]); err != nil {
		return err
	}
	fin, op := c.hdr[0]&0x80 != 0, c.hdr[0]&0x0f
	n := int(c.hdr[1] & 0x7f)
	switch n {
	case 126:
		if _, err := io.ReadFull(c.br, c.hdr[2:4]); err != nil {
			return err
		}
		n = int(c.hdr[2])<<8 | int(c.hdr[3])
	case 127:
		if _, err := io.ReadFull(c.br, c.hdr[2:10]); err != nil {
			return err
		}
		n = 0
		for _, v := range c.hdr[2:10] {
			n = n<<8 | int(v)
		}
	}
	if c.hdr[1]&0x80 != 0 || !fin {
		return errors.New("masked or fragmented server frame")
	}
	if cap(c.frame) < n {
		c.frame = make([]byte, n)
	}
	c.frame = c.frame[:n]
	if _, err := io.ReadFull(c.br, c.frame); err != nil {
		return err
	}
	switch op {
	case 1, 2:
		c.pkgs = c.frame
	case 8:
		return io.EOF
	}
	return nil
}

// benchFloor is the peer of the raw round trips: a bare loopback TCP server
// that answers every package with a canned response of the same size as the
// real server's, with no Pomelo logic at all. Its round trip is the floor
// set by the kernel and the Go scheduler on this machine.
type benchFloor struct {
	ln   net.Listener
	resp []byte
	wg   sync.WaitGroup
}

func benchStartFloor(b *testing.B, resp []byte) *benchFloor {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	f := &benchFloor{ln: ln, resp: resp}
	var mu sync.Mutex
	var conns []net.Conn
	f.wg.Add(1)
	go func() {
		defer f.wg.Done()
		for {
			nc, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, nc)
			mu.Unlock()
			f.wg.Add(1)
			go func() {
				defer f.wg.Done()
				r := wire.NewReader(nc, 0)
				for {
					if _, _, err := r.Next(); err != nil {
						return
					}
					if _, err := nc.Write(f.resp); err != nil {
						return
					}
				}
			}()
		}
	}()
	b.Cleanup(func() {
		ln.Close()
		mu.Lock()
		for _, c := range conns {
			c.Close()
		}
		mu.Unlock()
		f.wg.Wait()
	})
	return f
}

// dial connects a raw client to the floor server (no handshake there); it
// closes when owner ends.
func (f *benchFloor) dial(b, owner *testing.B, req []byte) *benchRawConn {
	nc, err := net.Dial("tcp", f.ln.Addr().String())
	if err != nil {
		b.Fatal(err)
	}
	owner.Cleanup(func() { nc.Close() })
	return &benchRawConn{nc: nc, rd: wire.NewReader(nc, 0), req: req}
}
