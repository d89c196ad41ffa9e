// Package app is the chat example's servers: a gate, connectors and chat
// servers in the architecture of Pomelo's chat demo (chatofpomelo-websocket),
// with its routes and JSON bodies, so that the demo's clients work
// unchanged. Start runs any subset of the servers of a cluster file in one
// process on the framework's App (pomelo.StartCluster); the example's main
// package and its tests use it.
package app

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/pomelo-go/pomelo"
	chatv1 "github.com/pomelo-go/pomelo/example/chat/gen/chat/v1"
	"github.com/pomelo-go/pomelo/example/chat/web"
	"github.com/pomelo-go/pomelo/runtime/cluster"
	"github.com/pomelo-go/pomelo/runtime/connector"
	"github.com/pomelo-go/pomelo/runtime/online"
	"github.com/pomelo-go/pomelo/runtime/session"
)

// The server types of the example.
const (
	// TypeGate servers tell clients which connector to use.
	TypeGate = "gate"
	// TypeConnector servers hold the client connections.
	TypeConnector = "connector"
	// TypeChat servers hold the rooms.
	TypeChat = "chat"
)

// serverTypes are the server types this process knows how to run, and
// whether they are frontends.
var serverTypes = map[string]bool{TypeGate: true, TypeConnector: true, TypeChat: false}

// MetadataOptional is the cluster file metadata key that marks a server as
// not started by default: "optional": "true" lists a server that a process
// runs only when asked by id (Options.Servers), such as a chat server added
// later.
const MetadataOptional = "optional"

// Defaults of the Options.
const (
	// DefaultHeartbeat is the heartbeat interval, the demo's.
	DefaultHeartbeat = 3 * time.Second
	// DefaultMinClientVersion is the lowest client version accepted: what
	// the stock JS client sends.
	DefaultMinClientVersion = "0.0.1"
	// DefaultProbeInterval is how often the membership probes the servers
	// this process does not run.
	DefaultProbeInterval = cluster.DefaultProbeInterval
	// DefaultEtcdPrefix is the etcd key prefix the servers register under.
	DefaultEtcdPrefix = "/pomelo-chat/servers/"
	// DefaultDrainDelay is how long a server keeps serving after leaving
	// the etcd membership, so that the others see it leave before it stops.
	DefaultDrainDelay = time.Second
	// DefaultRedisPrefix is the prefix of the Redis keys of the online
	// status.
	DefaultRedisPrefix = "pomelo-chat:"
	// DefaultSecret is the secret of the committed cluster.json. Start
	// refuses it when a server of the cluster file is not on a loopback
	// host, and warns on loopback.
	DefaultSecret = "example-secret-change-me"
)

// CheckSecret refuses the committed DefaultSecret, and an empty secret,
// unless every server of f is on a loopback host (127.0.0.0/8, ::1 or
// localhost); on loopback it logs a warning for DefaultSecret.
func CheckSecret(f *cluster.File, log *slog.Logger) error {
	if f.Secret != DefaultSecret && f.Secret != "" {
		return nil
	}
	for _, s := range f.Servers {
		if ip := net.ParseIP(s.Host); s.Host != "localhost" && (ip == nil || !ip.IsLoopback()) {
			what := "the committed example one"
			if f.Secret == "" {
				what = "empty"
			}
			return fmt.Errorf("server %s is on %q, not loopback, and the cluster secret is %s: set your own with -secret or POMELO_SECRET", s.ID, s.Host, what)
		}
	}
	if f.Secret == "" {
		return errors.New("the cluster secret is empty: set one with -secret or POMELO_SECRET")
	}
	log.Warn("the cluster secret is the committed example one; set your own with -secret or POMELO_SECRET before leaving loopback")
	return nil
}

