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
	"strconv"
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

func env(name, def string) string {
	if v, ok := os.LookupEnv(name); ok {
		return v
	}
	return def
}

func envDuration(name string, def time.Duration) time.Duration {
	if v, ok := os.LookupEnv(name); ok {
		if d, err := time.ParseDuration(v); err == nil {
			return d
		}
	}
	return def
}

func envInt(name string, def int) int {
	if v, ok := os.LookupEnv(name); ok {
		if n, err := strconv.Atoi(v); err == nil {
			return n
		}
	}
	return def
}

// limits are the frontends' client connection limits, as flags.
type limits struct {
	maxConns         *int
	handshakeTimeout *time.Duration
	heartbeatTimeout *time.Duration
}

// frontendFlags defines the flags of the client connection limits on fs.
func frontendFlags(fs *flag.FlagSet) limits {
	return limits{
		maxConns: fs.Int("max-conns", envInt("POMELO_MAX_CONNS", connector.DefaultMaxConnections),
			"client connections each frontend accepts at once, -1 for no cap"),
		handshakeTimeout: fs.Duration("handshake-timeout", envDuration("POMELO_HANDSHAKE_TIMEOUT", connector.DefaultHandshakeTimeout),
			"time a client has to complete its handshake"),
		heartbeatTimeout: fs.Duration("heartbeat-timeout", envDuration("POMELO_HEARTBEAT_TIMEOUT", 0),
			"close a client connection silent for this long (default 2 x -heartbeat)"),
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
}

func envBool(name string) bool {
	v, _ := strconv.ParseBool(os.Getenv(name))
	return v
}

func run(args []string) error {
	fs := flag.NewFlagSet("chat", flag.ContinueOnError)
	clusterPath := fs.String("cluster", env("POMELO_CLUSTER", ""), "cluster file (default: the embedded cluster.json)")
	servers := fs.String("servers", env("POMELO_SERVERS", ""), "comma-separated ids of the servers to run (default: every server not marked optional)")
	webAddr := fs.String("web", env("POMELO_WEB", ""), `web page address, "off" for none (default 127.0.0.1:3001 when a gate runs here)`)
	heartbeat := fs.Duration("heartbeat", envDuration("POMELO_HEARTBEAT", app.DefaultHeartbeat), "heartbeat interval")
	limits := frontendFlags(fs)
	minVersion := fs.String("min-client-version", env("POMELO_MIN_CLIENT_VERSION", app.DefaultMinClientVersion), "lowest client version accepted (older clients get 501)")
	probe := fs.Duration("probe", envDuration("POMELO_PROBE", app.DefaultProbeInterval), "how often the servers not run here are probed")
	etcdEndpoints := fs.String("etcd", env("POMELO_ETCD", ""), "comma-separated etcd endpoints: keep the membership in etcd instead of probing the cluster file")
	etcdPrefix := fs.String("etcd-prefix", env("POMELO_ETCD_PREFIX", app.DefaultEtcdPrefix), "etcd key prefix of the cluster")
	redisAddr := fs.String("redis", env("POMELO_REDIS", ""), "Redis address: keep online status and the one-session-per-user rule in Redis")
	redisPrefix := fs.String("redis-prefix", env("POMELO_REDIS_PREFIX", app.DefaultRedisPrefix), "Redis key prefix of the cluster")
	secret := fs.String("secret", "", "cluster secret, replacing the file's (prefer POMELO_SECRET: flags show in the process list)")
	verbose := fs.Bool("v", envBool("POMELO_VERBOSE"), "debug logs")
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
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level}))
	slog.SetDefault(log)

	var f *cluster.File
	var err error
	if *clusterPath == "" {
		f, err = cluster.ParseFile(defaultCluster)
	} else {
		f, err = cluster.LoadFile(*clusterPath)
	}
	if err != nil {
		return err
	}
	if s := os.Getenv("POMELO_SECRET"); s != "" {
		f.Secret = s
	}
	if *secret != "" {
		f.Secret = *secret
	}
	var ids []string
	for _, id := range strings.Split(*servers, ",") {
		if id = strings.TrimSpace(id); id != "" {
			ids = append(ids, id)
		}
	}
	run, err := app.Select(f, ids)
	if err != nil {
		return err
	}
	switch *webAddr {
	case "off", "none":
		*webAddr = ""
	case "":
		for _, s := range run {
			if s.Type == app.TypeGate {
				*webAddr = "127.0.0.1:3001"
			}
		}
	}

	var endpoints []string
	for _, e := range strings.Split(*etcdEndpoints, ",") {
		if e = strings.TrimSpace(e); e != "" {
			endpoints = append(endpoints, e)
		}
	}

	opts := app.Options{
		Cluster:          f,
		Servers:          ids,
		Heartbeat:        *heartbeat,
		MinClientVersion: *minVersion,
		ProbeInterval:    *probe,
		WebAddr:          *webAddr,
		EtcdEndpoints:    endpoints,
		EtcdPrefix:       *etcdPrefix,
		RedisAddr:        *redisAddr,
		RedisPrefix:      *redisPrefix,
		Logger:           log,
	}
	limits.apply(&opts)
	a, err := app.Start(opts)
	if err != nil {
		return err
	}
	fmt.Println("pomelo-go chat example is running:")
	a.PrintAddresses(os.Stdout)
	if len(endpoints) > 0 {
		fmt.Printf("  membership in etcd %s under %s\n", strings.Join(endpoints, ","), *etcdPrefix)
	}
	if *redisAddr != "" {
		fmt.Printf("  online status in Redis %s under %s\n", *redisAddr, *redisPrefix)
	}
	if u := a.WebURL(); u != "" {
		fmt.Printf("Open %s in two browser windows. Ctrl-C stops.\n", u)
	}

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	<-ctx.Done()
	stop() // a second signal kills the process
	log.Info("shutting down")
	closeCtx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	if err := a.Close(closeCtx); err != nil {
		return fmt.Errorf("shutdown: %w", err)
	}
	log.Info("stopped")
	return nil
}
