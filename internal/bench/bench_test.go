package bench_test

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"os"
	"strconv"
	"testing"
	"time"

	"github.com/pomelo-go/pomelo"
	"github.com/pomelo-go/pomelo/example/chat/app"
	"github.com/pomelo-go/pomelo/internal/bench"
	"github.com/pomelo-go/pomelo/runtime/client"
	"github.com/pomelo-go/pomelo/runtime/cluster"
)

// startChat starts the chat example in this process on ports the system
// picks: a gate, two connectors (WebSocket and TCP) and two chat servers.
func startChat(t *testing.T, minVersion string) *app.App {
	t.Helper()
	s := func(id, typ string, frontend bool) cluster.ServerInfo {
		info := cluster.ServerInfo{ID: id, Type: typ, Host: "127.0.0.1", RPCPort: 1, Frontend: frontend}
		if frontend {
			info.WSPort, info.TCPPort = 1, 1
		}
		return info
	}
	a, err := app.Start(app.Options{
		Cluster: &cluster.File{Secret: "test-secret", Servers: []cluster.ServerInfo{
			s("gate-1", app.TypeGate, true),
			s("connector-1", app.TypeConnector, true),
			s("connector-2", app.TypeConnector, true),
			s("chat-1", app.TypeChat, false),
			s("chat-2", app.TypeChat, false),
		}},
		EphemeralPorts:   true,
		MinClientVersion: minVersion,
		Logger:           slog.New(slog.NewTextHandler(io.Discard, nil)),
	})
	if err != nil {
		t.Fatalf("app.Start: %v", err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		a.Close(ctx)
	})
	return a
}

func addr(scheme string, s *pomelo.App) string {
	info := s.Info()
	port := info.WSPort
	if scheme == "tcp" {
		port = info.TCPPort
	}
	u := scheme + "://" + net.JoinHostPort(info.Host, strconv.Itoa(port))
	if scheme == "ws" {
		u += "/"
	}
	return u
}

// short is a run of a few hundred milliseconds measuring this process.
func short(t bench.Target, clients, inFlight int) bench.Config {
	return bench.Config{
		Target: t, Clients: clients, InFlight: inFlight,
		Warmup: 100 * time.Millisecond, Duration: 300 * time.Millisecond,
		PIDs: []int{os.Getpid()},
	}
}

func checkSummary(t *testing.T, name string, s *bench.Summary, count int64) {
	t.Helper()
	if s == nil {
		t.Fatalf("%s: no latency summary", name)
	}
	if int64(s.Count) != count {
		t.Errorf("%s: %d latency samples for %d operations", name, s.Count, count)
	}
	seq := []float64{s.MinUS, s.P50US, s.P90US, s.P99US, s.P999US, s.MaxUS}
	for i := 1; i < len(seq); i++ {
		if seq[i] < seq[i-1] {
			t.Errorf("%s: min, p50, p90, p99, p99.9, max = %v: not monotone", name, seq)
		}
	}
	var n uint64
	for _, o := range s.Octaves {
		n += o.Count
	}
	if n != s.Count {
		t.Errorf("%s: the octaves count %d of %d samples", name, n, s.Count)
	}
}

func TestEchoCountsEveryRoundTrip(t *testing.T) {
	a := startChat(t, "")
	for _, scheme := range []string{"ws", "tcp"} {
		t.Run(scheme, func(t *testing.T) {
			target := bench.Target{URLs: []string{addr(scheme, a.Server("connector-1")), addr(scheme, a.Server("connector-2"))}}
			r, err := bench.Echo(context.Background(), short(target, 4, 2))
			if err != nil {
				t.Fatal(err)
			}
			if r.Transport != scheme || r.Scenario != "echo" {
				t.Errorf("scenario %q transport %q", r.Scenario, r.Transport)
			}
			if len(r.Errors) != 0 || r.Totals.Dropped != 0 {
				t.Fatalf("errors %v (%v), %d dropped", r.Errors, r.ErrorSamples, r.Totals.Dropped)
			}
			if r.Totals.Sent != r.Totals.Received {
				t.Errorf("%d requests sent, %d answered", r.Totals.Sent, r.Totals.Received)
			}
			if r.Ops <= 0 || r.Ops > r.Totals.Received {
				t.Errorf("%d round trips in the window of %d answered", r.Ops, r.Totals.Received)
			}
			checkSummary(t, "echo", r.Latency, r.Ops)
			if len(r.Servers) != 1 || r.Servers[0].PID != os.Getpid() || r.Servers[0].RSSKB <= 0 {
				t.Errorf("servers %+v", r.Servers)
			}
		})
	}
}

