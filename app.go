package pomelo

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"strconv"
	"sync"
	"time"

	"connectrpc.com/connect"
	"go.opentelemetry.io/otel/trace"
	"google.golang.org/protobuf/proto"

	"github.com/pomelo-go/pomelo/internal/node"
	"github.com/pomelo-go/pomelo/internal/server"
	"github.com/pomelo-go/pomelo/internal/tracing"
	"github.com/pomelo-go/pomelo/runtime"
	"github.com/pomelo-go/pomelo/runtime/channel"
	"github.com/pomelo-go/pomelo/runtime/cluster"
	"github.com/pomelo-go/pomelo/runtime/connector"
	"github.com/pomelo-go/pomelo/runtime/globalchannel"
	"github.com/pomelo-go/pomelo/runtime/online"
	"github.com/pomelo-go/pomelo/runtime/session"
)

// DefaultShutdownTimeout is how long Serve drains once its context ends,
// when Config.ShutdownTimeout is not set.
const DefaultShutdownTimeout = 10 * time.Second

// Config describes one server of a cluster: who it is, where it listens,
// how it finds the others, and how it treats clients. ID and Type are
// required, and RPCAddr (or RPCListener); when ClusterFile names a file
// that lists the server, ID alone is: the file's entry gives the rest.
type Config struct {
	// ID is the server id, unique in the cluster ("connector-1").
	ID string
	// Type is the server type ("connector", "chat"). Handler routes whose
	// first part is this type run here.
	Type string
	// Frontend servers hold client connections.
	Frontend bool

	// ClusterFile, when set, is the path of a JSON cluster file (see
	// cluster.LoadFile). The entry with ID gives Type, Frontend, Host and
	// the ports when they are not set here; unless Membership is set, the
	// membership is the file's servers, probed (cluster.NewProbed): this
	// server, and each other one while its RPC port answers, so that routing
	// skips a server that is down; its secret is the Secret unless Secret is
	// set.
	ClusterFile string
	// Host is where the other servers reach this one (default "127.0.0.1").
	Host string
	// RPCAddr is the listen address of the server-to-server RPC
	// ("127.0.0.1:4001"); its port is what the membership publishes. It is
	// required unless RPCListener is set.
	RPCAddr string
	// RPCListener, when set, is the RPC listener (tests pass one bound to
	// port 0); RPCAddr is then unused. Serve closes it.
	RPCListener net.Listener
	// WSAddr is the WebSocket listen address of a frontend ("127.0.0.1:3010";
	// port 0 picks one, see App.WSAddr). Empty for none.
	WSAddr string
	// TCPAddr is the raw TCP listen address of a frontend, for native Pomelo
	// clients. Empty for none.
	TCPAddr string

	// Membership lists the cluster's servers (default: the ClusterFile's,
	// probed, or only this server). A cluster.Registrar is registered with when Serve
	// starts and deregistered from when it drains.
	Membership cluster.Membership
	// Online, when set, is the online status of the cluster's users in
	// Redis (one Service per server): Serve attaches it before joining, so
	// that pushes and kicks by uid reach only the frontends holding the
	// user, and its Policy is the cluster-wide session policy of
	// online.Service.Login; GlobalChannels are stored next to it. The App
	// owns it: Serve closes it when it returns (the Redis client stays the
	// caller's to close).
	Online *online.Service
	// Secret authenticates the servers to each other; every server of the
	// cluster has the same. It is required unless Insecure is set.
	Secret string
	// Insecure runs without server-to-server authentication when Secret is
	// empty (development only).
	Insecure bool
	// ServerTLS and ClientTLS, when set on every server, carry
	// server-to-server traffic over HTTP/2 with TLS: ServerTLS is the RPC
	// listener's, ClientTLS the calls'. For mutual TLS set
	// ServerTLS.ClientAuth = tls.RequireAndVerifyClientCert and ClientCAs, and
	// a client certificate in ClientTLS.Certificates.
	ServerTLS, ClientTLS *tls.Config
	// AuthTimeout, MaxAuthFailures, IdleTimeout and MaxConcurrentStreams
	// tune the RPC listener: a connection is closed when it completes no
	// authenticated request within AuthTimeout (default 10s) or sends
	// MaxAuthFailures (default 3) requests without the secret, or when idle
	// for IdleTimeout (default 2 min); MaxConcurrentStreams (default 250)
	// bounds the streams of one connection.
	AuthTimeout          time.Duration
	MaxAuthFailures      int
	IdleTimeout          time.Duration
	MaxConcurrentStreams int
	// Routes sets the route functions of server types (default rendezvous
	// hashing on the session's uid or route key).
	Routes map[string]cluster.RouteFunc

	// Filters run on this server around the handlers it runs itself, for
	// local and forwarded messages alike (Pomelo's filter), in order.
	Filters []runtime.Filter
	// GlobalFilters run on a frontend for every client message, before it is
	// run here or forwarded (Pomelo's globalFilter), in order.
	GlobalFilters []runtime.Filter
	// ErrorHandler, when set, sees every handler error before it is answered
	// and may replace it.
	ErrorHandler func(ctx context.Context, r *runtime.Request, err error) error
	// ExposeErrorDetails is for development only: internal failures reach
	// clients with their detail instead of a generic message.
	ExposeErrorDetails bool

	// Connector tunes client connections (heartbeat, limits, TLS, origin
	// policy). Its Dict is filled in by the server: leave it nil.
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

	// CallTimeout is the deadline of a remote call whose context has none
	// (default 5s).
	CallTimeout time.Duration
	// ForwardTimeout is the deadline of a forwarded client request whose
	// context has none (default 30s).
	ForwardTimeout time.Duration
	// DrainDelay is how long the server keeps serving after it left the
	// membership, so that every server has seen it leave (default 0; set it
	// to the membership's propagation delay, such as an etcd watch's).
	DrainDelay time.Duration
	// ShutdownTimeout bounds the graceful drain once Serve's context ends
	// (default DefaultShutdownTimeout).
	ShutdownTimeout time.Duration

	// Logger receives the logs (default slog.Default()).
	Logger *slog.Logger
	// TracerProvider, when set, traces every client request with
	// OpenTelemetry: the frontend's span, forwarding, the backend's filters
	// and handler, remote and sys calls, pushes; trace context travels
	// between servers (W3C Trace Context). Nil (or a no-op provider) is
	// tracing off, at the cost of a nil check. See the README's Tracing.
	TracerProvider trace.TracerProvider

	// AdminAddr is the listen address of the admin HTTP listener
	// ("127.0.0.1:3002"; port 0 picks one, see App.AdminAddr): /metrics
	// (Prometheus; the series are listed in README's Operations section),
	// /healthz (200 while the process serves), /readyz (200 only while the
	// server listens, has joined the cluster and is not draining; 503
	// otherwise). Empty for none: then no metrics are recorded either.
	AdminAddr string
	// Pprof also serves the runtime profiles under /debug/pprof/ on the
	// admin listener.
	Pprof bool
}

