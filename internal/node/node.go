package node

import (
	"cmp"
	"context"
	"crypto/subtle"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"connectrpc.com/connect"

	"github.com/pomelo-go/pomelo/gen/pomelo/sys/v1/sysv1connect"
	"github.com/pomelo-go/pomelo/internal/metrics"
	"github.com/pomelo-go/pomelo/internal/server"
	"github.com/pomelo-go/pomelo/internal/tracing"
	"github.com/pomelo-go/pomelo/runtime"
	"github.com/pomelo-go/pomelo/runtime/cluster"
)

// Config describes how a server joins the cluster.
type Config struct {
	// Self describes this server; its ID and Type must match the server's.
	Self cluster.ServerInfo
	// Membership lists the cluster's servers (default: a Static holding
	// only Self). A Registrar is registered with on Start.
	Membership cluster.Membership
	// Secret authenticates servers to each other (a bearer token on every
	// RPC). Join refuses an empty secret unless Insecure is set.
	Secret string
	// Insecure allows an empty Secret: then any peer that reaches the RPC
	// listener is trusted. For tests and fully isolated networks only.
	Insecure bool
	// ServerTLS, when set, serves RPC over TLS (HTTP/2 negotiated by ALPN)
	// instead of cleartext HTTP/2 (h2c). It needs a certificate; for mutual
	// TLS set ClientCAs and ClientAuth to tls.RequireAndVerifyClientCert.
	ServerTLS *tls.Config
	// ClientTLS, when set, makes this server dial the others over TLS with
	// this configuration (RootCAs to verify them; Certificates to present
	// under mutual TLS). Every server of a cluster sets both ServerTLS and
	// ClientTLS, or neither.
	ClientTLS *tls.Config
	// AuthTimeout is how long a connection to the RPC listener may stay
	// open before completing an authenticated request (default 10s): one
	// that sends nothing, or only requests without the secret, is closed
	// then. Authenticated connections are not limited by it.
	AuthTimeout time.Duration
	// MaxAuthFailures is how many requests without the secret one
	// connection may send before it is closed (default 3).
	MaxAuthFailures int
	// IdleTimeout closes an RPC connection with no open stream for that
	// long (default 2m; the dialing side drops its idle connections after
	// 90s). Streams in use, such as forward and watch streams, keep it open.
	IdleTimeout time.Duration
	// MaxConcurrentStreams caps the streams (requests) open at once on one
	// RPC connection (default 250); a peer that needs more opens another
	// connection.
	MaxConcurrentStreams int
	// Listener, when set, is the RPC listener (tests pass one bound to port
	// 0); otherwise the node listens on Self.RPCAddr().
	Listener net.Listener
	// CallTimeout is the deadline of a remote call whose context has none
	// (default 5s).
	CallTimeout time.Duration
	// ForwardTimeout is the deadline of a forwarded client request whose
	// context has none (default 30s; a timeout filter sets a shorter one).
	// The backend's handler context carries the same deadline, and the
	// client is answered TIMEOUT when it passes.
	ForwardTimeout time.Duration
	// Routes sets route functions per server type (default Rendezvous).
	Routes map[string]cluster.RouteFunc
	// DrainDelay is how long Close waits after leaving the membership before
	// it stops serving, so that every server has seen it leave (default 0;
	// set it to the membership's propagation delay, such as an etcd watch's).
	DrainDelay time.Duration
	// Logger receives the node's logs (default: the server's).
	Logger *slog.Logger
}