// Options configure the servers of one process.
type Options struct {
	// Cluster lists every server that may run, and the shared secret.
	Cluster *cluster.File
	// Servers are the ids of the servers to run here. Empty runs every
	// server of the file not marked optional.
	Servers []string
	// Heartbeat is the heartbeat interval of the frontends (default
	// DefaultHeartbeat).
	Heartbeat time.Duration
	// HeartbeatTimeout closes a client connection from which nothing
	// arrived for this long (default 2 x Heartbeat).
	HeartbeatTimeout time.Duration
	// HandshakeTimeout closes a client connection that has not completed
	// its handshake in this time (default connector.DefaultHandshakeTimeout).
	HandshakeTimeout time.Duration
	// ResumeWindow is how long a connector keeps the session of a client
	// whose connection dropped, for the client to resume it (default
	// connector.DefaultResumeWindow; connector.NoResume for none). The
	// page's client resumes.
	ResumeWindow time.Duration
	// PushFlushInterval holds the pushes to a client connection for up to
	// this long so that they share one write (connector
	// Config.PushFlushInterval; default 0: each is written at once).
	PushFlushInterval time.Duration
	// MaxConnections caps the client connections of each frontend (default
	// connector.DefaultMaxConnections; connector.NoConnectionLimit for none).
	MaxConnections int
	// MinClientVersion is the lowest sys.version a client may send in its
	// handshake; older clients are refused with code 501 (default
	// DefaultMinClientVersion).
	MinClientVersion string
	// ProbeInterval is how often the servers this process does not run are
	// probed (default DefaultProbeInterval).
	ProbeInterval time.Duration
	// WebAddr is the listen address of the web page ("127.0.0.1:3001");
	// empty for none.
	WebAddr string
	// AdminAddr is the admin listener (/metrics, /healthz, /readyz) of the
	// first server run here, in start order ("127.0.0.1:3002"); each next
	// server listens at the next port (with port 0, each on a port the
	// system picks; so do all with EphemeralPorts). Empty for none.
	AdminAddr string
	// EtcdEndpoints, when set, keeps the membership in etcd instead of
	// probing the cluster file: each server registers itself under
	// EtcdPrefix while it runs, and sees the others come and go through
	// etcd. The cluster file still gives the identities, ports and secret
	// of the servers run here; ProbeInterval is unused.
	EtcdEndpoints []string
	// EtcdPrefix is the etcd key prefix of the cluster (default
	// DefaultEtcdPrefix). Every process of one cluster uses the same.
	EtcdPrefix string
	// DrainDelay is how long a server keeps serving after it left the etcd
	// membership, on Close (default DefaultDrainDelay).
	DrainDelay time.Duration
	// RedisAddr, when set, keeps the online status of the users in the
	// Redis at this address ("127.0.0.1:6379"), and with it the rule of
	// one session per user in the whole cluster: a user who enters again,
	// on any connector, kicks the earlier session (online.Service.Login
	// with session.KickOld). Without it, the connectors kick the earlier
	// session themselves, asking every other connector.
	RedisAddr string
	// RedisPrefix is the prefix of the Redis keys (default
	// DefaultRedisPrefix). Every process of one cluster uses the same.
	RedisPrefix string
	// EphemeralPorts makes every server run here listen on a port picked by
	// the system, whatever the file says, and publish it to the membership
	// (for tests).
	EphemeralPorts bool
	// Logger receives the logs (default slog.Default()).
	Logger *slog.Logger
}

// App is the servers of one process.
type App struct {
	opts    Options
	stores  stores
	cluster *pomelo.Cluster
	configs map[string]pomelo.Config // by server id, as the servers were made
	admin   map[string]string        // admin listen address by server id

	web   *http.Server
	webLn net.Listener

	closeOnce sync.Once
	closeErr  error
}

// Select returns the entries of the servers to run: the ids given, or every
// server not marked optional; in start order, chat servers, connectors,
// gates.
func Select(f *cluster.File, ids []string) ([]cluster.ServerInfo, error) {
	var out []cluster.ServerInfo
	for _, s := range f.Servers {
		if len(ids) == 0 && s.Metadata[MetadataOptional] != "true" {
			out = append(out, s)
		}
	}
	for _, id := range ids {
		s, ok := f.Server(id)
		if !ok {
			return nil, fmt.Errorf("no server %q in the cluster file", id)
		}
		if slices.ContainsFunc(out, func(o cluster.ServerInfo) bool { return o.ID == id }) {
			return nil, fmt.Errorf("server %q listed twice", id)
		}
		out = append(out, s)
	}
	if len(out) == 0 {
		return nil, errors.New("no server to run")
	}
	for _, s := range out {
		frontend, ok := serverTypes[s.Type]
		switch {
		case !ok:
			return nil, fmt.Errorf("server %s: unknown type %q", s.ID, s.Type)
		case s.Frontend != frontend:
			return nil, fmt.Errorf("server %s: the frontend flag of a %s server must be %v", s.ID, s.Type, frontend)
		}
	}
	order := []string{TypeChat, TypeConnector, TypeGate}
	slices.SortStableFunc(out, func(a, b cluster.ServerInfo) int {
		return slices.Index(order, a.Type) - slices.Index(order, b.Type)
	})
	return out, nil
}

