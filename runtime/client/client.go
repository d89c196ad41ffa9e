// Package client is a Go client for the Pomelo client protocol (see runtime/wire), over
// WebSocket or raw TCP. Tests, bots and load tools use it to talk to a frontend server as a
// game client would.
//
// Dial connects and does the handshake (Config.Dial does it with a Config, whose zero value is
// what Dial uses); the Client then sends requests and notifies, pairs responses with requests
// by id, delivers pushes to subscribers and keeps the connection alive with heartbeats as the
// JS client does. A Client is safe for concurrent use: many goroutines
// may send requests at once. It implements the runtime.ClientConn interface that generated
// typed clients call.
//
// Error responses (flag 0x20) are returned as *runtime.Error. When the connection ends, every
// pending and later call fails with the reason, also reported by Err: ErrClosed, a *KickError,
// ErrHeartbeatTimeout, or an error wrapping ErrConnectionLost or ErrProtocol.
//
// In short (the package Example runs it against a real server):
//
//	c, err := client.Dial(ctx, "ws://127.0.0.1:3010/") // or "tcp://127.0.0.1:3011"
//	if err != nil { ... }
//	defer c.Close()
//	client.Subscribe(c, chatv1.ChatPushOnChat, func(m *chatv1.ChatMessage) { ... }) // a push route
//	err = c.Request(ctx, "chat.chatHandler.send", req, &resp)                   // or a generated typed client
//	err = c.Notify(ctx, "chat.chatHandler.send", req)
//
// For browsers and node, the project's JavaScript client is the package in clients/js.
package client

import (
	"bytes"
	"compress/gzip"
	"compress/zlib"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"sync"
	"sync/atomic"
	"time"

	"github.com/coder/websocket"
	"google.golang.org/protobuf/proto"

	"github.com/pomelo-go/pomelo/runtime"
	"github.com/pomelo-go/pomelo/runtime/wire"
)

// Generated typed clients call a Client through runtime.ClientConn.
var _ runtime.ClientConn = (*Client)(nil)

// maxRequestID bounds request ids: they count up from 1 and wrap before 2^31.
const maxRequestID = 1 << 31

// Client is a connection to a Pomelo frontend server, in the WORKING state once Dial returns.
// With Config.Resume it is a resumable session that outlives its connections: see Config.Resume.
type Client struct {
	opts  options
	addr  string
	ser   runtime.Serializer
	start time.Time // origin of the monotonic times below

	// life ends when the Client is finished; it bounds reconnection attempts.
	life       context.Context
	lifeCancel context.CancelFunc

	hs   atomic.Pointer[wire.HandshakeResponse] // the latest handshake reply
	dict atomic.Pointer[dictMaps]               // route dictionary; nil for none

	wsem        chan struct{} // capacity 1: held while writing
	done        chan struct{} // closed once the Client is finished
	closeCalled chan struct{} // closed by Close
	closeOnce   sync.Once

	received atomic.Uint64 // DATA packages received in the session (Received)

	// stateMu is held while a change of connection state is made and
	// reported: OnState is called one change at a time, in order.
	stateMu sync.Mutex

	pushes *pushes

	mu         sync.Mutex
	cur        *cconn        // the connection in use; nil while reconnecting
	connected  chan struct{} // closed when a reconnection is up, then replaced
	token      string        // resume token of the session; "" when not resumable
	closing    bool
	err        error
	kicked     bool
	kickReason string
	lastID     uint64
	pending    map[uint64]*call
}

// dictMaps is a route dictionary and its inverse.
type dictMaps struct {
	codes  map[string]uint16
	routes map[uint16]string
}

// cconn is one network connection of a Client.
type cconn struct {
	tr       transport
	hsCh     chan *wire.HandshakeResponse // capacity 1
	hbRecv   chan struct{}                // capacity 1: a server heartbeat arrived
	done     chan struct{}                // closed once the connection is gone
	readDone chan struct{}                // closed once its read goroutine has returned
	once     sync.Once
	err      error        // why it ended; set before done is closed
	hsSeen   bool         // read goroutine only
	lastRecv atomic.Int64 // nanoseconds since Client.start of the last package received
}