// Node is a server's membership of the cluster. It implements
// runtime.RemoteInvoker (typed remote clients) and runtime.Pusher.
type Node struct {
	cfg     Config
	srv     *server.Server
	log     *slog.Logger
	metrics *metrics.Server // the server's; nil records nothing
	http    *http.Client
	view    atomic.Pointer[view]

	mu       sync.Mutex
	conns    map[string]*peer // by server id
	routes   map[string]cluster.RouteFunc
	unsub    func()
	rpcSrv   *http.Server
	ln       net.Listener
	guard    *guardListener // wraps ln
	closed   bool
	closeCh  chan struct{}
	serveErr chan error // the RPC listener stopped on its own

	tracer   *tracing.Tracer // nil: tracing off
	fwd      *forwarder
	pushes   *pusher
	watchers *watchHub
	bsess    *BackendSessions
	filters  sync.Map // broadcast filter name -> BroadcastFilter
	locator  atomic.Pointer[cluster.Locator]
	closeFns []func(cluster.SessionEvent)
	// suspendFns and resumeFns hear of watched sessions suspended and
	// resumed (session resume, docs/PROTOCOL.md section 10).
	suspendFns []func(cluster.SessionEvent)
	resumeFns  []func(cluster.SessionEvent)

	// orig is the Origin of forwarded messages' sessions.
	orig origin
	// fwdSnapshots counts the session snapshots this backend's Forward
	// streams keep.
	fwdSnapshots atomic.Int64
}

type view struct {
	byID   map[string]cluster.ServerInfo
	byType map[string][]cluster.ServerInfo // sorted by id
}

func newView(servers []cluster.ServerInfo) *view {
	v := &view{byID: map[string]cluster.ServerInfo{}, byType: map[string][]cluster.ServerInfo{}}
	for _, s := range servers {
		v.byID[s.ID] = s
		v.byType[s.Type] = append(v.byType[s.Type], s)
	}
	for _, l := range v.byType {
		sortServers(l)
	}
	return v
}

// Join connects srv to the cluster: it mounts the sys services on the
// server's RPC handler, makes the server forward routes of other types to
// them, and routes session operations of backends to the frontends. Call
// Start to begin serving RPC.
func Join(srv *server.Server, cfg Config) (*Node, error) {
	if cfg.Self.ID != srv.ID() || cfg.Self.Type != srv.Type() {
		return nil, fmt.Errorf("cluster: Self is %s/%s but the server is %s/%s", cfg.Self.ID, cfg.Self.Type, srv.ID(), srv.Type())
	}
	cfg.Self.Frontend = srv.Frontend()
	if cfg.Listener == nil {
		if err := cfg.Self.Validate(); err != nil {
			return nil, err
		}
	}
	if cfg.Membership == nil {
		cfg.Membership = cluster.NewStatic(cfg.Self)
	}
	if cfg.CallTimeout <= 0 {
		cfg.CallTimeout = 5 * time.Second
	}
	if cfg.ForwardTimeout <= 0 {
		cfg.ForwardTimeout = 30 * time.Second
	}
	if cfg.Secret == "" && !cfg.Insecure {
		return nil, errors.New("cluster: empty Secret: set a shared secret (or Insecure to run without authentication)")
	}
	if cfg.AuthTimeout <= 0 {
		cfg.AuthTimeout = defaultAuthTimeout
	}
	if cfg.MaxAuthFailures <= 0 {
		cfg.MaxAuthFailures = defaultMaxAuthFailures
	}
	if cfg.IdleTimeout <= 0 {
		cfg.IdleTimeout = defaultRPCIdleTimeout
	}
	if cfg.MaxConcurrentStreams <= 0 {
		cfg.MaxConcurrentStreams = defaultMaxConcurrentStreams
	}
	if cfg.Logger == nil {
		cfg.Logger = srv.Logger()
	}
	var protocols http.Protocols
	if cfg.ClientTLS != nil {
		protocols.SetHTTP2(true)
	} else {
		protocols.SetUnencryptedHTTP2(true)
	}
	tr := &http.Transport{
		Protocols:           &protocols,
		TLSClientConfig:     cfg.ClientTLS.Clone(),
		DialContext:         (&net.Dialer{Timeout: 2 * time.Second, KeepAlive: 15 * time.Second}).DialContext,
		TLSHandshakeTimeout: 5 * time.Second,
		MaxIdleConnsPerHost: 8,
		IdleConnTimeout:     90 * time.Second,
	}
	n := &Node{
		cfg:      cfg,
		srv:      srv,
		log:      cfg.Logger,
		metrics:  srv.Config().Metrics,
		http:     &http.Client{Transport: authTransport{base: tr, secret: cfg.Secret, tls: cfg.ClientTLS != nil}},
		conns:    map[string]*peer{},
		routes:   map[string]cluster.RouteFunc{},
		closeCh:  make(chan struct{}),
		serveErr: make(chan error, 1),
		tracer:   srv.Tracer(),
	}
	for t, fn := range cfg.Routes {
		n.routes[t] = fn
	}
	n.fwd = newForwarder(n)
	n.orig = origin{n: n}
	n.pushes = newPusher(n)
	n.watchers = newWatchHub()
	n.bsess = &BackendSessions{n: n}
	// Subscribe once the node is ready for setMembers: a membership may
	// call it at once with its current list.
	n.view.Store(newView(cfg.Membership.Servers()))
	n.unsub = cfg.Membership.Subscribe(n.setMembers)

	// Cluster messages are small and the network trusted: compressing them
	// costs more CPU than it saves (gzip was 18% of a forwarded message's
	// CPU), so only large ones are compressed.
	opts := []connect.HandlerOption{
		connect.WithReadMaxBytes(maxStreamMessage),
		connect.WithCompressMinBytes(compressMinBytes),
		// Tracing (when on) is outermost, so that its spans see the
		// errors as the caller gets them.
		connect.WithInterceptors(append(n.tracer.Interceptors(), runtime.ErrorInterceptor(), srv.Config().Metrics.RPCInterceptor())...),
	}
	srv.SetRPCHandlerOptions(opts...)
	opts = srv.RPCHandlerOptions() // with the server's: panic recovery, error logging
	mount := func(path string, h http.Handler) error {
		if err := srv.MountRPC(path, h); err != nil {
			n.unsub()
			return err
		}
		return nil
	}
	if srv.Frontend() {
		if err := mount(sysv1connect.NewSessionRemoteHandler(&sessionRemote{n: n}, opts...)); err != nil {
			return nil, err
		}
		if err := mount(sysv1connect.NewChannelRemoteHandler(&channelRemote{n: n}, opts...)); err != nil {
			return nil, err
		}
		srv.Sessions().OnClosed(n.onSessionClosed)
		srv.Sessions().OnSuspended(n.onSessionSuspended)
		srv.Sessions().OnResumed(n.onSessionResumed)
	}
	if err := mount(sysv1connect.NewMsgRemoteHandler(&msgRemote{n: n}, opts...)); err != nil {
		return nil, err
	}
	if err := mount(sysv1connect.NewAdminRemoteHandler(&adminRemote{n: n}, opts...)); err != nil {
		return nil, err
	}
	srv.SetForwarder(n.fwd)
	srv.SetOrigin(&origin{n: n})
	return n, nil
}

