// Package connector holds the client side of a frontend server: WebSocket
// and raw TCP acceptors, the per-connection state machine of the Pomelo
// protocol (handshake, ack, heartbeat, kick), one reader per connection and
// a coalescing writer that runs only while something is queued, and the
// per-session inbox that hands messages to the handling chain in arrival
// order.
//
// A frontend's App (github.com/pomelo-go/pomelo) runs the connector; users
// tune it with Config (heartbeat, limits, TLS, origin policy), given as the
// App's Config.Connector, and read the kick reasons it sends.
package connector

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pomelo-go/pomelo/internal/workpool"
	"github.com/pomelo-go/pomelo/runtime/session"
	"github.com/pomelo-go/pomelo/runtime/wire"
)

// Handler is what the connector hands work to: the server's handling chain.
type Handler interface {
	// Handshake checks a client's handshake. It returns the "user" part of
	// the reply; an error with code 501 (see HandshakeError) rejects an old
	// client, any other error answers 500. Either way the connection closes.
	Handshake(ctx context.Context, s *session.Session, req *wire.HandshakeRequest) (user json.RawMessage, err error)
	// ServeMessage handles one REQUEST or NOTIFY of s. Calls for one session
	// are made one at a time, in arrival order. m.Body is owned by the
	// callee.
	ServeMessage(ctx context.Context, s *session.Session, m *wire.Message)
	// Reject answers a REQUEST that will not be served with err: its route
	// code is unknown, or it was accepted but the connection closed (kick,
	// shutdown) before it ran (err named CLOSED). It must not block.
	Reject(s *session.Session, m *wire.Message, err error)
}

// HandshakeError rejects a handshake with a protocol code: 501 for a client
// that is too old, 500 otherwise.
type HandshakeError struct {
	Code    int
	Message string
}

// Error implements error.
func (e *HandshakeError) Error() string { return e.Message }

// Defaults of Config, sized for one frontend process.
const (
	// DefaultHeartbeat is the default Config.Heartbeat.
	DefaultHeartbeat = 10 * time.Second
	// DefaultHandshakeTimeout is the default Config.HandshakeTimeout.
	DefaultHandshakeTimeout = 10 * time.Second
	// DefaultMaxConnections is the default Config.MaxConnections.
	DefaultMaxConnections = 10000
	// NoConnectionLimit as Config.MaxConnections lifts the cap.
	NoConnectionLimit = -1
)

