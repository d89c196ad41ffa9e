// Package app is the chat example's servers: a gate, connectors and chat
// servers in the architecture of Pomelo's chat demo (chatofpomelo-websocket),
// with its routes and JSON bodies, so that the demo's clients work
// unchanged. Start runs any subset of the servers of a cluster file in one
// process; the example's main package and its tests use it.
package app

import (
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

	chatv1 "github.com/pomelo-go/pomelo/example/chat/gen/chat/v1"
	"github.com/pomelo-go/pomelo/example/chat/web"
	"github.com/pomelo-go/pomelo/internal/node"
	"github.com/pomelo-go/pomelo/internal/server"
	"github.com/pomelo-go/pomelo/runtime/channel"
	"github.com/pomelo-go/pomelo/runtime/cluster"
	"github.com/pomelo-go/pomelo/runtime/connector"
	"github.com/pomelo-go/pomelo/runtime/etcdmember"
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
var serverTypes = map[string]bool{
	TypeGate:      true,
	TypeConnector: true,
	TypeChat:      false,
}

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
		if !isLoopback(s.Host) {
			return fmt.Errorf("server %s is on %q, not loopback, and the cluster secret is %s: set your own with -secret or POMELO_SECRET", s.ID, s.Host, describeSecret(f.Secret))
		}
	}
	if f.Secret == "" {
		return errors.New("the cluster secret is empty: set one with -secret or POMELO_SECRET")
	}
	log.Warn("the cluster secret is the committed example one; set your own with -secret or POMELO_SECRET before leaving loopback")
	return nil
}

func describeSecret(s string) string {
	if s == "" {
		return "empty"
	}
	return "the committed example one"
}

