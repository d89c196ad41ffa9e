package connector

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"time"

	"github.com/coder/websocket"

	"github.com/pomelo-go/pomelo/runtime/wire"
)

// transport is one client connection's byte pipe: WebSocket frames or a raw
// TCP stream, both carrying Pomelo packages.
type transport interface {
	// readPackages blocks for the next frame (WebSocket) or package (TCP)
	// and calls fn for each package in it.
	readPackages(fn func(t wire.PackageType, body []byte) error) error
	// write writes b, one or more whole packages, as one frame.
	write(b []byte, timeout time.Duration) error
	// close closes gracefully (WebSocket close handshake, bounded; TCP
	// half-close); closeNow follows once the reader is done.
	close()
	// closeNow closes at once.
	closeNow()
	remoteAddr() net.Addr
	// peerGone reports whether the client has closed or reset its side,
	// without reading (for a reader paused by back-pressure); false when
	// it cannot tell.
	peerGone() bool
}

// errTooLarge reports a package over the configured maximum.
var errTooLarge = wire.ErrTooLarge

type wsTransport struct {
	c        *websocket.Conn
	nc       net.Conn // the raw connection under c; nil if not hijacked
	addr     net.Addr
	buf      []byte
	maxBody  int
	grace    time.Duration // bounds the close handshake
	watchdog *time.Timer   // closes the connection when a write takes too long
}

// hijackRecorder keeps the connection websocket.Accept hijacks, so that a
// close handshake the peer never answers can be cut short: the library's
// own bound is 5 s, and CloseNow cannot interrupt a Close under way.
//
// It also hands the library buffers smaller than the HTTP server's 4 kB
// ones, which the connection keeps for its lifetime: a frame header and a
// small message fit, larger payloads are read and written directly.
type hijackRecorder struct {
	http.ResponseWriter
	nc net.Conn
}

// Buffer sizes of a WebSocket connection (see hijackRecorder).
const (
	wsReadBuffer  = 1 << 10
	wsWriteBuffer = 2 << 10
)

// Hijack implements http.Hijacker.
func (h *hijackRecorder) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	nc, brw, err := http.NewResponseController(h.ResponseWriter).Hijack()
	if err != nil {
		return nc, brw, err
	}
	h.nc = nc
	// Bytes the client sent after its upgrade request stay first in line.
	n := brw.Reader.Buffered()
	early, _ := brw.Reader.Peek(n)
	r := bufio.NewReaderSize(io.MultiReader(bytes.NewReader(bytes.Clone(early)), nc), max(wsReadBuffer, n))
	if n > 0 {
		if _, err := r.Peek(n); err != nil {
			return nc, nil, err
		}
	}
	return nc, bufio.NewReadWriter(r, bufio.NewWriterSize(nc, wsWriteBuffer)), nil
}

// Unwrap lets http.ResponseController reach the wrapped writer.
func (h *hijackRecorder) Unwrap() http.ResponseWriter { return h.ResponseWriter }

func acceptWS(w http.ResponseWriter, r *http.Request, cfg *Config) (transport, error) {
	opts := &websocket.AcceptOptions{
		OriginPatterns:     cfg.OriginPatterns,
		InsecureSkipVerify: cfg.OriginPatterns == nil,
		CompressionMode:    websocket.CompressionNoContextTakeover,
	}
	if cfg.DisableCompression {
		opts.CompressionMode = websocket.CompressionDisabled
	}
	hr := &hijackRecorder{ResponseWriter: w}
	c, err := websocket.Accept(hr, r, opts)
	if err != nil {
		return nil, err
	}
	// Several packages may share a frame: allow a little more than one
	// maximum package per frame; each package is still checked on its own.
	c.SetReadLimit(int64(2*(cfg.MaxPackageSize+wire.HeaderLen)) + 1024)
	addr, _ := net.ResolveTCPAddr("tcp", r.RemoteAddr)
	var a net.Addr = addr
	if addr == nil {
		a = stringAddr(r.RemoteAddr)
	}
	// Keep the raw connection only: the HTTP request and response go.
	t := &wsTransport{c: c, nc: hr.nc, addr: a, maxBody: cfg.MaxPackageSize, grace: cfg.closeGrace}
	t.watchdog = time.AfterFunc(time.Hour, func() { c.CloseNow() })
	t.watchdog.Stop()
	return t, nil
}

type stringAddr string

func (a stringAddr) Network() string { return "tcp" }
func (a stringAddr) String() string  { return string(a) }