// Self returns this server's description.
func (n *Node) Self() cluster.ServerInfo { return n.cfg.Self }

// Server returns the server.
func (n *Node) Server() *server.Server { return n.srv }

// Start opens the RPC listener (unless one was given), starts serving the
// sys services and remotes, and registers with a Registrar membership.
func (n *Node) Start() error {
	ln := n.cfg.Listener
	if ln == nil {
		var err error
		ln, err = net.Listen("tcp", n.cfg.Self.RPCAddr())
		if err != nil {
			return fmt.Errorf("cluster: %s: listen rpc: %w", n.cfg.Self.ID, err)
		}
	}
	var protocols http.Protocols
	protocols.SetHTTP1(true)
	if n.cfg.ServerTLS != nil {
		protocols.SetHTTP2(true)
	} else {
		protocols.SetUnencryptedHTTP2(true)
	}
	rs := &http.Server{
		Handler:   n.authenticate(n.srv.RPCHandler()),
		Protocols: &protocols,
		TLSConfig: n.cfg.ServerTLS.Clone(),
		// No ReadTimeout or WriteTimeout: they would end the long-lived
		// forward and watch streams. Connections that never authenticate
		// are closed by the guard listener instead.
		ReadHeaderTimeout: 5 * time.Second,
		IdleTimeout:       n.cfg.IdleTimeout,
		HTTP2:             &http.HTTP2Config{MaxConcurrentStreams: n.cfg.MaxConcurrentStreams},
		ConnContext:       withGuardConn,
		ErrorLog:          slog.NewLogLogger(n.log.Handler(), slog.LevelDebug),
	}
	gl := &guardListener{Listener: ln, window: n.cfg.AuthTimeout, maxFailures: int32(n.cfg.MaxAuthFailures)}
	n.mu.Lock()
	n.rpcSrv, n.ln, n.guard = rs, ln, gl
	n.mu.Unlock()
	go n.serveRPC(rs, gl)
	if r, ok := n.cfg.Membership.(cluster.Registrar); ok {
		self := n.cfg.Self
		if self.RPCPort == 0 {
			if a, ok := ln.Addr().(*net.TCPAddr); ok {
				self.RPCPort = a.Port
			}
		}
		// Client ports picked at listen time (port 0) are registered as
		// bound, when the server started first.
		if a, ok := n.srv.WSAddr().(*net.TCPAddr); ok && self.WSPort == 0 {
			self.WSPort = a.Port
		}
		if a, ok := n.srv.TCPAddr().(*net.TCPAddr); ok && self.TCPPort == 0 {
			self.TCPPort = a.Port
		}
		if err := r.Register(self); err != nil {
			rs.Close()
			return err
		}
	}
	return nil
}