// end closes the connection once, for cause, with a WebSocket close code (0: none).
func (k *cconn) end(cause error, code websocket.StatusCode) {
	k.once.Do(func() {
		k.err = cause
		_ = k.tr.close(code)
		close(k.done)
	})
}

// call is a request waiting for its response.
type call struct {
	ch  chan result
	pkg []byte // kept to send it again after a resume (Config.Resume only)
}

// result is the outcome of a request.
type result struct {
	body  []byte
	isErr bool
	err   error
}

// Dial connects to addr with the configuration cfg and does the handshake. addr is
// "ws://host:port/path", "wss://host:port/path", "tcp://host:port" or "tls://host:port" (raw
// TCP over TLS). It sends the handshake, waits for the reply, sends the HANDSHAKE_ACK and
// returns once the connection is WORKING; it does not wait for the server's first heartbeat. A
// refused handshake yields a *HandshakeError with the reply's code. ctx bounds the dial and the
// handshake only.
func (cfg Config) Dial(ctx context.Context, addr string) (*Client, error) {
	o := cfg.options()
	if _, err := handshakeBody(&o, nil); err != nil {
		return nil, err
	}
	c := &Client{
		opts:        o,
		addr:        addr,
		ser:         o.serializer,
		start:       time.Now(),
		wsem:        make(chan struct{}, 1),
		done:        make(chan struct{}),
		closeCalled: make(chan struct{}),
		pushes:      newPushes(),
		pending:     make(map[uint64]*call),
		connected:   make(chan struct{}),
	}
	c.life, c.lifeCancel = context.WithCancel(context.Background())
	if o.dict != nil {
		c.setDict(o.dict)
	}
	var resume *wire.ResumeRequest
	if o.resume {
		resume = &wire.ResumeRequest{}
	}
	k, hs, err := c.connect(ctx, resume)
	if err != nil {
		c.lifeCancel()
		return nil, err
	}
	go c.dispatch()
	c.stateMu.Lock()
	c.mu.Lock()
	c.cur = k
	if hs.Sys != nil && hs.Sys.Resume != nil {
		c.token = hs.Sys.Resume.Token
	}
	c.mu.Unlock()
	c.report(StateConnected)
	c.stateMu.Unlock()
	c.inUse(k)
	return c, nil
}

// connect dials the client's address, does the handshake (asking to resume when resume is not
// nil) and the ack, and starts the connection's read and heartbeat goroutines.
func (c *Client) connect(ctx context.Context, resume *wire.ResumeRequest) (*cconn, *wire.HandshakeResponse, error) {
	hsBody, err := handshakeBody(&c.opts, resume)
	if err != nil {
		return nil, nil, err
	}
	hsPkg, err := wire.AppendPackage(nil, wire.TypeHandshake, hsBody)
	if err != nil {
		return nil, nil, fmt.Errorf("pomelo client: handshake: %w", err)
	}
	tr, err := dialTransport(ctx, c.addr, &c.opts)
	if err != nil {
		return nil, nil, err
	}
	k := &cconn{
		tr:       tr,
		hsCh:     make(chan *wire.HandshakeResponse, 1),
		hbRecv:   make(chan struct{}, 1),
		readDone: make(chan struct{}),
		done:     make(chan struct{}),
	}
	k.lastRecv.Store(c.now())
	go c.readLoop(k)
	fail := func(err error) (*cconn, *wire.HandshakeResponse, error) {
		k.end(err, 0)
		return nil, nil, err
	}
	if err := c.writeOn(ctx, k, hsPkg); err != nil {
		return fail(fmt.Errorf("pomelo client: handshake: %w", err))
	}
	var hs *wire.HandshakeResponse
	select {
	case hs = <-k.hsCh:
	case <-k.done:
		// The read goroutine hands the reply over before it ends the connection: a reply
		// followed at once by the close is in hsCh by now, and it is the answer.
		select {
		case hs = <-k.hsCh:
		default:
			return fail(fmt.Errorf("pomelo client: handshake: %w", k.err))
		}
	case <-ctx.Done():
		return fail(fmt.Errorf("pomelo client: handshake: %w", ctx.Err()))
	}
	if hs.Code != wire.CodeOK {
		return fail(&HandshakeError{Code: hs.Code})
	}
	if hs.Sys != nil && hs.Sys.Serializer != "" && hs.Sys.Serializer != c.ser.Name() {
		return fail(fmt.Errorf("pomelo client: handshake: asked for serializer %q, server uses %q", c.ser.Name(), hs.Sys.Serializer))
	}
	if err := c.writeOn(ctx, k, wire.HandshakeAckPackage); err != nil {
		return fail(fmt.Errorf("pomelo client: handshake ack: %w", err))
	}
	if c.opts.heartbeat && hs.Sys != nil && hs.Sys.Heartbeat > 0 {
		go c.heartbeatLoop(k, time.Duration(hs.Sys.Heartbeat)*time.Second)
	}
	return k, hs, nil
}