// Start starts the selected servers and the web page. On error, what was
// started is stopped again.
func Start(opts Options) (*App, error) {
	if opts.Cluster == nil {
		return nil, errors.New("no cluster file")
	}
	opts.Heartbeat = cmp.Or(opts.Heartbeat, DefaultHeartbeat)
	opts.MinClientVersion = cmp.Or(opts.MinClientVersion, DefaultMinClientVersion)
	opts.ProbeInterval = cmp.Or(opts.ProbeInterval, DefaultProbeInterval)
	opts.EtcdPrefix = cmp.Or(opts.EtcdPrefix, DefaultEtcdPrefix)
	opts.DrainDelay = cmp.Or(opts.DrainDelay, DefaultDrainDelay)
	opts.RedisPrefix = cmp.Or(opts.RedisPrefix, DefaultRedisPrefix)
	opts.MaxConnections = cmp.Or(opts.MaxConnections, connector.DefaultMaxConnections)
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	run, err := Select(opts.Cluster, opts.Servers)
	if err != nil {
		return nil, err
	}
	if err := CheckSecret(opts.Cluster, opts.Logger); err != nil {
		return nil, err
	}
	a := &App{opts: opts, configs: map[string]pomelo.Config{}}
	var ids []string
	for _, s := range run {
		ids = append(ids, s.ID)
	}
	if a.admin, err = adminAddrs(opts, ids); err != nil {
		return nil, err
	}
	if err := a.stores.open(opts, ids); err != nil {
		return nil, err
	}
	a.cluster, err = pomelo.StartCluster(opts.Cluster, pomelo.ClusterConfig{
		Servers:        ids,
		EphemeralPorts: opts.EphemeralPorts,
		ProbeInterval:  opts.ProbeInterval,
		Configure:      a.configure,
		Logger:         opts.Logger,
	}, a.setup)
	if err != nil {
		a.stores.close()
		return nil, err
	}
	if opts.WebAddr != "" {
		ln, err := net.Listen("tcp", opts.WebAddr)
		if err != nil {
			a.Close(context.Background())
			return nil, fmt.Errorf("web page: %w", err)
		}
		a.webLn = ln
		a.web = &http.Server{
			Handler:           web.Handler(a.gateAddr),
			ReadHeaderTimeout: 10 * time.Second,
			ErrorLog:          slog.NewLogLogger(opts.Logger.Handler(), slog.LevelDebug),
		}
		go a.web.Serve(ln)
	}
	return a, nil
}

// configure completes the configuration of one server: the client limits
// of a frontend, the chat route, and the stores when the process uses them.
func (a *App) configure(cfg *pomelo.Config) {
	cfg.Logger = a.opts.Logger.With("server", cfg.ID)
	cfg.AdminAddr = a.admin[cfg.ID]
	cfg.Routes = map[string]cluster.RouteFunc{TypeChat: ChatRoute}
	if cfg.Frontend {
		cfg.Connector = connector.Config{
			Heartbeat:         a.opts.Heartbeat,
			HeartbeatTimeout:  a.opts.HeartbeatTimeout,
			HandshakeTimeout:  a.opts.HandshakeTimeout,
			MaxConnections:    a.opts.MaxConnections,
			ResumeWindow:      a.opts.ResumeWindow,
			PushFlushInterval: a.opts.PushFlushInterval,
		}
		minVersion := a.opts.MinClientVersion
		cfg.CheckClient = func(_, version string) bool { return VersionAtLeast(version, minVersion) }
		if cfg.Type == TypeConnector {
			cfg.SessionPolicy = session.KickOld
		}
	}
	if m := a.stores.members[cfg.ID]; m != nil {
		cfg.Membership, cfg.DrainDelay = m, a.opts.DrainDelay
	}
	if a.stores.redis != nil {
		// One session per uid in the whole cluster, the earlier one
		// kicked. The server's App closes it.
		cfg.Online = online.New(a.stores.redis, online.Config{Prefix: a.opts.RedisPrefix, Policy: session.KickOld, Logger: cfg.Logger})
	}
	a.configs[cfg.ID] = *cfg
}