func TestFanoutDeliversEveryMessageToEveryMember(t *testing.T) {
	a := startChat(t, "")
	// Through the gate: the room's members are on both connectors.
	target := bench.Target{Gate: addr("ws", a.Server("gate-1"))}
	const members = 6
	r, err := bench.Fanout(context.Background(), short(target, members, 3))
	if err != nil {
		t.Fatal(err)
	}
	if len(r.Errors) != 0 {
		t.Fatalf("errors %v (%v)", r.Errors, r.ErrorSamples)
	}
	tot := r.Totals
	if tot.Sent != tot.Received || tot.Received == 0 {
		t.Errorf("%d messages sent, %d accepted", tot.Sent, tot.Received)
	}
	if tot.Expected != tot.Received*members || tot.Deliveries != tot.Expected {
		t.Errorf("%d deliveries, want %d messages x %d members = %d (expected says %d)",
			tot.Deliveries, tot.Received, members, tot.Received*members, tot.Expected)
	}
	if r.Ops <= 0 || r.Ops > tot.Deliveries || r.Messages > tot.Received {
		t.Errorf("window: %d deliveries, %d messages; totals %+v", r.Ops, r.Messages, tot)
	}
	checkSummary(t, "delivery", r.Latency, r.Ops)
	checkSummary(t, "send", r.SendLatency, r.Messages)
}

func TestIdleHoldsEveryConnection(t *testing.T) {
	a := startChat(t, "")
	for _, enter := range []bool{false, true} {
		cfg := short(bench.Target{Gate: addr("ws", a.Server("gate-1"))}, 60, 0)
		cfg.Enter = enter
		r, err := bench.Idle(context.Background(), cfg)
		if err != nil {
			t.Fatal(err)
		}
		if r.Ops != 60 || r.Totals.Dropped != 0 || len(r.Errors) != 0 {
			t.Errorf("enter %v: %d open, %d dropped, errors %v", enter, r.Ops, r.Totals.Dropped, r.Errors)
		}
		if len(r.Servers) != 1 {
			t.Errorf("servers %+v", r.Servers)
		}
	}
}

func TestSetupFailuresAreNamed(t *testing.T) {
	a := startChat(t, "9.9.9") // refuses the Go client's version 0.1.0 with 501
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closed := ln.Addr().String()
	ln.Close()
	cases := []struct {
		name   string
		target bench.Target
		kind   string
	}{
		{"refused connection", bench.Target{URLs: []string{"ws://" + closed + "/"}}, bench.ErrKindConnect},
		{"refused handshake", bench.Target{URLs: []string{addr("ws", a.Server("connector-1"))}}, bench.ErrKindHandshake},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := bench.Echo(context.Background(), short(c.target, 3, 1))
			var se *bench.SetupError
			if !errors.As(err, &se) {
				t.Fatalf("Echo: %v, want a *SetupError", err)
			}
			if se.Kind != c.kind || se.Failed < 1 || se.Total != 3 {
				t.Errorf("SetupError %+v, want kind %q", se, c.kind)
			}
			var hs *client.HandshakeError
			if c.kind == bench.ErrKindHandshake && (!errors.As(err, &hs) || hs.Code != 501) {
				t.Errorf("error %v does not carry the 501 of the refused handshake", err)
			}
		})
	}
}

func TestEntryFailureIsNamed(t *testing.T) {
	a := startChat(t, "")
	target := bench.Target{URLs: []string{addr("ws", a.Server("connector-1"))}, Routes: bench.Routes{Entry: "connector.entryHandler.nope"}}
	_, err := bench.Fanout(context.Background(), short(target, 2, 1))
	var se *bench.SetupError
	if !errors.As(err, &se) || se.Kind != bench.ErrKindEntry {
		t.Fatalf("Fanout with a bad entry route: %v, want a *SetupError of kind entry", err)
	}
}

func TestEchoOfAnUnknownRouteCountsErrorsNotOperations(t *testing.T) {
	a := startChat(t, "")
	target := bench.Target{URLs: []string{addr("ws", a.Server("connector-1"))}, Routes: bench.Routes{Echo: "chat.chatHandler.nope"}}
	r, err := bench.Echo(context.Background(), short(target, 2, 1))
	if err != nil {
		t.Fatal(err)
	}
	if r.Ops != 0 || r.Totals.Received != 0 || r.Errors[bench.ErrKindResponse] != r.Totals.Sent || r.Totals.Sent == 0 {
		t.Errorf("ops %d, totals %+v, errors %v", r.Ops, r.Totals, r.Errors)
	}
}

func TestRunStopsWhenItsContextEnds(t *testing.T) {
	a := startChat(t, "")
	cfg := short(bench.Target{URLs: []string{addr("ws", a.Server("connector-1"))}}, 2, 1)
	cfg.Duration = time.Hour
	ctx, cancel := context.WithCancel(context.Background())
	cfg.Logf = func(format string, _ ...any) {
		if format == "measuring for %v" {
			cancel()
		}
	}
	r, err := bench.Echo(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	if !r.Interrupted || r.Totals.Sent != r.Totals.Received || len(r.Errors) != 0 {
		t.Errorf("interrupted %v, totals %+v, errors %v", r.Interrupted, r.Totals, r.Errors)
	}
}