// handshakeBody returns the JSON of the client's handshake, shaped as the JS client's:
// {"sys":{"type":...,"version":...,"protoVersion":0,...,"rsa":{}},"user":{}}.
func handshakeBody(o *options, resume *wire.ResumeRequest) ([]byte, error) {
	user := o.user
	if len(bytes.TrimSpace(user)) == 0 {
		user = json.RawMessage("{}")
	} else if !json.Valid(user) {
		return nil, errors.New("pomelo client: handshake user is not valid JSON")
	}
	req := wire.HandshakeRequest{
		Sys: &wire.HandshakeSys{
			Type:         o.clientType,
			Version:      o.clientVersion,
			ProtoVersion: json.RawMessage("0"),
			DictVersion:  o.dictVersion,
			Serializer:   o.serializer.Name(),
			RSA:          json.RawMessage("{}"),
			Resume:       resume,
		},
		User: user,
	}
	b, err := json.Marshal(&req)
	if err != nil {
		return nil, fmt.Errorf("pomelo client: handshake: %w", err)
	}
	return b, nil
}

// Request sends a REQUEST with req encoded by the client's serializer (a nil req sends an
// empty body) and waits for its RESPONSE, which it decodes into resp (nil to ignore it). An
// error response is returned as a *runtime.Error, so errors.Is(err, runtime.ErrUnknownRoute)
// works. Routes in the handshake's dictionary are sent compressed. If ctx ends first,
// Request returns ctx.Err() and a late response is dropped. If the connection ends first, it
// returns the reason (see Err).
func (c *Client) Request(ctx context.Context, route string, req, resp proto.Message) error {
	body, err := c.encode(route, req)
	if err != nil {
		return err
	}
	rb, isErr, err := c.RequestRaw(ctx, route, body)
	if err != nil {
		return err
	}
	if isErr {
		return decodeError(c.ser.Name(), rb)
	}
	if resp == nil {
		return nil
	}
	if err := c.ser.Unmarshal(rb, resp); err != nil {
		return fmt.Errorf("pomelo client: decode response of %s into %s: %w", route, resp.ProtoReflect().Descriptor().FullName(), err)
	}
	return nil
}

// RequestRaw is Request with raw bodies, for tests of odd bodies: it sends body as is and
// returns the response body, and whether it carries the error flag, without decoding.
func (c *Client) RequestRaw(ctx context.Context, route string, body []byte) (resp []byte, isErr bool, err error) {
	if err := ctx.Err(); err != nil {
		return nil, false, err
	}
	ch := make(chan result, 1)
	c.mu.Lock()
	if c.closing {
		err := c.err
		c.mu.Unlock()
		return nil, false, err
	}
	id := c.nextIDLocked()
	m := c.message(wire.Request, route, body)
	m.ID = id
	pkg, err := wire.AppendMessagePackage(nil, &m)
	if err != nil {
		c.mu.Unlock()
		return nil, false, fmt.Errorf("pomelo client: request %s: %w", route, err)
	}
	cl := &call{ch: ch}
	if c.opts.resume {
		cl.pkg = pkg
	}
	c.pending[id] = cl
	k := c.cur
	c.mu.Unlock()

	var werr error
	switch {
	case k != nil:
		werr = c.writeOn(ctx, k, pkg)
	case c.opts.resume:
		// Reconnecting: it goes with the unanswered requests once the
		// session is back (resumed), and by nothing else, so it goes once.
	default:
		werr = c.lostErr(nil)
	}
	if werr != nil {
		if !c.opts.resume || c.Err() != nil {
			c.forget(id)
			return nil, false, werr
		}
		// The connection dropped: the request goes again after the resume.
	}
	select {
	case r := <-ch:
		return r.body, r.isErr, r.err
	case <-ctx.Done():
		c.forget(id)
		return nil, false, ctx.Err()
	}
}