// App is one server of a cluster: a frontend that holds client connections
// or a backend that runs the requests frontends forward to it. Make one with
// New, register its handlers and remotes with the generated Register
// functions (the App is their registrar), then call Serve.
//
// The App is also what generated remote clients and push routes take: it
// routes remote calls to the servers of the cluster (runtime.RemoteInvoker)
// and pushes to users on any frontend (runtime.Pusher). Channels reach their
// members wherever they are connected (Channels).
//
// Everything but Serve may be called in any order, before or while the App
// serves.
type App struct {
	cfg  Config
	self cluster.ServerInfo
	srv  *server.Server
	node *node.Node
	log  *slog.Logger
	// probed is the membership New made from the ClusterFile: Serve starts
	// and closes it.
	probed *cluster.Probed

	channelsMu sync.Mutex
	channels   *channel.Service
	global     *globalchannel.Service // nil without Config.Online

	serveMu sync.Mutex
	served  bool
	ready   chan struct{}

	admin adminState // the admin listener and the metrics
}

// New makes the server cfg describes, ready for registrations. It opens no
// listener: Serve does.
func New(cfg Config) (*App, error) {
	var file *cluster.File
	if cfg.ClusterFile != "" {
		var err error
		if file, err = cluster.LoadFile(cfg.ClusterFile); err != nil {
			return nil, fmt.Errorf("pomelo: %w", err)
		}
		if cfg, err = fromFile(cfg, file); err != nil {
			return nil, err
		}
	}
	if cfg.ID == "" || cfg.Type == "" {
		return nil, errors.New("pomelo: Config.ID and Config.Type are required")
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	// Probing starts when Serve does: an App that never serves leaves no
	// goroutine behind.
	var probed *cluster.Probed
	if file != nil && cfg.Membership == nil {
		probed = cluster.NewProbed(file.Servers, []string{cfg.ID}, cluster.ProbeConfig{Logger: cfg.Logger})
		cfg.Membership = probed
	}
	if cfg.ShutdownTimeout <= 0 {
		cfg.ShutdownTimeout = DefaultShutdownTimeout
	}
	if cfg.Host == "" {
		cfg.Host = "127.0.0.1"
	}
	self := cluster.ServerInfo{ID: cfg.ID, Type: cfg.Type, Host: cfg.Host, Frontend: cfg.Frontend}
	if cfg.RPCListener == nil {
		port, err := portOf(cfg.RPCAddr)
		if err != nil || port == 0 {
			return nil, fmt.Errorf("pomelo: server %s: Config.RPCAddr %q needs a port (or set Config.RPCListener)", cfg.ID, cfg.RPCAddr)
		}
		self.RPCPort = port
	} else if a, ok := cfg.RPCListener.Addr().(*net.TCPAddr); ok {
		self.RPCPort = a.Port
	}
	if cfg.Frontend {
		self.WSPort, _ = portOf(cfg.WSAddr)
		self.TCPPort, _ = portOf(cfg.TCPAddr)
	}
	tracer, err := tracing.New(cfg.TracerProvider, cfg.ID)
	if err != nil {
		return nil, fmt.Errorf("pomelo: tracing: %w", err)
	}
	var srv *server.Server
	mtr := newMetrics(cfg, func() *server.Server { return srv })
	srv, err = server.New(server.Config{
		ID:            cfg.ID,
		Type:          cfg.Type,
		Frontend:      cfg.Frontend,
		WSAddr:        cfg.WSAddr,
		TCPAddr:       cfg.TCPAddr,
		Connector:     cfg.Connector,
		DisableDict:   cfg.DisableDict,
		SessionPolicy: cfg.SessionPolicy,
		CheckClient:   cfg.CheckClient,
		HandshakeHook: cfg.HandshakeHook,
		Logger:        cfg.Logger,
		Tracer:        tracer,

		ExposeErrorDetails: cfg.ExposeErrorDetails,
		Metrics:            mtr,
	})
	if err != nil {
		return nil, fmt.Errorf("pomelo: %w", err)
	}
	for _, f := range cfg.GlobalFilters {
		srv.GlobalFilter(f)
	}
	for _, f := range cfg.Filters {
		srv.Filter(f)
	}
	if cfg.ErrorHandler != nil {
		srv.SetErrorHandler(cfg.ErrorHandler)
	}
	node, err := node.Join(srv, node.Config{
		Self:           self,
		Membership:     cfg.Membership,
		Secret:         cfg.Secret,
		Insecure:       cfg.Insecure,
		ServerTLS:      cfg.ServerTLS,
		ClientTLS:      cfg.ClientTLS,
		Listener:       cfg.RPCListener,
		CallTimeout:    cfg.CallTimeout,
		ForwardTimeout: cfg.ForwardTimeout,
		Routes:         cfg.Routes,
		DrainDelay:     cfg.DrainDelay,
		Logger:         cfg.Logger,

		AuthTimeout:          cfg.AuthTimeout,
		MaxAuthFailures:      cfg.MaxAuthFailures,
		IdleTimeout:          cfg.IdleTimeout,
		MaxConcurrentStreams: cfg.MaxConcurrentStreams,
	})
	if err != nil {
		return nil, fmt.Errorf("pomelo: %w", err)
	}
	a := &App{cfg: cfg, self: self, srv: srv, node: node, log: cfg.Logger, probed: probed, ready: make(chan struct{})}
	a.admin.metrics = mtr
	a.instrument()
	if cfg.Online != nil {
		// Made before the online status attaches, so that a frontend
		// attaching also clears the memberships its earlier run left.
		a.global = globalchannel.New(cfg.Online, globalchannel.Config{})
	}
	return a, nil
}

// fromFile completes cfg with its server's entry in the cluster file f.
func fromFile(cfg Config, f *cluster.File) (Config, error) {
	s, ok := f.Server(cfg.ID)
	if !ok {
		return cfg, fmt.Errorf("pomelo: no server %q in the cluster file %s", cfg.ID, cfg.ClusterFile)
	}
	if cfg.Type == "" {
		cfg.Type = s.Type
	}
	if cfg.Type != s.Type {
		return cfg, fmt.Errorf("pomelo: server %s is of type %q in the cluster file, not %q", cfg.ID, s.Type, cfg.Type)
	}
	cfg.Frontend = cfg.Frontend || s.Frontend
	if cfg.Host == "" {
		cfg.Host = s.Host
	}
	addr := func(port int) string { return net.JoinHostPort(s.Host, strconv.Itoa(port)) }
	if cfg.RPCAddr == "" && cfg.RPCListener == nil {
		cfg.RPCAddr = addr(s.RPCPort)
	}
	if cfg.WSAddr == "" && s.WSPort > 0 {
		cfg.WSAddr = addr(s.WSPort)
	}
	if cfg.TCPAddr == "" && s.TCPPort > 0 {
		cfg.TCPAddr = addr(s.TCPPort)
	}
	if cfg.Secret == "" {
		cfg.Secret = f.Secret
	}
	return cfg, nil
}

// portOf returns the port of a listen address, 0 for an empty one.
func portOf(addr string) (int, error) {
	if addr == "" {
		return 0, nil
	}
	_, p, err := net.SplitHostPort(addr)
	if err != nil {
		return 0, err
	}
	return strconv.Atoi(p)
}

// Serve starts the server and blocks until ctx ends: it opens the client
// listeners of a frontend, then the RPC listener, and joins the cluster.
// When ctx ends it drains gracefully, for at most Config.ShutdownTimeout:
// it leaves the membership, kicks its clients (connector.KickReasonShutdown),
// finishes the requests in flight and closes its channels. It returns nil
// after a clean drain, the error of a listener that could not open, or
// what the drain could not finish. A listener that stops serving on its
// own ends Serve as ctx would: Serve drains and returns its error. An App
// serves once.
func (a *App) Serve(ctx context.Context) error {
	a.serveMu.Lock()
	served := a.served
	a.served = true
	a.serveMu.Unlock()
	if served {
		return errors.New("pomelo: Serve called twice")
	}
	if err := a.listenAdmin(); err != nil {
		a.closeUnstarted()
		return fmt.Errorf("pomelo: server %s: %w", a.cfg.ID, err)
	}
	if err := a.srv.Start(); err != nil {
		a.closeUnstarted()
		return fmt.Errorf("pomelo: server %s: %w", a.cfg.ID, err)
	}
	if a.cfg.Online != nil {
		if err := a.cfg.Online.Attach(a.node); err != nil {
			a.closeUnstarted()
			return fmt.Errorf("pomelo: server %s: %w", a.cfg.ID, err)
		}
	}
	if err := a.node.Start(); err != nil {
		a.closeUnstarted()
		return fmt.Errorf("pomelo: server %s: %w", a.cfg.ID, err)
	}
	a.log.Info("pomelo: serving", "type", a.cfg.Type, "rpc", addrString(a.node.RPCAddr()),
		"ws", addrString(a.srv.WSAddr()), "tcp", addrString(a.srv.TCPAddr()), "admin", addrString(a.AdminAddr()))
	if a.probed != nil {
		a.probed.Start()
	}
	close(a.ready)
	var serveErr error
	select {
	case <-ctx.Done():
	case serveErr = <-a.srv.Err():
	case serveErr = <-a.node.Err():
	}
	a.admin.draining.Store(true)
	sctx, cancel := context.WithTimeout(context.Background(), a.cfg.ShutdownTimeout)
	defer cancel()
	defer a.closeAdmin() // last: /healthz answers while the server drains
	err := errors.Join(a.node.Close(sctx), a.Channels().Close())
	if a.cfg.Online != nil {
		// After the node's Close, which closes the sessions: the online
		// status writes their last changes, then leaves Redis.
		err = errors.Join(err, a.cfg.Online.Close())
	}
	if a.probed != nil {
		a.probed.Close()
	}
	if err != nil {
		err = fmt.Errorf("pomelo: server %s: drain: %w", a.cfg.ID, err)
	}
	return errors.Join(serveErr, err)
}

// closeUnstarted releases what New set up when Serve fails before serving.
func (a *App) closeUnstarted() {
	if a.cfg.RPCListener != nil {
		a.cfg.RPCListener.Close()
	}
	a.node.Kill()
	a.closeAdmin()
	a.Channels().Close()
	if a.cfg.Online != nil {
		a.cfg.Online.Close()
	}
	if a.probed != nil {
		a.probed.Close()
	}
}

func addrString(a net.Addr) string {
	if a == nil {
		return ""
	}
	return a.String()
}

// Ready is closed once Serve listens and has joined the cluster.
func (a *App) Ready() <-chan struct{} { return a.ready }

// ID returns the server id.
func (a *App) ID() string { return a.cfg.ID }

// Type returns the server type.
func (a *App) Type() string { return a.cfg.Type }

// Frontend reports whether the server holds client connections.
func (a *App) Frontend() bool { return a.cfg.Frontend }

// Info returns the server's entry in the membership; once Ready, its ports
// are the bound ones.
func (a *App) Info() cluster.ServerInfo {
	info := a.self
	if ad, ok := a.node.RPCAddr().(*net.TCPAddr); ok {
		info.RPCPort = ad.Port
	}
	if ad, ok := a.srv.WSAddr().(*net.TCPAddr); ok {
		info.WSPort = ad.Port
	}
	if ad, ok := a.srv.TCPAddr().(*net.TCPAddr); ok {
		info.TCPPort = ad.Port
	}
	return info
}

// WSAddr returns the bound WebSocket address of a serving frontend, or nil.
func (a *App) WSAddr() net.Addr { return a.srv.WSAddr() }

// TCPAddr returns the bound raw TCP address of a serving frontend, or nil.
func (a *App) TCPAddr() net.Addr { return a.srv.TCPAddr() }

// RPCAddr returns the bound RPC address once serving, or nil.
func (a *App) RPCAddr() net.Addr { return a.node.RPCAddr() }

// Logger returns the server's logger.
func (a *App) Logger() *slog.Logger { return a.log }

// RegisterHandler implements runtime.HandlerRegistrar, for the generated
// Register...HandlerServer functions. A route must belong to the server's
// type; registering one twice is an error.
func (a *App) RegisterHandler(d runtime.HandlerDesc) error { return a.srv.RegisterHandler(d) }

// MountRPC implements runtime.RPCRegistrar, for the generated
// Register...RemoteServer functions. Mounting a path twice, or on an App not
// made by New, is an error.
func (a *App) MountRPC(path string, h http.Handler) error {
	if a == nil || a.srv == nil {
		return errors.New("pomelo: MountRPC on an App not made by pomelo.New")
	}
	return a.srv.MountRPC(path, h)
}

// RPCHandlerOptions implements runtime.RPCRegistrar: the options every
// Connect handler of the server is built with (none on an App not made by
// New, whose MountRPC fails).
func (a *App) RPCHandlerOptions() []connect.HandlerOption {
	if a == nil || a.srv == nil {
		return nil
	}
	return a.srv.RPCHandlerOptions()
}

// Filter adds a filter around the handlers this server runs (see
// Config.Filters).
func (a *App) Filter(f runtime.Filter) { a.srv.Filter(f) }

// GlobalFilter adds a filter a frontend runs for every client message (see
// Config.GlobalFilters).
func (a *App) GlobalFilter(f runtime.Filter) { a.srv.GlobalFilter(f) }

// RouteServer implements runtime.RemoteInvoker, for the generated remote
// clients: it picks the server of serverType for a call made with ctx.
func (a *App) RouteServer(ctx context.Context, serverType string) (string, error) {
	return a.node.RouteServer(ctx, serverType)
}

// ServerIDs implements runtime.RemoteInvoker: the ids of the servers of
// serverType, sorted.
func (a *App) ServerIDs(serverType string) []string { return a.node.ServerIDs(serverType) }

// RemoteConn implements runtime.RemoteInvoker: the connection to a server.
func (a *App) RemoteConn(serverID string) (*runtime.RemoteConn, error) {
	return a.node.RemoteConn(serverID)
}

// Members returns the servers of a type ("" for all) in the membership,
// sorted by id.
func (a *App) Members(serverType string) []cluster.ServerInfo { return a.node.Members(serverType) }

// PushToUIDs implements runtime.Pusher: it pushes msg under route to every
// session of the uids, on any frontend, and returns the uids that have none.
func (a *App) PushToUIDs(ctx context.Context, route string, msg proto.Message, uids []string) ([]string, error) {
	return a.node.PushToUIDs(ctx, route, msg, uids)
}

// Broadcast implements runtime.Pusher: every frontend of frontendType
// pushes msg to its sessions.
func (a *App) Broadcast(ctx context.Context, frontendType, route string, msg proto.Message, opts runtime.BroadcastOptions) error {
	return a.node.Broadcast(ctx, frontendType, route, msg, opts)
}

// Channels returns the server's channel service: pushing to a channel
// reaches each member on the frontend that holds its session. Serve closes
// it when it returns. The service hears of every session close the server
// does (on a frontend its own sessions', on a backend those of the
// sessions it handled a request of), so channels created with
// channel.ChannelConfig.LeaveOnClose drop the members whose session closed.
func (a *App) Channels() *channel.Service {
	a.channelsMu.Lock()
	defer a.channelsMu.Unlock()
	if a.channels == nil {
		chs := channel.NewService(channel.DeliveryFunc(a.node.PushToFrontend), channel.Config{})
		a.node.OnSessionClosed(func(ev cluster.SessionEvent) {
			chs.SessionClosed(ev.Session.FrontendID, ev.Session.ID, ev.Session.UID)
		})
		a.srv.Sessions().OnClosed(func(s *session.Session, _ string) {
			chs.SessionClosed(s.FrontendID(), s.ID(), s.UID())
		})
		a.channels = chs
	}
	return a.channels
}

// GlobalChannels returns the cluster's global channels, stored in Redis
// next to Config.Online (nil when it is not set): any server adds users to
// them and pushes to them, wherever the users are connected.
func (a *App) GlobalChannels() *globalchannel.Service { return a.global }

// Sessions returns the sessions a frontend holds (empty on a backend).
func (a *App) Sessions() *session.Service { return a.srv.Sessions() }

// BackendSessions returns the service that reads and acts on sessions held
// by any frontend, by frontend id and session id.
func (a *App) BackendSessions() *BackendSessions {
	return &BackendSessions{b: a.node.BackendSessions()}
}

// WatchSession asks the frontend holding session sid to report its close to
// the OnSessionClosed functions. A backend needs it only for sessions it
// has not handled a request of: those it watches already.
func (a *App) WatchSession(ctx context.Context, frontendID string, sid uint64) error {
	return a.node.WatchSession(ctx, frontendID, sid)
}

// OnSessionClosed registers fn to run when a watched session closes, once
// per session: every session a request forwarded to this server came
// from, and those named to WatchSession.
func (a *App) OnSessionClosed(fn func(cluster.SessionEvent)) { a.node.OnSessionClosed(fn) }

// OnSessionSuspended registers fn to run when a watched session (see
// OnSessionClosed) is suspended: its client asked for a resumable session
// and its connection dropped without a kick; it keeps its uid, settings
// and channels within its resume window (connector.Config.ResumeWindow,
// docs/PROTOCOL.md section 10). OnSessionClosed still fires, once, if the
// window ends.
func (a *App) OnSessionSuspended(fn func(cluster.SessionEvent)) { a.node.OnSessionSuspended(fn) }

// OnSessionResumed registers fn to run when a suspended watched session
// continues on a new connection.
func (a *App) OnSessionResumed(fn func(cluster.SessionEvent)) { a.node.OnSessionResumed(fn) }

// The App is what generated code takes.
var (
	_ runtime.HandlerRegistrar = (*App)(nil)
	_ runtime.RPCRegistrar     = (*App)(nil)
	_ runtime.RemoteInvoker    = (*App)(nil)
	_ runtime.Pusher           = (*App)(nil)
)
