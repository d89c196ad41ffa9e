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

	"google.golang.org/protobuf/proto"

	"github.com/pomelo-go/pomelo/runtime"
	"github.com/pomelo-go/pomelo/runtime/wire"
)

// Generated typed clients call a Client through runtime.ClientConn.
var _ runtime.ClientConn = (*Client)(nil)

// maxRequestID bounds request ids: they count up from 1 and wrap before 2^31.
const maxRequestID = 1 << 31

// Client is a connection to a Pomelo frontend server, in the WORKING state once Dial returns.
type Client struct {
	opts  options
	tr    transport
	ser   runtime.Serializer
	start time.Time // origin of the monotonic times below

	// Set by the read goroutine when the handshake reply arrives, before it is handed to Dial
	// through hsCh; read-only afterwards.
	hs     *wire.HandshakeResponse
	codes  map[string]uint16 // route dictionary
	routes map[uint16]string // its inverse
	hsSeen bool              // read goroutine only

	hsCh        chan *wire.HandshakeResponse // capacity 1
	hbRecv      chan struct{}                // capacity 1: a server heartbeat arrived
	wsem        chan struct{}                // capacity 1: held while writing
	done        chan struct{}                // closed once the connection is gone
	closeCalled chan struct{}                // closed by Close
	closeOnce   sync.Once

	lastRecv atomic.Int64 // nanoseconds since start of the last package received

	pushes *pushes

	mu         sync.Mutex
	closing    bool
	err        error
	kicked     bool
	kickReason string
	lastID     uint64
	pending    map[uint64]chan result
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
	hsBody, err := handshakeBody(&o)
	if err != nil {
		return nil, err
	}
	hsPkg, err := wire.AppendPackage(nil, wire.TypeHandshake, hsBody)
	if err != nil {
		return nil, fmt.Errorf("pomelo client: handshake: %w", err)
	}
	tr, err := dialTransport(ctx, addr, &o)
	if err != nil {
		return nil, err
	}
	c := &Client{
		opts:        o,
		tr:          tr,
		ser:         o.serializer,
		start:       time.Now(),
		hsCh:        make(chan *wire.HandshakeResponse, 1),
		hbRecv:      make(chan struct{}, 1),
		wsem:        make(chan struct{}, 1),
		done:        make(chan struct{}),
		closeCalled: make(chan struct{}),
		pushes:      newPushes(),
		pending:     make(map[uint64]chan result),
	}
	go c.readLoop()
	go c.dispatch()

	fail := func(err error) (*Client, error) {
		c.shutdown(err, false)
		c.closeOnce.Do(func() { close(c.closeCalled) })
		return nil, err
	}
	if err := c.write(ctx, hsPkg); err != nil {
		return fail(fmt.Errorf("pomelo client: handshake: %w", err))
	}
	var hs *wire.HandshakeResponse
	select {
	case hs = <-c.hsCh:
	case <-c.done:
		// The read goroutine hands the reply over before it ends the connection: a reply
		// followed at once by the close is in hsCh by now, and it is the answer.
		select {
		case hs = <-c.hsCh:
		default:
			return fail(fmt.Errorf("pomelo client: handshake: %w", c.Err()))
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
	if err := c.write(ctx, wire.HandshakeAckPackage); err != nil {
		return fail(fmt.Errorf("pomelo client: handshake ack: %w", err))
	}
	if o.heartbeat && hs.Sys != nil && hs.Sys.Heartbeat > 0 {
		go c.heartbeatLoop(time.Duration(hs.Sys.Heartbeat) * time.Second)
	}
	return c, nil
}

// handshakeBody returns the JSON of the client's handshake, shaped as the JS client's:
// {"sys":{"type":...,"version":...,"protoVersion":0,...,"rsa":{}},"user":{}}.
func handshakeBody(o *options) ([]byte, error) {
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
	c.pending[id] = ch
	c.mu.Unlock()

	m := c.message(wire.Request, route, body)
	m.ID = id
	pkg, err := wire.AppendMessagePackage(nil, &m)
	if err != nil {
		c.forget(id)
		return nil, false, fmt.Errorf("pomelo client: request %s: %w", route, err)
	}
	if err := c.write(ctx, pkg); err != nil {
		c.forget(id)
		return nil, false, err
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

// SendRaw writes pkg as is, as one WebSocket frame (or as bytes on a TCP connection), for
// tests of bad input. pkg may hold anything: several packages, part of one, garbage.
func (c *Client) SendRaw(pkg []byte) error {
	return c.write(context.Background(), pkg)
}

// Handshake returns the server's handshake reply (heartbeat, dictionary, user). The caller
// must not modify it.
func (c *Client) Handshake() *wire.HandshakeResponse { return c.hs }

// Dict returns a copy of the route dictionary in use (route to code); nil if there is none.
func (c *Client) Dict() map[string]uint16 { return maps.Clone(c.codes) }

// Serializer returns the serializer of the message bodies.
func (c *Client) Serializer() runtime.Serializer { return c.ser }

// Done returns a channel that is closed when the connection is gone.
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

// Close closes the connection (with a WebSocket close handshake) if it is still open, fails
// the pending requests with ErrClosed and releases the goroutines of the Client. It returns
// once the connection is gone. Close may be called more than once and after the connection
// ended; it always returns nil, Err tells why the connection ended.
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
	if code, ok := c.codes[route]; ok {
		m.Compressed, m.RouteCode, m.Route = true, code, ""
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

// write writes b as one frame. Writes are serialized; waiting for an ongoing write ends with
// ctx, but a write that has started is bounded only by the write timeout. A failed write
// closes the connection.
func (c *Client) write(ctx context.Context, b []byte) error {
	select {
	case c.wsem <- struct{}{}:
	case <-ctx.Done():
		return ctx.Err()
	case <-c.done:
		return c.Err()
	}
	defer func() { <-c.wsem }()
	if err := c.Err(); err != nil {
		return err
	}
	if err := c.tr.writeFrame(b, c.opts.writeTimeout); err != nil {
		c.shutdown(fmt.Errorf("%w: write: %w", ErrConnectionLost, err), false)
		return c.Err()
	}
	return nil
}

// shutdown ends the connection once, with cause as the reason: it records the reason, fails
// the pending requests, closes the transport and then closes done. Later calls do nothing.
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
	c.mu.Unlock()

	for _, ch := range pending {
		ch <- result{err: cause} // capacity 1, and the read goroutine no longer finds ch
	}
	_ = c.tr.close(graceful)
	close(c.done)
}

// now returns the monotonic time since c.start.
func (c *Client) now() int64 { return int64(time.Since(c.start)) }

// readLoop runs on its own goroutine and handles every package from the server until the
// connection ends.
func (c *Client) readLoop() {
	err := c.tr.readPackages(c.handle)
	var ke *KickError
	switch {
	case errors.As(err, &ke), errors.Is(err, ErrProtocol):
	case errors.Is(err, wire.ErrTooLarge), errors.Is(err, wire.ErrUnknownType), errors.Is(err, wire.ErrMalformed),
		errors.Is(err, wire.ErrTruncated) && !errors.Is(err, io.ErrUnexpectedEOF):
		err = fmt.Errorf("%w: %w", ErrProtocol, err)
	default:
		err = fmt.Errorf("%w: %w", ErrConnectionLost, err)
	}
	c.shutdown(err, false)
}

// handle handles one package from the server. body may be reused once it returns. An error
// ends the connection.
func (c *Client) handle(t wire.PackageType, body []byte) error {
	c.lastRecv.Store(c.now())
	switch t {
	case wire.TypeHandshake:
		return c.handleHandshake(body)
	case wire.TypeHeartbeat:
		if c.opts.heartbeat {
			select {
			case c.hbRecv <- struct{}{}:
			default:
			}
		}
	case wire.TypeData:
		if !c.hsSeen {
			return fmt.Errorf("%w: DATA before the handshake", ErrProtocol)
		}
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
// reply to Dial.
func (c *Client) handleHandshake(body []byte) error {
	if c.hsSeen {
		return fmt.Errorf("%w: second handshake", ErrProtocol)
	}
	c.hsSeen = true
	var hs wire.HandshakeResponse
	if err := json.Unmarshal(body, &hs); err != nil {
		return fmt.Errorf("%w: handshake reply %q: %w", ErrProtocol, body, err)
	}
	if hs.Code == wire.CodeOK {
		switch {
		case hs.Sys != nil && len(hs.Sys.Dict) > 0:
			c.codes = maps.Clone(hs.Sys.Dict)
		case c.opts.dict != nil && (hs.Sys == nil || hs.Sys.DictVersion == "" || hs.Sys.DictVersion == c.opts.dictVersion):
			c.codes = maps.Clone(c.opts.dict)
		}
		if len(c.codes) > 0 {
			c.routes = make(map[uint16]string, len(c.codes))
			for r, code := range c.codes {
				c.routes[code] = r
			}
		}
	}
	c.hs = &hs
	c.hsCh <- &hs
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
		ch, ok := c.pending[m.ID]
		delete(c.pending, m.ID)
		c.mu.Unlock()
		if !ok {
			c.opts.logger.Debug("pomelo client: dropped response nobody waits for", "id", m.ID)
			return nil
		}
		ch <- result{body: body, isErr: m.Error}
	case wire.Push:
		route := m.Route
		if m.Compressed {
			r, ok := c.routes[m.RouteCode]
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

// heartbeatLoop runs on its own goroutine while heartbeats are on. As the JS client does, it
// answers each server HEARTBEAT with one of its own after the interval (server heartbeats
// arriving meanwhile are absorbed), and once it has sent one, closes the connection when
// nothing has arrived for twice the interval since the later of the last package received and
// the last heartbeat sent.
func (c *Client) heartbeatLoop(interval time.Duration) {
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
		return time.Duration(max(c.lastRecv.Load(), lastSent)+int64(timeout)) - time.Duration(c.now())
	}
	for {
		select {
		case <-c.done:
			return
		case <-watchC:
			left := deadline()
			if left <= 0 {
				c.shutdown(ErrHeartbeatTimeout, false)
				return
			}
			watch.Reset(left)
		case <-c.hbRecv:
			t := time.NewTimer(interval)
			select {
			case <-c.done:
				t.Stop()
				return
			case <-t.C:
			}
			select { // absorb a server heartbeat that came during the wait
			case <-c.hbRecv:
			default:
			}
			if err := c.write(context.Background(), wire.HeartbeatPackage); err != nil {
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