// Notify sends a NOTIFY with req encoded by the client's serializer (a nil req sends an empty
// body). The server never answers a notify.
func (c *Client) Notify(ctx context.Context, route string, req proto.Message) error {
	body, err := c.encode(route, req)
	if err != nil {
		return err
	}
	return c.NotifyRaw(ctx, route, body)
}

// NotifyRaw sends a NOTIFY with a raw body.
func (c *Client) NotifyRaw(ctx context.Context, route string, body []byte) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	m := c.message(wire.Notify, route, body)
	pkg, err := wire.AppendMessagePackage(nil, &m)
	if err != nil {
		return fmt.Errorf("pomelo client: notify %s: %w", route, err)
	}
	return c.write(ctx, pkg)
}

// Received returns how many DATA packages (responses and pushes) the client has received in
// its session, across every connection of a resumed session; a new session starts at 0.
func (c *Client) Received() uint64 { return c.received.Load() }

// SendRaw writes pkg as is, as one WebSocket frame (or as bytes on a TCP connection), for
// tests of bad input. pkg may hold anything: several packages, part of one, garbage.
func (c *Client) SendRaw(pkg []byte) error {
	return c.write(context.Background(), pkg)
}

// Handshake returns the server's handshake reply (heartbeat, dictionary, user). The caller
// must not modify it.
// With Config.Resume it is the reply of the latest connection.
func (c *Client) Handshake() *wire.HandshakeResponse { return c.hs.Load() }

// Dict returns a copy of the route dictionary in use (route to code); nil if there is none.
func (c *Client) Dict() map[string]uint16 {
	if d := c.dict.Load(); d != nil {
		return maps.Clone(d.codes)
	}
	return nil
}

// setDict makes codes the route dictionary.
func (c *Client) setDict(codes map[string]uint16) {
	d := &dictMaps{codes: maps.Clone(codes), routes: make(map[uint16]string, len(codes))}
	for r, code := range codes {
		d.routes[code] = r
	}
	c.dict.Store(d)
}

// Serializer returns the serializer of the message bodies.
func (c *Client) Serializer() runtime.Serializer { return c.ser }

// Done returns a channel that is closed when the connection is gone (with Config.Resume: when
// the Client is finished: closed, kicked, or it gave up reconnecting).
func (c *Client) Done() <-chan struct{} { return c.done }

// KickReason returns the reason of the KICK the server closed the connection with, and
// whether there was one.
func (c *Client) KickReason() (string, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.kickReason, c.kicked
}

// Err returns why the connection ended, or nil while it is open: ErrClosed after Close, a
// *KickError, ErrHeartbeatTimeout, or an error wrapping ErrConnectionLost or ErrProtocol.
func (c *Client) Err() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.err
}

// Close closes the connection (with a WebSocket close handshake, code 1000: the client leaves,
// and a resumable session closes at once) if it is still open, fails the pending requests with
// ErrClosed and releases the goroutines of the Client. It returns once the connection is gone.
// Close may be called more than once and after the connection ended; it always returns nil,
// Err tells why the connection ended. Over raw TCP, which has no close code, a resumable
// session's Close sends a KICK package first, which tells the server the client leaves.
func (c *Client) Close() error {
	c.closeOnce.Do(func() { close(c.closeCalled) })
	c.shutdown(ErrClosed, true)
	<-c.done
	return nil
}

// encode marshals a request body with the client's serializer.
func (c *Client) encode(route string, req proto.Message) ([]byte, error) {
	if req == nil {
		return nil, nil
	}
	b, err := c.ser.Marshal(nil, req)
	if err != nil {
		return nil, fmt.Errorf("pomelo client: encode %s for %s: %w", req.ProtoReflect().Descriptor().FullName(), route, err)
	}
	return b, nil
}

