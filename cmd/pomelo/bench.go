package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/pomelo-go/pomelo/internal/bench"
)

const benchUsage = `usage: pomelo bench echo|fanout|idle (--url URL[,URL] | --gate URL) [flags]

Scenarios (the chat demo's contract: entry {username, rid}, chat echo, chat send, onChat):
  echo    N clients, each in its own room, K echo requests in flight per client
  fanout  N clients in one room, M messages in flight in all; counts onChat deliveries
  idle    N connections that handshake and heartbeat; RSS per connection of --pids

URLs are ws://host:port/ (WebSocket) or tcp://host:port (raw TCP).`

// runBench is `pomelo bench`.
func runBench(args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 || strings.HasPrefix(args[0], "-") {
		return errors.New(benchUsage)
	}
	scenario := args[0]
	run := map[string]func(context.Context, bench.Config) (*bench.Result, error){
		"echo": bench.Echo, "fanout": bench.Fanout, "idle": bench.Idle,
	}[scenario]
	if run == nil {
		return fmt.Errorf("unknown scenario %q\n%s", scenario, benchUsage)
	}
	fl := flag.NewFlagSet("pomelo bench "+scenario, flag.ContinueOnError)
	fl.SetOutput(stderr)
	fl.Usage = func() { fmt.Fprintln(stderr, benchUsage); fl.PrintDefaults() }
	urls := fl.String("url", "", "comma-separated frontend URLs; client i uses the i-th modulo their number")
	gate := fl.String("gate", "", "a gate URL: each client asks it (gate route, {uid}) for its connector")
	clients := fl.Int("c", 50, "clients (connections)")
	inflight := fl.Int("k", 0, "echo: requests in flight per client (default 1); fanout: messages in flight in all (default 8)")
	duration := fl.Duration("d", 10*time.Second, "measured duration")
	warmup := fl.Duration("warmup", 2*time.Second, "warm-up before measuring (idle: settle time before reading RSS)")
	pids := fl.String("pids", "", "comma-separated pids of the server processes to measure (CPU time, RSS)")
	size := fl.Int("size", 16, "echo: padding bytes in each request body")
	enter := fl.Bool("enter", false, "idle: enter a room after the handshake (50 clients a room)")
	drain := fl.Duration("drain", 5*time.Second, "fanout: longest wait for outstanding deliveries after the window")
	parallel := fl.Int("parallel", 64, "clients connecting at once")
	dialTimeout := fl.Duration("dial-timeout", 10*time.Second, "bound on connecting, handshake and entry of one client")
	reqTimeout := fl.Duration("request-timeout", 10*time.Second, "bound on one request")
	name := fl.String("name", "", "prefix of user names and rooms (default bench-PID-TIME)")
	asJSON := fl.Bool("json", false, "print the result as JSON")
	quiet := fl.Bool("q", false, "no progress lines on stderr")
	r := bench.DefaultRoutes
	fl.StringVar(&r.Gate, "route-gate", r.Gate, "gate route")
	fl.StringVar(&r.Entry, "route-entry", r.Entry, "entry route")
	fl.StringVar(&r.Echo, "route-echo", r.Echo, "echo route")
	fl.StringVar(&r.Send, "route-send", r.Send, "send route")
	fl.StringVar(&r.Push, "route-push", r.Push, "push route of the room's messages")
	if err := fl.Parse(args[1:]); err != nil {
		return err
	}
	if fl.NArg() != 0 {
		return fmt.Errorf("unexpected arguments %q\n%s", fl.Args(), benchUsage)
	}
	if *inflight == 0 {
		*inflight = 1
		if scenario == "fanout" {
			*inflight = 8
		}
	}
	cfg := bench.Config{
		Target: bench.Target{
			Gate: *gate, Routes: r, DialTimeout: *dialTimeout, RequestTimeout: *reqTimeout,
		},
		Clients: *clients, InFlight: *inflight, Duration: *duration, Warmup: *warmup,
		Size: *size, Enter: *enter, Drain: *drain, Parallel: *parallel, Name: *name,
	}
	if *urls != "" {
		cfg.Target.URLs = strings.Split(*urls, ",")
	}
	if *gate != "" && *urls != "" {
		return errors.New("give --url or --gate, not both")
	}
	for _, p := range strings.Split(*pids, ",") {
		if p = strings.TrimSpace(p); p == "" {
			continue
		}
		pid, err := strconv.Atoi(p)
		if err != nil || pid <= 0 {
			return fmt.Errorf("--pids: bad pid %q", p)
		}
		cfg.PIDs = append(cfg.PIDs, pid)
	}
	if !*quiet {
		cfg.Logf = func(format string, args ...any) { fmt.Fprintf(stderr, "bench: "+format+"\n", args...) }
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	res, err := run(ctx, cfg)
	if err != nil {
		return err
	}
	if *asJSON {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		if err := enc.Encode(res); err != nil {
			return err
		}
	} else {
		bench.WriteText(stdout, res)
	}
	if res.Ops == 0 {
		return fmt.Errorf("%s: no operation succeeded", scenario)
	}
	return nil
}