// RPCAddr returns the bound RPC address once started.
func (n *Node) RPCAddr() net.Addr {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.ln == nil {
		return nil
	}
	return n.ln.Addr()
}

// Close leaves the cluster gracefully: deregisters (so that no new work is
// routed here), shuts the frontend's clients down, finishes in-flight RPCs,
// and closes streams and connections, waiting at most until ctx is done.
func (n *Node) Close(ctx context.Context) error {
	n.mu.Lock()
	if n.closed {
		n.mu.Unlock()
		return nil
	}
	n.closed = true
	rs, gl := n.rpcSrv, n.guard
	n.mu.Unlock()
	var errs []error
	// Leave the membership first, so that no new work is routed here.
	if r, ok := n.cfg.Membership.(cluster.Registrar); ok {
		errs = append(errs, r.Deregister())
	}
	n.unsub()
	if n.cfg.DrainDelay > 0 {
		select {
		case <-time.After(n.cfg.DrainDelay):
		case <-ctx.Done():
		}
	}
	// Kick this frontend's clients, then end the streams other servers hold
	// open here once their in-flight work is done.
	errs = append(errs, n.srv.Shutdown(ctx, ""))
	close(n.closeCh)
	if rs != nil {
		// Before Shutdown: it would wait for a connection it does not
		// know to be served yet (see guardListener).
		gl.drain()
		errs = append(errs, rs.Shutdown(ctx))
	}
	n.fwd.closeAll()
	n.pushes.closeAll()
	n.watchers.closeAll()
	n.http.CloseIdleConnections()
	return errors.Join(errs...)
}

// serveRPC serves RPC on l; an error that stops it (Close and Kill stop it
// with http.ErrServerClosed) is reported on Err.
func (n *Node) serveRPC(rs *http.Server, l net.Listener) {
	var err error
	if n.cfg.ServerTLS != nil {
		err = rs.ServeTLS(l, "", "")
	} else {
		err = rs.Serve(l)
	}
	if err != nil && !errors.Is(err, http.ErrServerClosed) {
		select {
		case n.serveErr <- fmt.Errorf("cluster: %s: serve rpc on %s: %w", n.cfg.Self.ID, l.Addr(), err):
		default: // one is reported
		}
	}
}

// Err returns a channel that receives the error of the RPC listener if it
// stops serving on its own (not by Close or Kill): the server is then cut
// off from the cluster. App.Serve reads it and leaves the cluster.
func (n *Node) Err() <-chan error { return n.serveErr }

// Kill stops serving RPC at once, without deregistering or draining: what a
// crash looks like to the rest of the cluster. For tests.
func (n *Node) Kill() {
	n.mu.Lock()
	if n.closed {
		n.mu.Unlock()
		return
	}
	n.closed = true
	close(n.closeCh)
	rs := n.rpcSrv
	n.mu.Unlock()
	n.unsub()
	if rs != nil {
		rs.Close()
	}
	n.fwd.closeAll()
	n.pushes.closeAll()
	n.watchers.closeAll()
	n.http.CloseIdleConnections()
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	n.srv.Shutdown(ctx, "")
}