// message returns a message of type t for route, with the route compressed when the
// dictionary holds it (as the JS client does).
func (c *Client) message(t wire.MessageType, route string, body []byte) wire.Message {
	m := wire.Message{Type: t, Route: route, Body: body}
	if d := c.dict.Load(); d != nil {
		if code, ok := d.codes[route]; ok {
			m.Compressed, m.RouteCode, m.Route = true, code, ""
		}
	}
	return m
}

// nextIDLocked returns the next free request id. c.mu must be held.
func (c *Client) nextIDLocked() uint64 {
	for {
		c.lastID++
		if c.lastID >= maxRequestID {
			c.lastID = 1
		}
		if _, used := c.pending[c.lastID]; !used {
			return c.lastID
		}
	}
}

// forget drops a pending request; its response, if one comes, is dropped.
func (c *Client) forget(id uint64) {
	c.mu.Lock()
	delete(c.pending, id)
	c.mu.Unlock()
}

// write writes b as one frame on the connection in use. Writes are serialized; waiting for an
// ongoing write ends with ctx, but a write that has started is bounded only by the write
// timeout. A failed write ends the connection. With Config.Resume, while the client is
// reconnecting, write waits for the connection (or ctx, or the end of the Client).
func (c *Client) write(ctx context.Context, b []byte) error {
	for {
		c.mu.Lock()
		k, err := c.cur, c.err
		c.mu.Unlock()
		if err != nil {
			return err
		}
		if k != nil {
			return c.writeOn(ctx, k, b)
		}
		if !c.opts.resume {
			return ErrConnectionLost
		}
		if err := c.waitConnected(ctx); err != nil {
			return err
		}
	}
}

// writeOn writes b as one frame on k.
func (c *Client) writeOn(ctx context.Context, k *cconn, b []byte) error {
	select {
	case c.wsem <- struct{}{}:
	case <-ctx.Done():
		return ctx.Err()
	case <-k.done:
		return c.lostErr(k)
	}
	defer func() { <-c.wsem }()
	select {
	case <-k.done:
		return c.lostErr(k)
	default:
	}
	if err := k.tr.writeFrame(b, c.opts.writeTimeout); err != nil {
		err = fmt.Errorf("%w: write: %w", ErrConnectionLost, err)
		c.connEnded(k, err, 0)
		if e := c.Err(); e != nil {
			return e
		}
		return err
	}
	return nil
}

// lostErr is the error of a write on k, a connection that has ended: the
// Client's error once it has one, else why k ended (a *KickError for a
// kick read just before), which the Client's error is about to become.
func (c *Client) lostErr(k *cconn) error {
	if err := c.Err(); err != nil {
		return err
	}
	if k != nil && k.err != nil { // set before k.done was closed
		return k.err
	}
	return ErrConnectionLost
}

// shutdown finishes the Client once, with cause as the reason: it records the reason, fails
// the pending requests, closes the connection (WebSocket close code 1000 when graceful) and
// then closes done. Later calls do nothing.
func (c *Client) shutdown(cause error, graceful bool) {
	c.mu.Lock()
	if c.closing {
		c.mu.Unlock()
		return
	}
	c.closing = true
	c.err = cause
	var ke *KickError
	if errors.As(cause, &ke) {
		c.kicked, c.kickReason = true, ke.Reason
	}
	pending := c.pending
	c.pending = nil
	k := c.cur
	c.mu.Unlock()

	for _, cl := range pending {
		cl.ch <- result{err: cause} // capacity 1, and the read goroutine no longer finds it
	}
	if k != nil {
		code := websocket.StatusCode(0)
		if graceful {
			code = websocket.StatusNormalClosure
		}
		k.end(cause, code)
	}
	c.lifeCancel()
	close(c.done)
}

// now returns the monotonic time since c.start.
func (c *Client) now() int64 { return int64(time.Since(c.start)) }

