package main

import (
	"context"
	_ "embed"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/pomelo-go/pomelo/example/chat/app"
	"github.com/pomelo-go/pomelo/runtime/cluster"
	"github.com/pomelo-go/pomelo/runtime/connector"
)

//go:embed cluster.json
var defaultCluster []byte

func main() {
	if err := run(os.Args[1:]); err != nil {
		fmt.Fprintln(os.Stderr, "chat:", err)
		os.Exit(1)
	}
}

// envs are the environment variables that set flags, by flag name; a flag
// on the command line wins.
var envs = map[string]string{
	"cluster": "POMELO_CLUSTER", "servers": "POMELO_SERVERS", "web": "POMELO_WEB",
	"heartbeat": "POMELO_HEARTBEAT", "max-conns": "POMELO_MAX_CONNS",
	"handshake-timeout": "POMELO_HANDSHAKE_TIMEOUT", "heartbeat-timeout": "POMELO_HEARTBEAT_TIMEOUT",
	"resume-window": "POMELO_RESUME_WINDOW", "push-flush": "POMELO_PUSH_FLUSH", "min-client-version": "POMELO_MIN_CLIENT_VERSION", "probe": "POMELO_PROBE",
	"etcd": "POMELO_ETCD", "etcd-prefix": "POMELO_ETCD_PREFIX",
	"redis": "POMELO_REDIS", "redis-prefix": "POMELO_REDIS_PREFIX",
	"secret": "POMELO_SECRET", "v": "POMELO_VERBOSE", "admin": "POMELO_ADMIN",
}

// limits are the frontends' client connection limits and resume window,
// as flags.
type limits struct {
	maxConns         *int
	handshakeTimeout *time.Duration
	heartbeatTimeout *time.Duration
	resumeWindow     *time.Duration
	pushFlush        *time.Duration
}

// frontendFlags defines the flags of the client connection limits and the
// resume window on fs.
func frontendFlags(fs *flag.FlagSet) limits {
	return limits{
		maxConns:         fs.Int("max-conns", connector.DefaultMaxConnections, "client connections each frontend accepts at once, -1 for no cap"),
		handshakeTimeout: fs.Duration("handshake-timeout", connector.DefaultHandshakeTimeout, "time a client has to complete its handshake"),
		heartbeatTimeout: fs.Duration("heartbeat-timeout", 0, "close a client connection silent for this long (default 2 x -heartbeat)"),
		resumeWindow:     fs.Duration("resume-window", connector.DefaultResumeWindow, "how long a connector keeps the session of a client whose connection dropped, for it to resume; 0 for none"),
		pushFlush:        fs.Duration("push-flush", 0, "hold the pushes to a client connection for up to this long so that they share one write (0: write each at once)"),
	}
}

// apply sets the limits in opts.
func (l limits) apply(opts *app.Options) {
	opts.MaxConnections = *l.maxConns
	if *l.maxConns < 0 {
		opts.MaxConnections = connector.NoConnectionLimit
	}
	opts.HandshakeTimeout = *l.handshakeTimeout
	opts.HeartbeatTimeout = *l.heartbeatTimeout
	opts.ResumeWindow = *l.resumeWindow
	opts.PushFlushInterval = *l.pushFlush
	if *l.resumeWindow <= 0 {
		opts.ResumeWindow = connector.NoResume
	}
}

// DefaultAdminAddr is the admin listener of the first server of the
// one-process run (the embedded cluster file, every server).
const DefaultAdminAddr = "127.0.0.1:3002"

// adminAddr is the admin address of the -admin flag's value: "off" for
// none; unset, DefaultAdminAddr for the one-process run (whole), where the
// ports are known not to be taken by another process of the example, and
// ports the system picks otherwise.
func adminAddr(flagValue string, whole bool) string {
	switch flagValue {
	case "off", "none":
		return ""
	case "":
		if whole {
			return DefaultAdminAddr
		}
		return "127.0.0.1:0"
	}
	return flagValue
}

// list splits a comma-separated flag.
func list(s string) []string {
	var out []string
	for _, v := range strings.Split(s, ",") {
		if v = strings.TrimSpace(v); v != "" {
			out = append(out, v)
		}
	}
	return out
}