// Config tunes a Connector. The zero value is usable: every limit has a
// default.
type Config struct {
	// Heartbeat is the heartbeat interval sent to clients (default
	// DefaultHeartbeat, 10s; whole seconds on the wire).
	Heartbeat time.Duration
	// HeartbeatTimeout closes a connection from which nothing arrived for
	// this long (default 2 x Heartbeat).
	HeartbeatTimeout time.Duration
	// HandshakeTimeout closes a connection that has not completed the
	// handshake and ack in this time; it also bounds the HTTP upgrade
	// request of a WebSocket (default DefaultHandshakeTimeout, 10s).
	HandshakeTimeout time.Duration
	// MaxPackageSize is the largest package body accepted from a client
	// (default 256 KiB). A larger one closes the connection before anything
	// is allocated for it.
	MaxPackageSize int
	// MaxConnections caps concurrent client connections (0 means
	// DefaultMaxConnections, 10000; NoConnectionLimit, or any negative
	// value, lifts the cap). A connection beyond it is refused at once: a TCP
	// connection is closed, a WebSocket upgrade answered 503.
	MaxConnections int
	// MaxInFlight caps the messages of one session waiting in its inbox
	// (default 64). While that many wait, the connection's reader stops
	// reading the socket (back-pressure: TCP flow control slows the client
	// down) until one has started; nothing beyond it is buffered and nothing
	// is refused. The heartbeat timeout does not run while reading is paused.
	MaxInFlight int
	// SendQueueBytes caps the bytes queued for one client (default 4 MiB); a
	// client that does not read fast enough is kicked ("slow consumer").
	SendQueueBytes int
	// WriteTimeout bounds one write to a client (default 10s).
	WriteTimeout time.Duration
	// PushFlushInterval, when positive, holds the pushes to a connection
	// for up to this long so that the pushes of that time share one write
	// (one frame, one system call): fewer writes per delivery under a
	// stream of pushes, for up to this much added latency per push. A
	// response, a heartbeat, a kick or a close is written at once, with
	// whatever is held; a connection holding pushes keeps a goroutine
	// while it waits. Zero (the default) writes every push at once, as
	// Pomelo's default push scheduler does (its "buffer" scheduler flushes
	// every 20 ms). docs/BENCHMARKS.md measures 2 ms.
	PushFlushInterval time.Duration
	// OriginPatterns lists host patterns (path.Match syntax, as in
	// github.com/coder/websocket) allowed as the Origin of browser
	// WebSocket connections besides the server's own host. Nil allows any
	// origin, as Pomelo does.
	OriginPatterns []string
	// DisableCompression declines permessage-deflate.
	DisableCompression bool
	// TLSConfig, when set, serves wss and TLS-wrapped TCP.
	TLSConfig *tls.Config
	// Logger receives connection errors (default slog.Default()).
	Logger *slog.Logger

	// ResumeWindow is how long a resumable session (one whose client asked
	// for it in its handshake, docs/PROTOCOL.md section 10) stays
	// suspended after its connection dropped without a kick, waiting for
	// the client to resume it (default DefaultResumeWindow, 30s; NoResume,
	// or any negative value, turns resume off). At most MaxConnections
	// sessions are suspended at once: beyond that a dropped session closes
	// as it would without resume.
	ResumeWindow time.Duration
	// ResumeBufferBytes and ResumeBufferPackages bound the DATA packages a
	// resumable session keeps for a replay (defaults
	// DefaultResumeBufferBytes, 256 KiB, and DefaultResumeBufferPackages,
	// 256): while connected, the most recent ones; while suspended, every
	// one sent since the drop, which closes the session when it overflows.
	ResumeBufferBytes    int
	ResumeBufferPackages int

	// closeGrace bounds how long a closing connection waits for the client
	// to close its side (the WebSocket close handshake, the TCP half-close):
	// defaultCloseGrace; tests shorten it.
	closeGrace time.Duration
}

// defaultCloseGrace is the close grace of every connection.
const defaultCloseGrace = 2 * time.Second

