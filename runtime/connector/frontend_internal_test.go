package connector

// Tests of the frontend's limits: the close grace, message flags and the
// default connection cap.

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"testing"
	"time"

	"github.com/pomelo-go/pomelo/runtime"
	"github.com/pomelo-go/pomelo/runtime/session"
	"github.com/pomelo-go/pomelo/runtime/wire"
)

// recordHandler reports every served message and every rejection.
type recordHandler struct {
	served   chan *wire.Message
	rejected chan error
}

func newRecordHandler() *recordHandler {
	return &recordHandler{served: make(chan *wire.Message, 16), rejected: make(chan error, 16)}
}

func (h *recordHandler) Handshake(context.Context, *session.Session, *wire.HandshakeRequest) (json.RawMessage, error) {
	return nil, nil
}

func (h *recordHandler) ServeMessage(_ context.Context, _ *session.Session, m *wire.Message) {
	h.served <- m
}

func (h *recordHandler) Reject(_ *session.Session, _ *wire.Message, err error) { h.rejected <- err }

// working dials addr and completes the handshake and ack.
func working(t *testing.T, addr net.Addr) *rawTCP {
	t.Helper()
	c := dialRaw(t, addr)
	c.send(t, wire.TypeHandshake, []byte(rawHandshake))
	if typ, body := c.next(t); typ != wire.TypeHandshake {
		t.Fatalf("handshake reply is %s %q", typ, body)
	}
	c.send(t, wire.TypeHandshakeAck, nil)
	if typ, _ := c.next(t); typ != wire.TypeHeartbeat {
		t.Fatalf("after the ack: %s, want HEARTBEAT", typ)
	}
	return c
}

// sendMessage sends m, then flips on the flag bits extra.
func (c *rawTCP) sendMessage(t *testing.T, m *wire.Message, extra byte) {
	t.Helper()
	b, err := wire.AppendMessage(nil, m)
	if err != nil {
		t.Fatal(err)
	}
	b[0] |= extra
	c.send(t, wire.TypeData, b)
}

func gzipped(t *testing.T, b []byte) []byte {
	t.Helper()
	var buf bytes.Buffer
	zw := gzip.NewWriter(&buf)
	zw.Write(b)
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func wantServed(t *testing.T, h *recordHandler, route, body string) {
	t.Helper()
	select {
	case m := <-h.served:
		if m.Route != route || string(m.Body) != body || m.Gzip {
			t.Fatalf("served %s %q (gzip %v), want %s %q", m.Route, m.Body, m.Gzip, route, body)
		}
	case err := <-h.rejected:
		t.Fatalf("rejected: %v", err)
	case <-time.After(5 * time.Second):
		t.Fatal("nothing served")
	}
}

func wantRejected(t *testing.T, h *recordHandler, name string) {
	t.Helper()
	select {
	case m := <-h.served:
		t.Fatalf("served %s %q, want it rejected", m.Route, m.Body)
	case err := <-h.rejected:
		var re *runtime.Error
		if !errors.As(err, &re) || re.Name != name {
			t.Fatalf("rejected with %v, want %s", err, name)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("nothing rejected")
	}
}

func TestGzipFlaggedRequestIsServedDecompressed(t *testing.T) {
	h := newRecordHandler()
	_, _, addr := startTCP(t, Config{}, h)
	c := working(t, addr)
	body := `{"hello":"world"}`
	c.sendMessage(t, &wire.Message{Type: wire.Request, ID: 1, Route: "chat.h.echo", Gzip: true, Body: gzipped(t, []byte(body))}, 0)
	wantServed(t, h, "chat.h.echo", body)
	c.sendMessage(t, &wire.Message{Type: wire.Notify, Route: "chat.h.send", Gzip: true, Body: gzipped(t, []byte(body))}, 0)
	wantServed(t, h, "chat.h.send", body)
}

func TestGzipBombIsAnsweredBadRequestAndConnectionStays(t *testing.T) {
	h := newRecordHandler()
	srv, _, addr := startTCP(t, Config{MaxPackageSize: 4 << 10}, h)
	c := working(t, addr)
	bomb := gzipped(t, make([]byte, 1<<20)) // 1 MiB of zeros, about 1 KiB compressed
	if len(bomb) > srv.Config().MaxPackageSize {
		t.Fatalf("bomb of %d bytes does not fit a package", len(bomb))
	}
	c.sendMessage(t, &wire.Message{Type: wire.Request, ID: 1, Route: "chat.h.echo", Gzip: true, Body: bomb}, 0)
	wantRejected(t, h, runtime.ErrBadRequest.Name)
	c.sendMessage(t, &wire.Message{Type: wire.Request, ID: 2, Route: "chat.h.echo", Gzip: true, Body: []byte("not gzip")}, 0)
	wantRejected(t, h, runtime.ErrBadRequest.Name)
	// A notify that does not decompress is dropped, not answered.
	c.sendMessage(t, &wire.Message{Type: wire.Notify, Route: "chat.h.send", Gzip: true, Body: bomb}, 0)
	// The connection is still served, in order.
	c.sendMessage(t, &wire.Message{Type: wire.Request, ID: 3, Route: "chat.h.echo", Body: []byte("{}")}, 0)
	wantServed(t, h, "chat.h.echo", "{}")
	select {
	case err := <-h.rejected:
		t.Fatalf("the notify was answered: %v", err)
	default:
	}
}

func TestUnknownFlagBitsCloseTheConnection(t *testing.T) {
	for _, extra := range []byte{wire.FlagError, 0x40, 0x80} {
		t.Run(fmt.Sprintf("%#02x", extra), func(t *testing.T) {
			h := newRecordHandler()
			srv, _, addr := startTCP(t, Config{}, h)
			c := working(t, addr)
			c.sendMessage(t, &wire.Message{Type: wire.Request, ID: 1, Route: "chat.h.echo", Body: []byte("{}")}, extra)
			c.nc.SetReadDeadline(time.Now().Add(5 * time.Second))
			if typ, body, err := c.r.Next(); !errors.Is(err, io.EOF) {
				t.Fatalf("after flag bits %#02x: %s %q, %v; want the connection closed (EOF)", extra, typ, body, err)
			}
			waitFor(t, "the connection to go", func() bool { return srv.Count() == 0 })
			select {
			case m := <-h.served:
				t.Fatalf("served %s despite flag bits %#02x", m.Route, extra)
			default:
			}
		})
	}
}

// rawWS upgrades a TCP connection to a WebSocket by hand and then never
// reads nor answers anything, a peer that ignores the close handshake.
func rawWS(t *testing.T, addr net.Addr) *bufio.Reader {
	t.Helper()
	br, resp := upgrade(t, addr)
	if resp.StatusCode != http.StatusSwitchingProtocols {
		t.Fatalf("upgrade answered %s", resp.Status)
	}
	return br
}

// upgrade sends a WebSocket upgrade request by hand and reads the answer.
func upgrade(t *testing.T, addr net.Addr) (*bufio.Reader, *http.Response) {
	t.Helper()
	nc, err := net.Dial("tcp", addr.String())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { nc.Close() })
	fmt.Fprintf(nc, "GET / HTTP/1.1\r\nHost: %s\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"+
		"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n", addr)
	nc.SetReadDeadline(time.Now().Add(5 * time.Second))
	br := bufio.NewReader(nc)
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatal(err)
	}
	return br, resp
}