func run(args []string) error {
	fs := flag.NewFlagSet("chat", flag.ContinueOnError)
	clusterPath := fs.String("cluster", "", "cluster file (default: the embedded cluster.json)")
	servers := fs.String("servers", "", "comma-separated ids of the servers to run (default: every server not marked optional)")
	webAddr := fs.String("web", "", `web page address, "off" for none (default 127.0.0.1:3001 when a gate runs here)`)
	adminFlag := fs.String("admin", "", `admin listener (/metrics, /healthz, /readyz) of the first server run here, the next servers at the next ports; "off" for none (default 127.0.0.1:3002 for the whole embedded cluster in one process, otherwise 127.0.0.1:0: ports the system picks)`)
	opts := app.Options{}
	fs.DurationVar(&opts.Heartbeat, "heartbeat", app.DefaultHeartbeat, "heartbeat interval")
	limits := frontendFlags(fs)
	fs.StringVar(&opts.MinClientVersion, "min-client-version", app.DefaultMinClientVersion, "lowest client version accepted (older clients get 501)")
	fs.DurationVar(&opts.ProbeInterval, "probe", app.DefaultProbeInterval, "how often the servers not run here are probed")
	etcd := fs.String("etcd", "", "comma-separated etcd endpoints: keep the membership in etcd instead of probing the cluster file")
	fs.StringVar(&opts.EtcdPrefix, "etcd-prefix", app.DefaultEtcdPrefix, "etcd key prefix of the cluster")
	fs.StringVar(&opts.RedisAddr, "redis", "", "Redis address: keep online status and the one-session-per-user rule in Redis")
	fs.StringVar(&opts.RedisPrefix, "redis-prefix", app.DefaultRedisPrefix, "Redis key prefix of the cluster")
	secret := fs.String("secret", "", "cluster secret, replacing the file's (prefer POMELO_SECRET: flags show in the process list)")
	verbose := fs.Bool("v", false, "debug logs")
	var envErr error
	fs.VisitAll(func(f *flag.Flag) {
		if v := os.Getenv(envs[f.Name]); v != "" && envErr == nil {
			if err := f.Value.Set(v); err != nil {
				envErr = fmt.Errorf("%s=%q: %w", envs[f.Name], v, err)
			}
		}
	})
	if envErr != nil {
		return envErr
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return nil
		}
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected arguments: %q", fs.Args())
	}

	level := slog.LevelInfo
	if *verbose {
		level = slog.LevelDebug
	}
	opts.Logger = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level}))
	slog.SetDefault(opts.Logger)

	var err error
	if *clusterPath == "" {
		opts.Cluster, err = cluster.ParseFile(defaultCluster)
	} else {
		opts.Cluster, err = cluster.LoadFile(*clusterPath)
	}
	if err != nil {
		return err
	}
	if *secret != "" {
		opts.Cluster.Secret = *secret
	}
	opts.Servers, opts.EtcdEndpoints = list(*servers), list(*etcd)
	run, err := app.Select(opts.Cluster, opts.Servers)
	if err != nil {
		return err
	}
	switch opts.WebAddr = *webAddr; opts.WebAddr {
	case "off", "none":
		opts.WebAddr = ""
	case "":
		for _, s := range run {
			if s.Type == app.TypeGate {
				opts.WebAddr = "127.0.0.1:3001"
			}
		}
	}
	opts.AdminAddr = adminAddr(*adminFlag, *clusterPath == "" && *servers == "")
	limits.apply(&opts)

	a, err := app.Start(opts)
	if err != nil {
		return err
	}
	fmt.Println("pomelo-go chat example is running:")
	a.PrintAddresses(os.Stdout)
	if len(opts.EtcdEndpoints) > 0 {
		fmt.Printf("  membership in etcd %s under %s\n", strings.Join(opts.EtcdEndpoints, ","), opts.EtcdPrefix)
	}
	if opts.RedisAddr != "" {
		fmt.Printf("  online status in Redis %s under %s\n", opts.RedisAddr, opts.RedisPrefix)
	}
	if u := a.WebURL(); u != "" {
		fmt.Printf("Open %s in two browser windows. Ctrl-C stops.\n", u)
	}

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	<-ctx.Done()
	stop() // a second signal kills the process
	opts.Logger.Info("shutting down")
	closeCtx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	if err := a.Close(closeCtx); err != nil {
		return fmt.Errorf("shutdown: %w", err)
	}
	opts.Logger.Info("stopped")
	return nil
}