// isLoopback reports whether host names a loopback interface.
func isLoopback(host string) bool {
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
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

// Server is one server run by the process.
type Server struct {
	// Info is the server's entry in the membership, with the bound ports.
	Info cluster.ServerInfo
	// Server is the pomelo-go server.
	Server *server.Server
	// Node is its membership of the cluster.
	Node *node.Node
	// Membership is the server's view of the cluster: the process's probed
	// cluster file, or the server's own etcd membership.
	Membership cluster.Membership
	// Online is the server's online status service, when the process uses
	// Redis (Options.RedisAddr); nil otherwise.
	Online *online.Service

	channels *channel.Service       // chat servers
	etcd     *etcdmember.Membership // with etcd
}

// App is the servers of one process.
type App struct {
	opts    Options
	log     *slog.Logger
	members *cluster.Probed // without etcd
	stores  stores          // etcd and Redis, when used
	view    cluster.Membership
	servers []*Server // in start order: chat, connector, gate
	leaves  sync.WaitGroup
	unwatch func()

	closeMu sync.Mutex
	closed  bool

	web   *http.Server
	webLn net.Listener
}

// startOrder ranks server types: backends first, so that frontends never
// forward to a server of this process that is not serving yet.
func startOrder(t string) int {
	switch t {
	case TypeChat:
		return 0
	case TypeConnector:
		return 1
	}
	return 2
}

// Select returns the entries of the servers to run: the ids given, or every
// server not marked optional.
func Select(f *cluster.File, ids []string) ([]cluster.ServerInfo, error) {
	var out []cluster.ServerInfo
	if len(ids) == 0 {
		for _, s := range f.Servers {
			if s.Metadata[MetadataOptional] != "true" {
				out = append(out, s)
			}
		}
	} else {
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
	slices.SortStableFunc(out, func(a, b cluster.ServerInfo) int { return startOrder(a.Type) - startOrder(b.Type) })
	return out, nil
}

// Start starts the selected servers and the web page. On error, what was
// started is stopped again.
func Start(opts Options) (*App, error) {
	if opts.Cluster == nil {
		return nil, errors.New("no cluster file")
	}
	if opts.Heartbeat <= 0 {
		opts.Heartbeat = DefaultHeartbeat
	}
	if opts.MinClientVersion == "" {
		opts.MinClientVersion = DefaultMinClientVersion
	}
	if opts.ProbeInterval <= 0 {
		opts.ProbeInterval = DefaultProbeInterval
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	if opts.EtcdPrefix == "" {
		opts.EtcdPrefix = DefaultEtcdPrefix
	}
	if opts.DrainDelay <= 0 {
		opts.DrainDelay = DefaultDrainDelay
	}
	if opts.RedisPrefix == "" {
		opts.RedisPrefix = DefaultRedisPrefix
	}
	run, err := Select(opts.Cluster, opts.Servers)
	if err != nil {
		return nil, err
	}
	if err := CheckSecret(opts.Cluster, opts.Logger); err != nil {
		return nil, err
	}
	a := &App{opts: opts, log: opts.Logger}
	if err := a.stores.open(opts); err != nil {
		return nil, err
	}

	// Bind the RPC listeners first: the membership publishes their ports.
	lns := make([]net.Listener, len(run))
	closeListeners := func() {
		for _, ln := range lns {
			if ln != nil {
				ln.Close()
			}
		}
	}
	for i := range run {
		addr := run[i].RPCAddr()
		if opts.EphemeralPorts {
			addr = net.JoinHostPort(run[i].Host, "0")
		}
		ln, err := net.Listen("tcp", addr)
		if err != nil {
			closeListeners()
			a.stores.close()
			return nil, fmt.Errorf("%s: listen rpc: %w", run[i].ID, err)
		}
		lns[i] = ln
		run[i].RPCPort = ln.Addr().(*net.TCPAddr).Port
	}
	if a.stores.etcd == nil {
		all := slices.Clone(opts.Cluster.Servers)
		var ids []string
		for _, s := range run {
			ids = append(ids, s.ID)
			for i := range all {
				if all[i].ID == s.ID {
					all[i] = s
				}
			}
		}
		a.members = cluster.NewProbed(all, ids, cluster.ProbeConfig{Interval: opts.ProbeInterval, Logger: a.log})
		a.view = a.members
	}

	for i, info := range run {
		s, err := a.startServer(info, lns[i])
		if err != nil {
			lns[i].Close()
			for _, ln := range lns[i+1:] {
				ln.Close()
			}
			a.Close(context.Background())
			return nil, fmt.Errorf("%s: %w", info.ID, err)
		}
		a.servers = append(a.servers, s)
	}
	if a.members != nil {
		a.members.Start()
	} else {
		// Every server sees the others of this process before Start
		// returns, so that the first clients find the cluster whole.
		a.view = a.servers[0].Membership
		if err := a.awaitLocalMembers(); err != nil {
			a.Close(context.Background())
			return nil, err
		}
		a.unwatch = watchMembers(a.view, a.servers, a.log)
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
			ErrorLog:          slog.NewLogLogger(a.log.Handler(), slog.LevelDebug),
		}
		go a.web.Serve(ln)
	}
	return a, nil
}

// startServer starts the server info on its RPC listener ln. On error, what
// it started is stopped again (but not ln, which the caller closes).
func (a *App) startServer(info cluster.ServerInfo, ln net.Listener) (_ *Server, err error) {
	s := &Server{Info: info}
	if a.members != nil {
		s.Membership = a.members
	}
	self := info
	var drain time.Duration
	defer func() {
		if err != nil {
			s.closeStores()
		}
	}()
	if a.stores.etcd != nil {
		s.etcd, err = a.stores.membership(a.opts, a.log)
		if err != nil {
			return nil, err
		}
		s.Membership, drain = s.etcd, a.opts.DrainDelay
		if a.opts.EphemeralPorts {
			// The node registers the client ports bound.
			self.WSPort, self.TCPPort = 0, 0
		}
	}
	frontend := info.Frontend
	cfg := server.Config{
		ID:       info.ID,
		Type:     info.Type,
		Frontend: frontend,
		Logger:   a.log,
	}
	if frontend {
		port := func(p int) string {
			if a.opts.EphemeralPorts {
				p = 0
			}
			return net.JoinHostPort(info.Host, strconv.Itoa(p))
		}
		if info.WSPort > 0 {
			cfg.WSAddr = port(info.WSPort)
		}
		if info.TCPPort > 0 {
			cfg.TCPAddr = port(info.TCPPort)
		}
		cfg.Connector = connector.Config{
			Heartbeat:        a.opts.Heartbeat,
			HeartbeatTimeout: a.opts.HeartbeatTimeout,
			HandshakeTimeout: a.opts.HandshakeTimeout,
			MaxConnections:   a.opts.MaxConnections,
		}
		minVersion := a.opts.MinClientVersion
		cfg.CheckClient = func(_, version string) bool { return VersionAtLeast(version, minVersion) }
		if info.Type == TypeConnector {
			cfg.SessionPolicy = session.KickOld
		}
	}
	srv, err := server.New(cfg)
	if err != nil {
		return nil, err
	}
	node, err := node.Join(srv, node.Config{
		Self:       self,
		Membership: s.Membership,
		Secret:     a.opts.Cluster.Secret,
		Listener:   ln,
		Routes:     map[string]cluster.RouteFunc{TypeChat: ChatRoute},
		DrainDelay: drain,
	})
	if err != nil {
		return nil, err
	}
	s.Server, s.Node = srv, node
	if a.stores.redis != nil {
		s.Online = a.stores.online(a.opts, a.log)
		if err := s.Online.Attach(node); err != nil {
			return nil, err
		}
	}
	switch info.Type {
	case TypeGate:
		err = chatv1.RegisterGateHandlerServer(srv, &gate{node: node})
	case TypeConnector:
		err = chatv1.RegisterEntryHandlerServer(srv, newEntry(node, &a.leaves, s.Online))
	case TypeChat:
		s.channels = channel.NewService(channel.DeliveryFunc(node.PushToFrontend))
		rs := newRooms(info.ID, s.channels, srv.Logger())
		err = errors.Join(chatv1.RegisterChatHandlerServer(srv, rs), chatv1.RegisterChatRemoteServer(srv, rs))
	}
	if err != nil {
		return nil, err
	}
	if err := srv.Start(); err != nil {
		return nil, err
	}
	if err := node.Start(); err != nil {
		srv.Shutdown(context.Background(), "")
		return nil, err
	}
	if frontend && a.opts.EphemeralPorts {
		if addr, ok := srv.WSAddr().(*net.TCPAddr); ok {
			s.Info.WSPort = addr.Port
		}
		if addr, ok := srv.TCPAddr().(*net.TCPAddr); ok {
			s.Info.TCPPort = addr.Port
		}
		if a.members != nil {
			a.members.Update(s.Info)
		}
	}
	return s, nil
}

// gateAddr returns where clients reach a gate that is up, for the web page.
func (a *App) gateAddr() (host string, port int, ok bool) {
	for _, s := range a.view.Servers() {
		if s.Type == TypeGate && s.WSPort > 0 {
			host = s.Host
			if h := s.Metadata[MetadataClientHost]; h != "" {
				host = h
			}
			return host, s.WSPort, true
		}
	}
	return "", 0, false
}

// Servers returns the servers run by this process, in start order.
func (a *App) Servers() []*Server { return slices.Clone(a.servers) }

// Server returns a server run by this process, by id.
func (a *App) Server(id string) *Server {
	for _, s := range a.servers {
		if s.Info.ID == id {
			return s
		}
	}
	return nil
}

// Membership returns the process's view of the cluster: its probed cluster
// file, or with etcd the membership of its first server.
func (a *App) Membership() cluster.Membership { return a.view }

// WebURL returns the URL of the web page, or "" when it is not served.
func (a *App) WebURL() string {
	if a.webLn == nil {
		return ""
	}
	return "http://" + a.webLn.Addr().String() + "/"
}

// PrintAddresses writes what runs where.
func (a *App) PrintAddresses(w io.Writer) {
	if u := a.WebURL(); u != "" {
		fmt.Fprintf(w, "  %-12s %-10s %s\n", "web page", "", u)
	}
	for _, s := range a.servers {
		var client string
		if s.Info.WSPort > 0 {
			client = "ws://" + net.JoinHostPort(s.Info.Host, strconv.Itoa(s.Info.WSPort)) + "  "
		}
		if s.Info.TCPPort > 0 {
			client += "tcp://" + net.JoinHostPort(s.Info.Host, strconv.Itoa(s.Info.TCPPort)) + "  "
		}
		fmt.Fprintf(w, "  %-12s %-10s %srpc %s\n", s.Info.ID, s.Info.Type, client, s.Info.RPCAddr())
	}
}

// Close stops the web page, then the frontends (their clients are kicked
// with the reason "shutdown", and their sessions leave their rooms), then
// the chat servers, each leaving the cluster gracefully (with etcd, each
// deregisters and keeps serving for Options.DrainDelay first); then the
// servers' online status and etcd memberships, and the connections to
// etcd and Redis. It waits at most until ctx is done. Calls after the
// first do nothing.
func (a *App) Close(ctx context.Context) error {
	a.closeMu.Lock()
	defer a.closeMu.Unlock()
	if a.closed {
		return nil
	}
	a.closed = true
	var errs []error
	if a.web != nil {
		errs = append(errs, a.web.Shutdown(ctx))
	}
	closeAll := func(frontends bool) {
		var wg sync.WaitGroup
		var mu sync.Mutex
		for _, s := range a.servers {
			if s.Server.Frontend() != frontends {
				continue
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				err := s.Node.Close(ctx)
				if s.channels != nil {
					err = errors.Join(err, s.channels.Close())
				}
				if err != nil {
					mu.Lock()
					errs = append(errs, fmt.Errorf("%s: %w", s.Info.ID, err))
					mu.Unlock()
				}
			}()
		}
		wg.Wait()
	}
	closeAll(true)
	// Let the sessions closed by the frontends leave their rooms.
	left := make(chan struct{})
	go func() {
		a.leaves.Wait()
		close(left)
	}()
	select {
	case <-left:
	case <-ctx.Done():
	}
	closeAll(false)
	if a.unwatch != nil {
		a.unwatch()
	}
	// The nodes are closed: now what they used.
	for _, s := range a.servers {
		if err := s.closeStores(); err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", s.Info.ID, err))
		}
	}
	if a.members != nil {
		a.members.Close()
	}
	errs = append(errs, a.stores.close())
	return errors.Join(errs...)
}

// closeStores closes the server's online status, then its etcd membership,
// once its node is closed.
func (s *Server) closeStores() error {
	var errs []error
	if s.Online != nil {
		errs = append(errs, s.Online.Close())
	}
	if s.etcd != nil {
		errs = append(errs, s.etcd.Close())
	}
	return errors.Join(errs...)
}
