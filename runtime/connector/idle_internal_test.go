package connector

// Tests of idle connections: no writer goroutine while nothing is queued,
// and a burst after idle delivered in order and coalesced.

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pomelo-go/pomelo/runtime/session"
	"github.com/pomelo-go/pomelo/runtime/wire"
)

// goroutinesIn counts the goroutines whose stack has fn in it.
func goroutinesIn(fn string) int {
	buf := make([]byte, 1<<20)
	for {
		n := runtime.Stack(buf, true)
		if n < len(buf) {
			buf = buf[:n]
			break
		}
		buf = make([]byte, 2*len(buf))
	}
	count := 0
	for _, g := range strings.Split(string(buf), "\n\n") {
		if strings.Contains(g, fn) {
			count++
		}
	}
	return count
}

// N connections that completed the handshake and exchanged heartbeats hold
// one reader goroutine each and no writer.
func TestIdleConnectionsHoldNoWriterGoroutine(t *testing.T) {
	const n = 40
	_, _, addr := startTCP(t, Config{Heartbeat: time.Minute}, &reviewHandler{})
	clients := make([]*rawTCP, n)
	for i := range clients {
		clients[i] = working(t, addr)
	}
	for _, c := range clients { // a heartbeat and its answer
		c.send(t, wire.TypeHeartbeat, nil)
		if typ, _ := c.next(t); typ != wire.TypeHeartbeat {
			t.Fatalf("heartbeat answered with %s", typ)
		}
	}
	waitFor(t, "the writers to exit", func() bool { return goroutinesIn("(*conn).writeLoop") == 0 })
	if got := goroutinesIn("(*conn).readLoop"); got != n {
		t.Fatalf("%d reader goroutines for %d idle connections", got, n)
	}
	// Idle connections still answer heartbeats: a writer starts again.
	for _, c := range clients {
		c.send(t, wire.TypeHeartbeat, nil)
		if typ, _ := c.next(t); typ != wire.TypeHeartbeat {
			t.Fatalf("heartbeat after idle answered with %s", typ)
		}
	}
}

// gateTransport records every frame written; the first write blocks until
// release is closed. Reads block until the transport is closed.
type gateTransport struct {
	release chan struct{}
	closed  chan struct{}
	once    sync.Once

	mu     sync.Mutex
	frames [][]byte
	wrote  chan struct{} // a token per write started
}

func newGateTransport() *gateTransport {
	return &gateTransport{release: make(chan struct{}), closed: make(chan struct{}), wrote: make(chan struct{}, 64)}
}

func (g *gateTransport) readPackages(func(wire.PackageType, []byte) error) error {
	<-g.closed
	return io.EOF
}

func (g *gateTransport) write(b []byte, _ time.Duration) error {
	g.mu.Lock()
	first := len(g.frames) == 0
	g.frames = append(g.frames, append([]byte(nil), b...))
	g.mu.Unlock()
	g.wrote <- struct{}{}
	if first {
		<-g.release
	}
	return nil
}

func (g *gateTransport) close()               { g.once.Do(func() { close(g.closed) }) }
func (g *gateTransport) closeNow()            { g.close() }
func (g *gateTransport) remoteAddr() net.Addr { return stringAddr("gate") }
func (g *gateTransport) peerGone() bool       { return false }

func (g *gateTransport) written() [][]byte {
	g.mu.Lock()
	defer g.mu.Unlock()
	return append([][]byte(nil), g.frames...)
}

