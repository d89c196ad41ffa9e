// Package server is one pomelo-go server: a frontend that holds client
// connections, or a backend that runs handlers for requests forwarded by
// frontends. It owns the handler table, the filters, the session service
// (frontends), the channel service, and the handling chain that ties them
// together.
//
// The package is internal: users assemble servers with the App of the root
// package (github.com/pomelo-go/pomelo), which creates the Server, joins it to
// the cluster and calls the wiring methods (SetForwarder, SetOrigin, MountRPC,
// HandleForwarded, ...) in the order they need.
package server

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"slices"
	"strings"
	"sync"

	"connectrpc.com/connect"

	"github.com/pomelo-go/pomelo/internal/metrics"
	"github.com/pomelo-go/pomelo/internal/tracing"
	"github.com/pomelo-go/pomelo/runtime"
	"github.com/pomelo-go/pomelo/runtime/connector"
	"github.com/pomelo-go/pomelo/runtime/session"
	"github.com/pomelo-go/pomelo/runtime/wire"
)

// Config describes a server. Only ID and Type are required.
type Config struct {
	// ID is the server id, unique in the cluster ("connector-1").
	ID string
	// Type is the server type ("connector", "chat"). Handler routes whose
	// first part is this type run here.
	Type string
	// Frontend servers hold client connections.
	Frontend bool
	// WSAddr is the WebSocket listen address of a frontend ("127.0.0.1:3010";
	// port 0 picks one). Empty for none.
	WSAddr string
	// TCPAddr is the raw TCP listen address of a frontend. Empty for none.
	TCPAddr string
	// Connector tunes client connections (heartbeat, limits, TLS, origin
	// policy). Its Dict is filled in by the server.
	Connector connector.Config
	// DisableDict stops handing out the route dictionary.
	DisableDict bool
	// SessionPolicy says what binding a uid that is already online does.
	SessionPolicy session.Policy
	// CheckClient, when set, rejects a client by its handshake type and
	// version: returning false answers 501 (old client).
	CheckClient func(clientType, version string) bool
	// HandshakeHook, when set, receives the handshake's "user" object; its
	// result is returned as "user" in the reply, and an error answers 500.
	HandshakeHook func(ctx context.Context, s *session.Session, user json.RawMessage) (json.RawMessage, error)
	// Logger receives the server's logs (default slog.Default()).
	Logger *slog.Logger
	// ExposeErrorDetails is for development only: internal failures
	// (INTERNAL, UNAVAILABLE, TIMEOUT: errors returned by handlers that are
	// not *runtime.Error, panics, unreachable servers) are answered with
	// their detail instead of a generic message, to clients of a frontend,
	// to the frontends that forward to a backend and to the callers of its
	// remote handlers. Either way the detail is logged on the server.
	ExposeErrorDetails bool
	// Tracer makes the server's spans; nil is tracing off.
	Tracer *tracing.Tracer

	// Metrics, when set, receives the request counts and durations of a
	// frontend.
	Metrics *metrics.Server
}

// Forwarder runs a request on another server. The cluster layer implements
// it; without one, routes of other server types are answered UNAVAILABLE.
type Forwarder interface {
	// Forward runs route on a server of serverType for the session snap and
	// returns the encoded response body.
	Forward(ctx context.Context, serverType string, snap session.Snapshot, r *runtime.Request) (body []byte, err error)
}

// Server is one pomelo-go server.
type Server struct {
	cfg      Config
	log      *slog.Logger
	errLog   *errorLog
	handlers runtime.HandlerTable
	sessions *session.Service
	conn     *connector.Connector
	origin   session.Origin

	mu            sync.RWMutex
	globalFilters []runtime.Filter
	filters       []runtime.Filter
	errorHandler  func(ctx context.Context, r *runtime.Request, err error) error
	forwarder     Forwarder
	rpcMux        *http.ServeMux
	rpcPaths      map[string]bool // mounted with MountRPC
	rpcOpts       []connect.HandlerOption

	started   bool
	listeners []net.Listener
	serveErr  chan error // client listeners that stopped on their own
}

