package client

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"sync/atomic"
	"time"

	"github.com/coder/websocket"

	"github.com/pomelo-go/pomelo/runtime/wire"
)

// transport moves packages over one connection. writeFrame is never called concurrently;
// readPackages runs on one goroutine; close may be called from any goroutine, once.
type transport interface {
	// writeFrame writes b, one or more complete packages, as one frame.
	writeFrame(b []byte, timeout time.Duration) error
	// readPackages calls fn with every package received, in order, until reading fails or fn
	// returns an error, and returns that error. The body passed to fn may alias a buffer that
	// is reused once fn returns.
	readPackages(fn func(wire.PackageType, []byte) error) error
	// close closes the connection: a WebSocket with a close handshake with code (none when
	// code is 0; with a code other than 1000, without waiting for the server's answer).
	close(code websocket.StatusCode) error
}

// dialTransport connects to addr: "ws://", "wss://", "tcp://" or "tls://" (raw TCP with TLS).
func dialTransport(ctx context.Context, addr string, o *options) (transport, error) {
	u, err := url.Parse(addr)
	if err != nil {
		return nil, fmt.Errorf("pomelo client: bad address %q: %w", addr, err)
	}
	switch u.Scheme {
	case "ws", "wss":
		return dialWebSocket(ctx, addr, o)
	case "tcp", "tls":
		if u.Host == "" {
			return nil, fmt.Errorf("pomelo client: bad address %q: no host", addr)
		}
		return dialTCP(ctx, u.Scheme == "tls", u.Host, o)
	}
	return nil, fmt.Errorf("pomelo client: bad address %q: scheme must be ws, wss, tcp or tls", addr)
}

// wsTransport is a WebSocket connection: binary frames, several packages per frame allowed.
type wsTransport struct {
	conn    *websocket.Conn
	maxBody int
}

// frameLimitFactor is how many maximal packages one WebSocket frame from the server may hold.
const frameLimitFactor = 8

func dialWebSocket(ctx context.Context, addr string, o *options) (*wsTransport, error) {
	var dopts websocket.DialOptions
	if o.tlsConfig != nil {
		tr := http.DefaultTransport.(*http.Transport).Clone()
		tr.TLSClientConfig = o.tlsConfig
		dopts.HTTPClient = &http.Client{Transport: tr}
	}
	conn, resp, err := websocket.Dial(ctx, addr, &dopts)
	if err != nil {
		return nil, fmt.Errorf("pomelo client: dial %s: %w", addr, err)
	}
	if resp != nil && resp.Body != nil {
		resp.Body.Close()
	}
	conn.SetReadLimit(int64(frameLimitFactor) * int64(o.maxPackage+wire.HeaderLen))
	return &wsTransport{conn: conn, maxBody: o.maxPackage}, nil
}

func (t *wsTransport) writeFrame(b []byte, timeout time.Duration) error {
	// The write does not use a caller's context: coder/websocket closes the connection when
	// the context of a write ends, which must not happen because a request was canceled.
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	return t.conn.Write(ctx, websocket.MessageBinary, b)
}

func (t *wsTransport) readPackages(fn func(wire.PackageType, []byte) error) error {
	for {
		// Text frames hold the package bytes as UTF-8 text; they are read the same way.
		_, frame, err := t.conn.Read(context.Background())
		if err != nil {
			return err
		}
		if err := wire.SplitPackages(frame, t.maxBody, fn); err != nil {
			return err
		}
	}
}

func (t *wsTransport) close(code websocket.StatusCode) error {
	switch code {
	case 0:
		return t.conn.CloseNow()
	case websocket.StatusNormalClosure:
		return t.conn.Close(code, "")
	}
	// The connection is given up: the close frame goes, nobody waits for the answer (the
	// library bounds its wait).
	go t.conn.Close(code, "")
	return nil
}

// leavePackage is a KICK with no body: a resumable client leaving over raw
// TCP.
var leavePackage, _ = wire.AppendPackage(nil, wire.TypeKick, nil)

// tcpTransport is a raw TCP (or TLS) connection.
type tcpTransport struct {
	conn    net.Conn
	maxBody int
	// resumable: the server answered with a resumable session, so a
	// leave (close with code 1000) sends a KICK first, raw TCP's way of
	// saying so (docs/PROTOCOL.md section 10).
	resumable atomic.Bool
}

func dialTCP(ctx context.Context, useTLS bool, host string, o *options) (*tcpTransport, error) {
	var (
		conn net.Conn
		err  error
	)
	if useTLS {
		d := tls.Dialer{Config: o.tlsConfig}
		conn, err = d.DialContext(ctx, "tcp", host)
	} else {
		var d net.Dialer
		conn, err = d.DialContext(ctx, "tcp", host)
	}
	if err != nil {
		return nil, fmt.Errorf("pomelo client: dial %s: %w", host, err)
	}
	return &tcpTransport{conn: conn, maxBody: o.maxPackage}, nil
}

func (t *tcpTransport) writeFrame(b []byte, timeout time.Duration) error {
	if err := t.conn.SetWriteDeadline(time.Now().Add(timeout)); err != nil {
		return err
	}
	_, err := t.conn.Write(b)
	return err
}

func (t *tcpTransport) readPackages(fn func(wire.PackageType, []byte) error) error {
	r := wire.NewReader(t.conn, t.maxBody)
	for {
		typ, body, err := r.Next()
		if err != nil {
			return err
		}
		if err := fn(typ, body); err != nil {
			return err
		}
	}
}

func (t *tcpTransport) close(code websocket.StatusCode) error {
	if code == websocket.StatusNormalClosure && t.resumable.Load() {
		if t.conn.SetWriteDeadline(time.Now().Add(time.Second)) == nil {
			_, _ = t.conn.Write(leavePackage)
		}
	}
	err := t.conn.Close()
	if errors.Is(err, net.ErrClosed) {
		return nil
	}
	return err
}