func (n *Node) setMembers(servers []cluster.ServerInfo) {
	v := newView(servers)
	n.view.Store(v)
	n.mu.Lock()
	for id, p := range n.conns {
		// Forget servers that left, and servers that came back under the
		// same id at another address.
		if info, ok := v.byID[id]; !ok || p.conn.BaseURL != baseURL(info) {
			delete(n.conns, id)
		}
	}
	n.mu.Unlock()
	n.fwd.prune(v)
	n.pushes.prune(v)
}

// Members returns the servers of a type (all servers for ""), sorted by id.
func (n *Node) Members(serverType string) []cluster.ServerInfo {
	v := n.view.Load()
	if serverType != "" {
		return slices.Clone(v.byType[serverType])
	}
	out := make([]cluster.ServerInfo, 0, len(v.byID))
	for _, s := range v.byID {
		out = append(out, s)
	}
	return sortServers(out)
}

// Member returns a server by id.
func (n *Node) Member(id string) (cluster.ServerInfo, bool) {
	s, ok := n.view.Load().byID[id]
	return s, ok
}

// SetRoute sets the route function of a server type.
func (n *Node) SetRoute(serverType string, fn cluster.RouteFunc) {
	n.mu.Lock()
	n.routes[serverType] = fn
	n.mu.Unlock()
}

// Route picks the server of serverType for key (with no session).
func (n *Node) Route(serverType, key string) (cluster.ServerInfo, error) {
	return n.RouteBy(serverType, cluster.RouteContext{Key: key})
}

// RouteBy picks the server of serverType by the type's route function.
func (n *Node) RouteBy(serverType string, rc cluster.RouteContext) (cluster.ServerInfo, error) {
	list := n.view.Load().byType[serverType]
	if len(list) == 0 {
		return cluster.ServerInfo{}, runtime.Errorf(runtime.ErrUnavailable, "no server of type %q", serverType)
	}
	n.mu.Lock()
	fn := n.routes[serverType]
	n.mu.Unlock()
	if fn == nil {
		fn = cluster.RendezvousRoute
	}
	if rc.Session != nil && rc.Key == "" {
		rc.Key = runtime.SessionRouteKey(rc.Session)
	}
	return fn(rc, list), nil
}

// RouteServer implements runtime.RemoteInvoker.
func (n *Node) RouteServer(ctx context.Context, serverType string) (string, error) {
	key, ok := runtime.RouteKeyFromContext(ctx)
	if !ok {
		return "", runtime.ErrNoRouteKey
	}
	sess, _ := runtime.SessionFromContext(ctx)
	s, err := n.RouteBy(serverType, cluster.RouteContext{Key: key, Session: sess})
	return s.ID, err
}

// ServerIDs implements runtime.RemoteInvoker.
func (n *Node) ServerIDs(serverType string) []string {
	list := n.view.Load().byType[serverType]
	ids := make([]string, len(list))
	for i, s := range list {
		ids[i] = s.ID
	}
	return ids
}

// RemoteConn implements runtime.RemoteInvoker.
func (n *Node) RemoteConn(serverID string) (*runtime.RemoteConn, error) {
	p, err := n.peer(serverID)
	if err != nil {
		return nil, err
	}
	return p.conn, nil
}

// peer is how this node calls one server: the connection generated remote
// clients use and the typed clients of the server's sys services, made
// once per server address.
type peer struct {
	conn    *runtime.RemoteConn
	session sysv1connect.SessionRemoteClient
	channel sysv1connect.ChannelRemoteClient
	msg     sysv1connect.MsgRemoteClient
}