// New returns a server for cfg.
func New(cfg Config) (*Server, error) {
	if cfg.ID == "" || cfg.Type == "" {
		return nil, errors.New("pomelo: server config needs an ID and a Type")
	}
	if strings.ContainsAny(cfg.Type, ". \t") {
		return nil, fmt.Errorf("pomelo: server type %q must not contain dots or white space", cfg.Type)
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	s := &Server{
		cfg:      cfg,
		log:      cfg.Logger.With("server", cfg.ID),
		sessions: session.NewService(cfg.ID, cfg.SessionPolicy),
		rpcMux:   http.NewServeMux(),
		serveErr: make(chan error, 1),
	}
	s.errLog = newErrorLog(s.log)
	s.origin = s.sessions.Origin()
	return s, nil
}

// ID returns the server id.
func (s *Server) ID() string { return s.cfg.ID }

// Type returns the server type.
func (s *Server) Type() string { return s.cfg.Type }

// Frontend reports whether the server holds client connections.
func (s *Server) Frontend() bool { return s.cfg.Frontend }

// Config returns the server's configuration.
func (s *Server) Config() Config { return s.cfg }

// Tracer returns the server's tracer, nil when tracing is off.
func (s *Server) Tracer() *tracing.Tracer { return s.cfg.Tracer }

// Logger returns the server's logger.
func (s *Server) Logger() *slog.Logger { return s.log }

// Sessions returns the frontend session service (empty on a backend).
func (s *Server) Sessions() *session.Service { return s.sessions }

// Handlers returns the server's handler table.
func (s *Server) Handlers() *runtime.HandlerTable { return &s.handlers }

// RegisterHandler implements runtime.HandlerRegistrar. A route must belong
// to the server's type.
func (s *Server) RegisterHandler(d runtime.HandlerDesc) error {
	if d.ServerType != s.cfg.Type {
		return fmt.Errorf("pomelo: route %s is for server type %q, not %q", d.Route, d.ServerType, s.cfg.Type)
	}
	return s.handlers.RegisterHandler(d)
}

// MountRPC implements runtime.RPCRegistrar: it refuses an empty path or one
// that does not start with "/", a nil handler, a path mounted already and a
// path the RPC mux reports as conflicting with a mounted one.
func (s *Server) MountRPC(path string, h http.Handler) (err error) {
	switch {
	case s == nil || s.rpcMux == nil:
		return errors.New("pomelo: MountRPC on a server not made by server.New")
	case !strings.HasPrefix(path, "/"):
		return fmt.Errorf("pomelo: RPC path %q does not start with /", path)
	case h == nil:
		return fmt.Errorf("pomelo: RPC path %s has a nil handler", path)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.rpcPaths[path] {
		return fmt.Errorf("pomelo: RPC path %s mounted twice", path)
	}
	defer func() {
		// http.ServeMux panics on a pattern that conflicts with a mounted
		// one; that is the caller's mistake, reported as such.
		if p := recover(); p != nil {
			err = fmt.Errorf("pomelo: cannot mount RPC path %s: %v", path, p)
		}
	}()
	s.rpcMux.Handle(path, h)
	if s.rpcPaths == nil {
		s.rpcPaths = make(map[string]bool)
	}
	s.rpcPaths[path] = true
	return nil
}

// RPCHandlerOptions implements runtime.RPCRegistrar: the options set with
// SetRPCHandlerOptions, then the server's own, which recover panics of the
// handlers and log and redact their internal failures as for client
// requests (see Config.ExposeErrorDetails).
func (s *Server) RPCHandlerOptions() []connect.HandlerOption {
	if s == nil {
		return nil
	}
	s.mu.RLock()
	defer s.mu.RUnlock()
	return append(slices.Clip(s.rpcOpts), s.rpcOptions()...)
}

// SetRPCHandlerOptions sets the options of Connect handlers mounted after
// the call (the cluster layer adds authentication this way).
func (s *Server) SetRPCHandlerOptions(opts ...connect.HandlerOption) {
	s.mu.Lock()
	s.rpcOpts = opts
	s.mu.Unlock()
}

// RPCHandler returns the handler of everything mounted with MountRPC.
func (s *Server) RPCHandler() http.Handler { return s.rpcMux }

// SetForwarder sets how requests for other server types are run.
func (s *Server) SetForwarder(f Forwarder) {
	s.mu.Lock()
	s.forwarder = f
	s.mu.Unlock()
}

// SetOrigin sets how Local session views act on real sessions. The default
// is this server's own session service; the cluster layer replaces it with
// one that reaches other frontends.
func (s *Server) SetOrigin(o session.Origin) {
	s.mu.Lock()
	s.origin = o
	s.mu.Unlock()
}

// Origin returns how session views act on real sessions.
func (s *Server) Origin() session.Origin {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.origin
}

// GlobalFilter adds a filter that runs on the frontend for every client
// message, before it is run here or forwarded (Pomelo's globalFilter).
func (s *Server) GlobalFilter(f runtime.Filter) {
	s.mu.Lock()
	s.globalFilters = append(s.globalFilters, f)
	s.mu.Unlock()
}

// Filter adds a filter that runs on this server around the handlers it runs
// itself, for local and forwarded messages alike (Pomelo's filter).
func (s *Server) Filter(f runtime.Filter) {
	s.mu.Lock()
	s.filters = append(s.filters, f)
	s.mu.Unlock()
}

// SetErrorHandler sets a hook that sees every error before it is answered
// and may replace it. What it returns is then logged and redacted when it
// is an internal failure (see Config.ExposeErrorDetails).
func (s *Server) SetErrorHandler(fn func(ctx context.Context, r *runtime.Request, err error) error) {
	s.mu.Lock()
	s.errorHandler = fn
	s.mu.Unlock()
}

// Dict builds the route dictionary: every handler route and push route
// registered by generated code in this binary, plus this server's own
// routes.
func (s *Server) Dict() (*wire.Dict, error) {
	handlers := runtime.RegisteredRoutesOf(runtime.RouteHandler)
	handlers = append(handlers, s.handlers.Routes()...)
	return wire.NewDict(handlers, runtime.RegisteredRoutesOf(runtime.RoutePush))
}

// Start listens on the configured client addresses and starts serving. It
// returns once the listeners are open; WSAddr and TCPAddr then report the
// bound addresses.
func (s *Server) Start() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.started {
		return errors.New("pomelo: server already started")
	}
	s.started = true
	if !s.cfg.Frontend {
		return nil
	}
	ccfg := s.cfg.Connector
	var dict *wire.Dict
	if !s.cfg.DisableDict {
		d, err := s.Dict()
		if err != nil {
			return err
		}
		dict = d
	}
	if ccfg.Logger == nil {
		ccfg.Logger = s.log
	}
	s.conn = connector.New(ccfg, dict, s.sessions, chainHandler{s})
	if s.cfg.WSAddr != "" {
		l, err := net.Listen("tcp", s.cfg.WSAddr)
		if err != nil {
			return fmt.Errorf("pomelo: %s: listen websocket: %w", s.cfg.ID, err)
		}
		s.listeners = append(s.listeners, l)
		go s.serve("websocket", l, s.conn.ServeWS)
	}
	if s.cfg.TCPAddr != "" {
		l, err := net.Listen("tcp", s.cfg.TCPAddr)
		if err != nil {
			for _, l := range s.listeners {
				l.Close()
			}
			return fmt.Errorf("pomelo: %s: listen tcp: %w", s.cfg.ID, err)
		}
		s.listeners = append(s.listeners, l)
		go s.serve("tcp", l, s.conn.ServeTCP)
	}
	return nil
}

// serve runs a client listener; an error that stops it (Shutdown stops it
// with none) is reported on Err. serveErr holds one per listener, so the
// send never blocks.
func (s *Server) serve(what string, l net.Listener, serve func(net.Listener) error) {
	if err := serve(l); err != nil {
		s.serveErr <- fmt.Errorf("pomelo: %s: serve %s on %s: %w", s.cfg.ID, what, l.Addr(), err)
	}
}

// Err returns a channel that receives the error of a client listener that
// stopped accepting on its own (not by Shutdown): the server then serves no
// new clients on it. App.Serve reads it and shuts the server down.
func (s *Server) Err() <-chan error { return s.serveErr }

// Connector returns the client connector of a started frontend, or nil.
func (s *Server) Connector() *connector.Connector {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.conn
}

func (s *Server) addr(i int, want string) net.Addr {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if want == "" {
		return nil
	}
	if s.cfg.WSAddr == "" {
		i = 0
	}
	if i < len(s.listeners) {
		return s.listeners[i].Addr()
	}
	return nil
}

// WSAddr returns the bound WebSocket address, or nil.
func (s *Server) WSAddr() net.Addr { return s.addr(0, s.cfg.WSAddr) }

// TCPAddr returns the bound raw TCP address, or nil.
func (s *Server) TCPAddr() net.Addr { return s.addr(1, s.cfg.TCPAddr) }

// Shutdown stops accepting clients, kicks every session with reason
// (connector.KickReasonShutdown when empty), flushes and closes, waiting at
// most until ctx is done. It also reports the error log lines suppressed by
// the rate limit so far.
func (s *Server) Shutdown(ctx context.Context, reason string) error {
	defer s.errLog.flush()
	s.mu.RLock()
	c := s.conn
	s.mu.RUnlock()
	if c == nil {
		return nil
	}
	if reason == "" {
		reason = connector.KickReasonShutdown
	}
	return c.Shutdown(ctx, reason)
}