func TestCloseOfPeerThatNeverAnswersCloseFrameEndsAfterGrace(t *testing.T) {
	svc := session.NewService("f-1", session.AllowMany)
	const grace = 100 * time.Millisecond
	c := New(Config{HandshakeTimeout: 50 * time.Millisecond, closeGrace: grace}, nil, svc, newRecordHandler())
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go c.ServeWS(l)
	defer c.Shutdown(context.Background(), "")
	br := rawWS(t, l.Addr())
	start := time.Now()
	// The handshake timeout closes the connection; the peer stays silent.
	deadline := start.Add(3 * time.Second) // safety bound: the library alone waits 5 s
	for svc.Count() != 0 || c.Count() != 0 {
		if time.Now().After(deadline) {
			t.Fatalf("connection still open %v after the handshake timeout, with a close grace of %v", time.Since(start), grace)
		}
		time.Sleep(5 * time.Millisecond)
	}
	// The peer got a close frame (opcode 8, FIN) before the connection ended.
	if b, err := br.ReadByte(); err != nil || b != 0x88 {
		t.Fatalf("first frame byte %#02x, %v; want a close frame 0x88", b, err)
	}
}

func TestZeroConfigCapsConnectionsAtDefault(t *testing.T) {
	svc := session.NewService("f-1", session.AllowMany)
	c := New(Config{}, nil, svc, newRecordHandler())
	defer c.cancel()
	if got := c.Config().MaxConnections; got != DefaultMaxConnections {
		t.Fatalf("MaxConnections %d, want %d", got, DefaultMaxConnections)
	}
	for i := range DefaultMaxConnections {
		if !c.admit() {
			t.Fatalf("connection %d refused under the cap", i+1)
		}
	}
	if c.admit() {
		t.Fatalf("connection %d admitted over the default cap", DefaultMaxConnections+1)
	}

	unlimited := New(Config{MaxConnections: NoConnectionLimit}, nil, svc, newRecordHandler())
	defer unlimited.cancel()
	for i := range DefaultMaxConnections + 1 {
		if !unlimited.admit() {
			t.Fatalf("connection %d refused with NoConnectionLimit", i+1)
		}
	}
}

func TestConnectionsBeyondCapAreRefused(t *testing.T) {
	svc := session.NewService("f-1", session.AllowMany)
	c := New(Config{MaxConnections: 1, closeGrace: 100 * time.Millisecond}, nil, svc, newRecordHandler())
	wl, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	tl, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go c.ServeWS(wl)
	go c.ServeTCP(tl)
	defer c.Shutdown(context.Background(), "")

	first := working(t, tl.Addr())
	if _, resp := upgrade(t, wl.Addr()); resp.StatusCode != http.StatusServiceUnavailable {
		t.Fatalf("WebSocket upgrade over the cap answered %s, want 503", resp.Status)
	}
	over := dialRaw(t, tl.Addr())
	over.nc.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := over.nc.Read(make([]byte, 1)); !errors.Is(err, io.EOF) {
		t.Fatalf("TCP connection over the cap: read %v, want it closed (EOF)", err)
	}
	// The connection under the cap is unaffected, and its slot frees when it leaves.
	first.sendMessage(t, &wire.Message{Type: wire.Notify, Route: "a.b.c", Body: []byte("{}")}, 0)
	first.nc.Close()
	waitFor(t, "the slot to free", func() bool { return c.Count() == 0 })
	if _, resp := upgrade(t, wl.Addr()); resp.StatusCode != http.StatusSwitchingProtocols {
		t.Fatalf("upgrade under the cap answered %s", resp.Status)
	}
}