// peer returns the peer of a member, made anew when the server came back
// under its id at another address.
func (n *Node) peer(serverID string) (*peer, error) {
	info, ok := n.Member(serverID)
	if !ok {
		return nil, runtime.Errorf(runtime.ErrUnavailable, "no server %q in the cluster", serverID)
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	if p, ok := n.conns[serverID]; ok && p.conn.BaseURL == baseURL(info) {
		return p, nil
	}
	c := &runtime.RemoteConn{
		ServerID:   serverID,
		HTTPClient: n.http,
		BaseURL:    baseURL(info),
		Options: []connect.ClientOption{
			connect.WithInterceptors(append(n.tracer.Interceptors(), deadlineInterceptor(n.cfg.CallTimeout), n.metrics.RPCInterceptor(), runtime.ErrorInterceptor())...),
			connect.WithReadMaxBytes(maxStreamMessage),
			connect.WithCompressMinBytes(compressMinBytes),
		},
	}
	p := &peer{
		conn:    c,
		session: sysv1connect.NewSessionRemoteClient(c.HTTPClient, c.BaseURL, c.Options...),
		channel: sysv1connect.NewChannelRemoteClient(c.HTTPClient, c.BaseURL, c.Options...),
		msg:     sysv1connect.NewMsgRemoteClient(c.HTTPClient, c.BaseURL, c.Options...),
	}
	n.conns[serverID] = p
	return p, nil
}

var _ runtime.RemoteInvoker = (*Node)(nil)

// deadlineInterceptor gives every unary call a deadline.
func deadlineInterceptor(d time.Duration) connect.UnaryInterceptorFunc {
	return func(next connect.UnaryFunc) connect.UnaryFunc {
		return func(ctx context.Context, req connect.AnyRequest) (connect.AnyResponse, error) {
			if _, ok := ctx.Deadline(); !ok {
				var cancel context.CancelFunc
				ctx, cancel = context.WithTimeout(ctx, d)
				defer cancel()
			}
			return next(ctx, req)
		}
	}
}

// authTransport adds the cluster secret to every request and, under TLS,
// sends it over https. Base URLs stay "http://host:port" whatever the
// transport: they identify a server's address.
type authTransport struct {
	base   http.RoundTripper
	secret string
	tls    bool
}

func (t authTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	if t.secret != "" || (t.tls && r.URL.Scheme == "http") {
		r = r.Clone(r.Context())
		if t.secret != "" {
			r.Header.Set("Authorization", "Bearer "+t.secret)
		}
		if t.tls && r.URL.Scheme == "http" {
			r.URL.Scheme = "https"
		}
	}
	return t.base.RoundTrip(r)
}

// authenticate rejects RPCs without the cluster secret. A connection's
// first authenticated request lifts its auth window; one that sends too
// many requests without the secret is closed.
func (n *Node) authenticate(h http.Handler) http.Handler {
	want := []byte("Bearer " + n.cfg.Secret)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		g := guardConnFrom(r.Context())
		if n.cfg.Secret != "" && subtle.ConstantTimeCompare([]byte(r.Header.Get("Authorization")), want) != 1 {
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(http.StatusUnauthorized)
			w.Write([]byte(`{"code":"unauthenticated","message":"cluster secret required"}`))
			if g != nil && g.failed() {
				http.NewResponseController(w).Flush()
				g.Close()
			}
			return
		}
		if g != nil && !g.authenticated() {
			// A connection that first authenticates while the server
			// leaves the cluster: it is being closed.
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(http.StatusServiceUnavailable)
			w.Write([]byte(`{"code":"unavailable","message":"server is shutting down"}`))
			return
		}
		h.ServeHTTP(w, r)
	})
}

// callCtx applies the default deadline to ctx.
func (n *Node) callCtx(ctx context.Context) (context.Context, context.CancelFunc) {
	if _, ok := ctx.Deadline(); ok {
		return ctx, func() {}
	}
	return context.WithTimeout(ctx, n.cfg.CallTimeout)
}

// compressMinBytes is the smallest cluster message that is compressed.
const compressMinBytes = 16 << 10

// baseURL is the RPC base URL of a server.
func baseURL(s cluster.ServerInfo) string { return "http://" + s.RPCAddr() }

// sortServers sorts servers by id, in place.
func sortServers(s []cluster.ServerInfo) []cluster.ServerInfo {
	slices.SortFunc(s, func(a, b cluster.ServerInfo) int { return cmp.Compare(a.ID, b.ID) })
	return s
}