// A connection that is idle has no writer; a burst then starts one, and
// what is queued while it writes goes out in order as one frame, after
// which the writer exits again.
func TestBurstAfterIdleIsDeliveredInOrderCoalesced(t *testing.T) {
	waitFor(t, "other tests' writers to exit", func() bool { return goroutinesIn("(*conn).writeLoop") == 0 })
	g := newGateTransport()
	cn := workingConn(t, Config{Heartbeat: time.Minute}, g)
	if cn.writing.Load() || goroutinesIn("(*conn).writeLoop") != 0 {
		t.Fatal("an idle connection has a writer")
	}

	pkg := func(i int) []byte {
		p, _ := wire.AppendMessagePackage(nil, &wire.Message{Type: wire.Push, Route: "on.n", Body: []byte{'0' + byte(i)}})
		return p
	}
	if err := cn.Send(pkg(0)); err != nil {
		t.Fatal(err)
	}
	<-g.wrote // the writer is inside the first write
	var want []byte
	for i := 1; i <= 9; i++ {
		p := pkg(i)
		want = append(want, p...)
		if err := cn.Send(p); err != nil {
			t.Fatal(err)
		}
	}
	close(g.release)
	<-g.wrote
	waitFor(t, "the writer to exit", func() bool { return !cn.writing.Load() })
	frames := g.written()
	if len(frames) != 2 {
		t.Fatalf("%d frames, want 2 (the first package, then the other nine coalesced)", len(frames))
	}
	if !bytes.Equal(frames[0], pkg(0)) || !bytes.Equal(frames[1], want) {
		t.Fatalf("frames out of order: %q", frames)
	}
	waitFor(t, "no writer goroutine", func() bool { return goroutinesIn("(*conn).writeLoop") == 0 })

	// The kick still comes last and closes the connection.
	cn.Kick("bye")
	<-g.wrote
	<-cn.done
	frames = g.written()
	kick, _ := wire.AppendPackage(nil, wire.TypeKick, wire.KickBody("bye"))
	if len(frames) != 3 || !bytes.Equal(frames[2], kick) {
		t.Fatalf("after the kick: %q", frames)
	}
}

// A client that sends its first WebSocket frame in the same packet as the
// upgrade request (the HTTP server has buffered it before the hijack) is
// still read: the smaller buffers handed to the library keep those bytes.
func TestFrameSentWithTheUpgradeRequestIsRead(t *testing.T) {
	svc := session.NewService("f-1", session.AllowMany)
	c := New(Config{Heartbeat: time.Minute}, nil, svc, newRecordHandler())
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go c.ServeWS(l)
	defer c.Shutdown(context.Background(), "")
	nc, err := net.Dial("tcp", l.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	pkg, _ := wire.AppendPackage(nil, wire.TypeHandshake, []byte(rawHandshake))
	// A masked binary frame; the zero mask key leaves the payload as is.
	frame := append([]byte{0x82, 0x80 | 126, byte(len(pkg) >> 8), byte(len(pkg)), 0, 0, 0, 0}, pkg...)
	req := fmt.Sprintf("GET / HTTP/1.1\r\nHost: %s\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"+
		"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n", l.Addr())
	if _, err := nc.Write(append([]byte(req), frame...)); err != nil {
		t.Fatal(err)
	}
	nc.SetReadDeadline(time.Now().Add(5 * time.Second))
	br := bufio.NewReader(nc)
	resp, err := http.ReadResponse(br, nil)
	if err != nil || resp.StatusCode != http.StatusSwitchingProtocols {
		t.Fatalf("upgrade: %v %v", resp, err)
	}
	hdr := make([]byte, 2)
	if _, err := io.ReadFull(br, hdr); err != nil {
		t.Fatal(err)
	}
	n := int(hdr[1] & 0x7f)
	if n == 126 {
		ext := make([]byte, 2)
		io.ReadFull(br, ext)
		n = int(ext[0])<<8 | int(ext[1])
	}
	payload := make([]byte, n)
	if _, err := io.ReadFull(br, payload); err != nil {
		t.Fatal(err)
	}
	if hdr[0] != 0x82 || len(payload) < wire.HeaderLen || wire.PackageType(payload[0]) != wire.TypeHandshake {
		t.Fatalf("answer frame %#x %q, want the handshake reply", hdr, payload)
	}
}