func (c *Config) setDefaults() {
	if c.Heartbeat <= 0 {
		c.Heartbeat = DefaultHeartbeat
	}
	if c.HeartbeatTimeout <= 0 {
		c.HeartbeatTimeout = 2 * c.Heartbeat
	}
	if c.HandshakeTimeout <= 0 {
		c.HandshakeTimeout = DefaultHandshakeTimeout
	}
	if c.MaxConnections == 0 {
		c.MaxConnections = DefaultMaxConnections
	}
	if c.MaxPackageSize <= 0 {
		c.MaxPackageSize = 256 << 10
	}
	if c.MaxPackageSize > wire.MaxLength {
		c.MaxPackageSize = wire.MaxLength
	}
	if c.MaxInFlight <= 0 {
		c.MaxInFlight = 64
	}
	if c.SendQueueBytes <= 0 {
		c.SendQueueBytes = 4 << 20
	}
	if c.WriteTimeout <= 0 {
		c.WriteTimeout = 10 * time.Second
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	if c.ResumeWindow == 0 {
		c.ResumeWindow = DefaultResumeWindow
	}
	if c.ResumeBufferBytes <= 0 {
		c.ResumeBufferBytes = DefaultResumeBufferBytes
	}
	if c.ResumeBufferPackages <= 0 {
		c.ResumeBufferPackages = DefaultResumeBufferPackages
	}
	if c.closeGrace <= 0 {
		c.closeGrace = defaultCloseGrace
	}
}

// Connector accepts client connections for one frontend server.
type Connector struct {
	cfg      Config
	sessions *session.Service
	h        Handler
	dict     *wire.Dict // offered to clients; nil for none
	hsOK     []byte     // cached success reply when the client has the dict

	ctx     context.Context
	cancel  context.CancelFunc
	workers *workpool.Pool

	mu        sync.Mutex
	listeners map[net.Listener]struct{}
	conns     map[*conn]struct{}
	links     map[string]*link // resumable sessions by their current token
	closed    bool
	count     atomic.Int64
	byKind    [2]atomic.Int64 // open connections: WebSocket, TCP
	wg        sync.WaitGroup
}

// New returns a connector configured by cfg that creates sessions in
// sessions and hands messages to h. dict is the route dictionary offered to
// clients in the handshake and used for the pushes to sessions (nil for
// none); the server builds it from the registered routes.
func New(cfg Config, dict *wire.Dict, sessions *session.Service, h Handler) *Connector {
	cfg.setDefaults()
	ctx, cancel := context.WithCancel(context.Background())
	c := &Connector{
		cfg:       cfg,
		dict:      dict,
		sessions:  sessions,
		h:         h,
		ctx:       ctx,
		cancel:    cancel,
		listeners: make(map[net.Listener]struct{}),
		conns:     make(map[*conn]struct{}),
		links:     make(map[string]*link),
	}
	c.workers = workpool.New(ctx)
	sessions.SetDict(dict)
	return c
}

// Config returns the connector's configuration, defaults filled in.
func (c *Connector) Config() Config { return c.cfg }

// Count returns the number of open connections.
func (c *Connector) Count() int { return int(c.count.Load()) }

// CountByTransport returns the number of open connections over WebSocket
// and over raw TCP.
func (c *Connector) CountByTransport() (ws, tcp int) {
	return int(c.byKind[0].Load()), int(c.byKind[1].Load())
}

// kindCount is the per-transport counter of cn.
func (c *Connector) kindCount(cn *conn) *atomic.Int64 {
	if _, ok := cn.transport.(*tcpTransport); ok {
		return &c.byKind[1]
	}
	return &c.byKind[0]
}

var errClosed = errors.New("connector: closed")

// cancelGrace is how long Shutdown waits, once its ctx is done and the
// running requests are cancelled, for their answers to be flushed.
const cancelGrace = 100 * time.Millisecond

func (c *Connector) track(l net.Listener) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return errClosed
	}
	c.listeners[l] = struct{}{}
	return nil
}

func (c *Connector) untrack(l net.Listener) {
	c.mu.Lock()
	delete(c.listeners, l)
	c.mu.Unlock()
}

// admit reserves a connection slot.
func (c *Connector) admit() bool {
	n := c.count.Add(1)
	if c.cfg.MaxConnections > 0 && n > int64(c.cfg.MaxConnections) {
		c.count.Add(-1)
		return false
	}
	return true
}

func (c *Connector) addConn(cn *conn) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return false
	}
	c.conns[cn] = struct{}{}
	c.kindCount(cn).Add(1)
	c.wg.Add(1)
	cn.start() // under c.mu: Shutdown never sees a connection without its session
	return true
}

func (c *Connector) removeConn(cn *conn) {
	c.mu.Lock()
	delete(c.conns, cn)
	c.mu.Unlock()
	c.kindCount(cn).Add(-1)
	c.count.Add(-1)
	c.wg.Done()
}

// ServeTCP accepts raw TCP clients on l until l is closed or the connector
// shuts down.
func (c *Connector) ServeTCP(l net.Listener) error {
	if c.cfg.TLSConfig != nil {
		l = tls.NewListener(l, c.cfg.TLSConfig)
	}
	if err := c.track(l); err != nil {
		l.Close()
		return err
	}
	defer c.untrack(l)
	var delay time.Duration
	for {
		nc, err := l.Accept()
		if err != nil {
			if c.ctx.Err() != nil || errors.Is(err, net.ErrClosed) {
				return nil
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				delay = min(max(2*delay, 5*time.Millisecond), time.Second)
				time.Sleep(delay)
				continue
			}
			return err
		}
		delay = 0
		if !c.admit() {
			nc.Close()
			continue
		}
		c.serve(newTCPTransport(nc, c.cfg.MaxPackageSize))
	}
}