func (t *wsTransport) readPackages(fn func(wire.PackageType, []byte) error) error {
	// No cancellable context per read: closing the connection unblocks it.
	_, r, err := t.c.Reader(context.Background())
	if err != nil {
		return err
	}
	t.buf = t.buf[:0]
	for {
		if len(t.buf) == cap(t.buf) {
			t.buf = append(t.buf, 0)[:len(t.buf)]
		}
		n, err := r.Read(t.buf[len(t.buf):cap(t.buf)])
		t.buf = t.buf[:len(t.buf)+n]
		if err == io.EOF {
			break
		}
		if err != nil {
			return err
		}
	}
	// Text frames carry the package bytes as UTF-8: same bytes.
	err = wire.SplitPackages(t.buf, t.maxBody, fn)
	if cap(t.buf) > 64<<10 {
		t.buf = nil // do not keep a large buffer for an idle connection
	}
	return err
}

func (t *wsTransport) write(b []byte, timeout time.Duration) error {
	// One reusable timer bounds the write, instead of a timeout context per
	// frame: if it fires, the connection is closed and Write fails.
	t.watchdog.Reset(timeout)
	err := t.c.Write(context.Background(), websocket.MessageBinary, b)
	t.watchdog.Stop()
	return err
}

// close sends a close frame and waits for the peer's, at most t.grace:
// then it closes the raw connection, which ends the library's wait (up to
// 5 s otherwise, which CloseNow does not shorten once Close has begun).
func (t *wsTransport) close() {
	done := make(chan struct{})
	go func() {
		t.c.Close(websocket.StatusNormalClosure, "")
		close(done)
	}()
	grace := time.NewTimer(t.grace)
	defer grace.Stop()
	select {
	case <-done:
	case <-grace.C:
		if t.nc != nil {
			t.nc.Close()
		}
		<-done
	}
}

func (t *wsTransport) closeNow() {
	t.watchdog.Stop()
	t.c.CloseNow()
}

func (t *wsTransport) remoteAddr() net.Addr { return t.addr }

type tcpTransport struct {
	nc net.Conn
	r  *wire.Reader
}

func (t *tcpTransport) peerGone() bool { return connPeerGone(t.nc) }

func (t *wsTransport) peerGone() bool { return t.nc != nil && connPeerGone(t.nc) }

// tcpReadBuffer is the starting size of a TCP connection's read buffer,
// which it keeps for its lifetime (it grows for larger packages).
const tcpReadBuffer = 1 << 10

func newTCPTransport(nc net.Conn, maxBody int) *tcpTransport {
	return &tcpTransport{nc: nc, r: wire.NewReaderSize(nc, maxBody, tcpReadBuffer)}
}

func (t *tcpTransport) readPackages(fn func(wire.PackageType, []byte) error) error {
	typ, body, err := t.r.Next()
	if err != nil {
		return err
	}
	return fn(typ, body)
}

func (t *tcpTransport) write(b []byte, timeout time.Duration) error {
	if err := t.nc.SetWriteDeadline(time.Now().Add(timeout)); err != nil {
		return err
	}
	_, err := t.nc.Write(b)
	return err
}

// close ends our side of the stream; closeNow, called once the reader has
// seen the client's side end (or after a grace period), releases it. Closing
// at once while client input is unread would reset the connection and could
// discard the packages just written, such as a KICK.
func (t *tcpTransport) close() {
	if tc, ok := t.nc.(interface{ CloseWrite() error }); ok {
		tc.CloseWrite()
		return
	}
	t.nc.Close()
}

func (t *tcpTransport) closeNow() { t.nc.Close() }

func (t *tcpTransport) remoteAddr() net.Addr { return t.nc.RemoteAddr() }

// isLeave reports a read error that is the client leaving on purpose: a
// WebSocket close with code 1000, or a KICK from the client (raw TCP;
// docs/PROTOCOL.md section 10).
func isLeave(err error) bool {
	return errors.Is(err, errLeft) || websocket.CloseStatus(err) == websocket.StatusNormalClosure
}

// isClosedErr reports errors that just mean the peer went away.
func isClosedErr(err error) bool {
	if err == nil || errors.Is(err, io.EOF) || errors.Is(err, net.ErrClosed) || errors.Is(err, context.Canceled) {
		return true
	}
	s := websocket.CloseStatus(err)
	return s == websocket.StatusNormalClosure || s == websocket.StatusGoingAway || s == websocket.StatusNoStatusRcvd
}