// setup registers the handlers and remotes of one server.
func (a *App) setup(s *pomelo.App) error {
	switch s.Type() {
	case TypeGate:
		return chatv1.RegisterGateHandlerServer(s, &gate{app: s})
	case TypeConnector:
		return chatv1.RegisterEntryHandlerServer(s, newEntry(s, a.configs[s.ID()].Online))
	case TypeChat:
		rs := newRooms(s)
		if err := chatv1.RegisterChatRemoteServer(s, rs); err != nil {
			return err
		}
		return chatv1.RegisterChatHandlerServer(s, rs)
	}
	return fmt.Errorf("unknown server type %q", s.Type())
}

// gateAddr returns where clients reach a gate that is up, for the web page.
func (a *App) gateAddr() (host string, port int, ok bool) {
	for _, s := range a.Members() {
		if s.Type == TypeGate && s.WSPort > 0 {
			return clientHost(s), s.WSPort, true
		}
	}
	return "", 0, false
}

// Servers returns the servers run by this process, backends first.
func (a *App) Servers() []*pomelo.App { return a.cluster.Apps() }

// Server returns a server run by this process, by id, or nil.
func (a *App) Server(id string) *pomelo.App { return a.cluster.App(id) }

// Config returns the configuration server id was made with.
func (a *App) Config(id string) pomelo.Config { return a.configs[id] }

// Members returns the servers of the cluster as this process sees them
// (through its first server), sorted by id.
func (a *App) Members() []cluster.ServerInfo { return a.Servers()[0].Members("") }

// WebURL returns the URL of the web page, or "" when it is not served.
func (a *App) WebURL() string {
	if a.webLn == nil {
		return ""
	}
	return "http://" + a.webLn.Addr().String() + "/"
}

// PrintAddresses writes what runs where: the web page, then each server's
// WebSocket and raw TCP client addresses and its RPC address.
func (a *App) PrintAddresses(w io.Writer) {
	if u := a.WebURL(); u != "" {
		fmt.Fprintf(w, "  %-12s %-10s %s\n", "web page", "", u)
	}
	for _, s := range a.Servers() {
		info := s.Info()
		var client string
		if info.WSPort > 0 {
			client = "ws://" + net.JoinHostPort(info.Host, strconv.Itoa(info.WSPort)) + "  "
		}
		if info.TCPPort > 0 {
			client += "tcp://" + net.JoinHostPort(info.Host, strconv.Itoa(info.TCPPort)) + "  "
		}
		var admin string
		if ad := s.AdminAddr(); ad != nil {
			admin = "  admin http://" + ad.String() + "/metrics"
		}
		fmt.Fprintf(w, "  %-12s %-10s %srpc %s%s\n", info.ID, info.Type, client, info.RPCAddr(), admin)
	}
}

// adminAddrs gives the servers ids, in start order, their admin listen
// addresses (Options.AdminAddr): the first at the address, the next ones at
// the following ports.
func adminAddrs(opts Options, ids []string) (map[string]string, error) {
	out := map[string]string{}
	if opts.AdminAddr == "" {
		return out, nil
	}
	host, p, err := net.SplitHostPort(opts.AdminAddr)
	if err != nil {
		return nil, fmt.Errorf("admin address %q: %w", opts.AdminAddr, err)
	}
	port, err := strconv.Atoi(p)
	if err != nil || port < 0 || port+len(ids) > 65536 {
		return nil, fmt.Errorf("admin address %q: bad port", opts.AdminAddr)
	}
	for i, id := range ids {
		switch {
		case port == 0 || opts.EphemeralPorts:
			out[id] = net.JoinHostPort(host, "0")
		default:
			out[id] = net.JoinHostPort(host, strconv.Itoa(port+i))
		}
	}
	return out, nil
}

// Close stops the web page, then the servers, frontends first (their
// clients are kicked with the reason "shutdown"), each leaving the cluster
// gracefully (with etcd, each deregisters and keeps serving for
// Options.DrainDelay first) and its online status; then the etcd
// memberships and the connections to etcd and Redis. ctx bounds the web
// page's shutdown; each server drains for at most
// pomelo.DefaultShutdownTimeout. Calls after the first return the same.
func (a *App) Close(ctx context.Context) error {
	a.closeOnce.Do(func() {
		var errs []error
		if a.web != nil {
			errs = append(errs, a.web.Shutdown(ctx))
		}
		errs = append(errs, a.cluster.Close(), a.stores.close())
		a.closeErr = errors.Join(errs...)
	})
	return a.closeErr
}