// ServeWS accepts WebSocket clients on l (any path) until l is closed or
// the connector shuts down.
func (c *Connector) ServeWS(l net.Listener) error {
	if err := c.track(l); err != nil {
		l.Close()
		return err
	}
	defer c.untrack(l)
	srv := &http.Server{Handler: c, ReadHeaderTimeout: c.cfg.HandshakeTimeout, ErrorLog: slog.NewLogLogger(c.cfg.Logger.Handler(), slog.LevelDebug)}
	go func() {
		<-c.ctx.Done()
		srv.Close()
	}()
	var err error
	if c.cfg.TLSConfig != nil {
		srv.TLSConfig = c.cfg.TLSConfig
		err = srv.ServeTLS(l, "", "")
	} else {
		err = srv.Serve(l)
	}
	if errors.Is(err, http.ErrServerClosed) || c.ctx.Err() != nil {
		return nil
	}
	return err
}

// ServeHTTP upgrades a request to a WebSocket client connection, so the
// connector can be mounted on an existing HTTP server at any path.
func (c *Connector) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if !c.admit() {
		http.Error(w, "too many connections", http.StatusServiceUnavailable)
		return
	}
	t, err := acceptWS(w, r, &c.cfg)
	if err != nil {
		c.count.Add(-1)
		return
	}
	c.serve(t)
}

func (c *Connector) serve(t transport) {
	cn := newConn(c, t)
	if !c.addConn(cn) {
		c.count.Add(-1)
		t.closeNow()
		return
	}
	go cn.readLoop() // the writer starts when something is queued
}

// Shutdown stops accepting connections and messages (what a client sends
// from now on is not read as a request), lets the message each session is
// running finish, answers the messages accepted but not started CLOSED,
// then kicks every session with reason (or closes it when reason is empty),
// flushes and closes: every accepted request gets exactly one response
// before the KICK. Suspended sessions (resume) are closed too. It returns
// when every connection is gone and every session closed, or when ctx is
// done: then the running requests' contexts are cancelled (their answer is
// CLOSED), and what is left is closed at once after a short grace.
func (c *Connector) Shutdown(ctx context.Context, reason string) error {
	c.mu.Lock()
	c.closed = true
	for l := range c.listeners {
		l.Close()
	}
	conns := make([]*conn, 0, len(c.conns))
	for cn := range c.conns {
		conns = append(conns, cn)
	}
	links := make([]*link, 0, len(c.links))
	for _, l := range c.links {
		links = append(links, l)
	}
	c.mu.Unlock()
	defer c.cancel()
	for _, cn := range conns {
		cn.halt()
	}

	// Kick and flush, each after its accepted requests are answered. Close
	// hooks run in the kicks; ctx bounds them too.
	kicked := make(chan struct{})
	go func() {
		defer close(kicked)
		for _, cn := range conns {
			cn.shutdown(reason)
		}
		// Suspended sessions have no connection: they close now.
		for _, l := range links {
			c.sessions.CloseSession(l.sess, reason, reason != "")
		}
	}()
	done := make(chan struct{})
	go func() {
		c.wg.Wait()
		close(done)
	}()
	select {
	case <-done:
		// Every connection is gone; the suspended sessions close too.
		select {
		case <-kicked:
			return nil
		case <-ctx.Done():
			return ctx.Err()
		}
	case <-ctx.Done():
		c.cancel()
		select { // let cancelled requests answer CLOSED and flush
		case <-done:
			return ctx.Err()
		case <-time.After(cancelGrace):
		}
		for _, cn := range conns {
			cn.transport.closeNow()
		}
		<-done
		return ctx.Err()
	}
}