// readLoop runs on its own goroutine and handles every package from the server on k until the
// connection ends.
func (c *Client) readLoop(k *cconn) {
	defer close(k.readDone)
	err := k.tr.readPackages(func(t wire.PackageType, body []byte) error { return c.handle(k, t, body) })
	var ke *KickError
	switch {
	case errors.As(err, &ke), errors.Is(err, ErrProtocol):
	case errors.Is(err, wire.ErrTooLarge), errors.Is(err, wire.ErrUnknownType), errors.Is(err, wire.ErrMalformed),
		errors.Is(err, wire.ErrTruncated) && !errors.Is(err, io.ErrUnexpectedEOF):
		err = fmt.Errorf("%w: %w", ErrProtocol, err)
	default:
		err = fmt.Errorf("%w: %w", ErrConnectionLost, err)
	}
	c.connEnded(k, err, 0)
}

// inUse, called once k has been made the connection in use, handles its
// end if it came before: connEnded did nothing then, k not being in use.
func (c *Client) inUse(k *cconn) {
	select {
	case <-k.done:
		c.connEnded(k, k.err, 0)
	default:
	}
}

// connEnded handles the end of connection k, for cause, closing it with the WebSocket close
// code (0: none). A resumable session whose connection broke (not a kick, not a protocol
// error) reconnects; otherwise the Client is finished.
func (c *Client) connEnded(k *cconn, cause error, code websocket.StatusCode) {
	var ke *KickError
	resumable := c.opts.resume && !errors.As(cause, &ke) && !errors.Is(cause, ErrProtocol)
	// k ends before it is looked up: inUse, called once k is made the
	// connection in use, looks at k.done after that, so whichever comes
	// second of the two sees k both in use and ended.
	k.end(cause, code)
	c.mu.Lock()
	current := c.cur == k
	reconnect := current && resumable && !c.closing && c.token != ""
	if reconnect {
		c.cur = nil
	}
	c.mu.Unlock()
	switch {
	case reconnect:
		go c.reconnect(k, cause)
	case current:
		c.shutdown(cause, false)
	}
}

// handle handles one package from the server on k. body may be reused once it returns. An
// error ends the connection.
func (c *Client) handle(k *cconn, t wire.PackageType, body []byte) error {
	k.lastRecv.Store(c.now())
	switch t {
	case wire.TypeHandshake:
		return c.handleHandshake(k, body)
	case wire.TypeHeartbeat:
		if c.opts.heartbeat {
			select {
			case k.hbRecv <- struct{}{}:
			default:
			}
		}
	case wire.TypeData:
		if !k.hsSeen {
			return fmt.Errorf("%w: DATA before the handshake", ErrProtocol)
		}
		c.received.Add(1)
		return c.handleData(body)
	case wire.TypeKick:
		reason, err := wire.ParseKick(body)
		if err != nil {
			reason = string(body) // keep whatever the server said
		}
		return &KickError{Reason: reason}
	default:
		return fmt.Errorf("%w: unexpected %v package", ErrProtocol, t)
	}
	return nil
}

// handleHandshake records the server's handshake reply and its route dictionary, and hands the
// reply to the dialling goroutine.
func (c *Client) handleHandshake(k *cconn, body []byte) error {
	if k.hsSeen {
		return fmt.Errorf("%w: second handshake", ErrProtocol)
	}
	k.hsSeen = true
	var hs wire.HandshakeResponse
	if err := json.Unmarshal(body, &hs); err != nil {
		return fmt.Errorf("%w: handshake reply %q: %w", ErrProtocol, body, err)
	}
	if hs.Code == wire.CodeOK {
		switch {
		case hs.Sys != nil && len(hs.Sys.Dict) > 0:
			c.setDict(hs.Sys.Dict)
		case c.opts.dict != nil && (hs.Sys == nil || hs.Sys.DictVersion == "" || hs.Sys.DictVersion == c.opts.dictVersion):
			c.setDict(c.opts.dict)
		}
		if hs.Sys == nil || hs.Sys.Resume == nil || !hs.Sys.Resume.Resumed {
			// A new session: its DATA count starts at 0, before any of its packages.
			c.received.Store(0)
		}
		if t, ok := k.tr.(*tcpTransport); ok && hs.Sys != nil && hs.Sys.Resume != nil {
			t.resumable.Store(true)
		}
		c.hs.Store(&hs)
	}
	k.hsCh <- &hs
	return nil
}

// handleData handles a DATA package: a response or a push.
func (c *Client) handleData(pkg []byte) error {
	m, err := wire.DecodeMessage(pkg)
	if err != nil {
		return fmt.Errorf("%w: %w", ErrProtocol, err)
	}
	var body []byte
	if m.Gzip {
		if body, err = c.inflate(m.Body); err != nil {
			return fmt.Errorf("%w: compressed %v body: %w", ErrProtocol, m.Type, err)
		}
	} else {
		body = bytes.Clone(m.Body)
		if body == nil {
			body = []byte{}
		}
	}
	switch m.Type {
	case wire.Response:
		c.mu.Lock()
		cl, ok := c.pending[m.ID]
		delete(c.pending, m.ID)
		c.mu.Unlock()
		if !ok {
			c.opts.logger.Debug("pomelo client: dropped response nobody waits for", "id", m.ID)
			return nil
		}
		cl.ch <- result{body: body, isErr: m.Error}
	case wire.Push:
		route := m.Route
		if m.Compressed {
			var r string
			ok := false
			if d := c.dict.Load(); d != nil {
				r, ok = d.routes[m.RouteCode]
			}
			if !ok {
				c.opts.logger.Warn("pomelo client: dropped push with a route code not in the dictionary", "code", m.RouteCode)
				return nil
			}
			route = r
		}
		c.pushes.enqueue(route, body)
	default:
		return fmt.Errorf("%w: server sent a %v message", ErrProtocol, m.Type)
	}
	return nil
}

// inflate decompresses a body carrying the 0x10 flag: gzip, or zlib (what Pitaya sends under
// that flag), at most the maximum package size.
func (c *Client) inflate(b []byte) ([]byte, error) {
	var (
		r   io.ReadCloser
		err error
	)
	if len(b) >= 2 && b[0] == 0x1f && b[1] == 0x8b {
		r, err = gzip.NewReader(bytes.NewReader(b))
	} else {
		r, err = zlib.NewReader(bytes.NewReader(b))
	}
	if err != nil {
		return nil, err
	}
	defer r.Close()
	out, err := io.ReadAll(io.LimitReader(r, int64(c.opts.maxPackage)+1))
	if err != nil {
		return nil, err
	}
	if len(out) > c.opts.maxPackage {
		return nil, fmt.Errorf("%w: decompressed body over %d bytes", wire.ErrTooLarge, c.opts.maxPackage)
	}
	return out, nil
}

// heartbeatLoop runs on its own goroutine while heartbeats are on, for connection k. As the JS
// client does, it answers each server HEARTBEAT with one of its own after the interval (server
// heartbeats arriving meanwhile are absorbed), and once it has sent one, gives the connection
// up when nothing has arrived for twice the interval since the later of the last package
// received and the last heartbeat sent (a WebSocket is closed with code 4000, never 1000).
func (c *Client) heartbeatLoop(k *cconn, interval time.Duration) {
	timeout := 2 * interval
	var (
		lastSent int64
		watch    *time.Timer
		watchC   <-chan time.Time
	)
	defer func() {
		if watch != nil {
			watch.Stop()
		}
	}()
	deadline := func() time.Duration {
		return time.Duration(max(k.lastRecv.Load(), lastSent)+int64(timeout)) - time.Duration(c.now())
	}
	for {
		select {
		case <-k.done:
			return
		case <-watchC:
			left := deadline()
			if left <= 0 {
				c.connEnded(k, ErrHeartbeatTimeout, statusGaveUp)
				return
			}
			watch.Reset(left)
		case <-k.hbRecv:
			t := time.NewTimer(interval)
			select {
			case <-k.done:
				t.Stop()
				return
			case <-t.C:
			}
			select { // absorb a server heartbeat that came during the wait
			case <-k.hbRecv:
			default:
			}
			if err := c.writeOn(context.Background(), k, wire.HeartbeatPackage); err != nil {
				return
			}
			lastSent = c.now()
			if watch == nil {
				watch = time.NewTimer(deadline())
				watchC = watch.C
			} else {
				watch.Reset(deadline())
			}
		}
	}
}
