package main

import (
	"flag"
	"io"
	"testing"
	"time"

	"github.com/pomelo-go/pomelo/example/chat/app"
	"github.com/pomelo-go/pomelo/runtime/connector"
)

func parseLimits(t *testing.T, args ...string) app.Options {
	t.Helper()
	fs := flag.NewFlagSet("chat", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	l := frontendFlags(fs)
	if err := fs.Parse(args); err != nil {
		t.Fatal(err)
	}
	var opts app.Options
	l.apply(&opts)
	return opts
}

func TestConnectionLimitFlagsSetTheOptions(t *testing.T) {
	opts := parseLimits(t, "-max-conns", "50", "-handshake-timeout", "2s", "-heartbeat-timeout", "30s", "-resume-window", "5s")
	if opts.MaxConnections != 50 || opts.HandshakeTimeout != 2*time.Second || opts.HeartbeatTimeout != 30*time.Second || opts.ResumeWindow != 5*time.Second {
		t.Fatalf("options %d, %v, %v, %v; want 50, 2s, 30s, 5s", opts.MaxConnections, opts.HandshakeTimeout, opts.HeartbeatTimeout, opts.ResumeWindow)
	}
	if opts := parseLimits(t, "-resume-window", "0"); opts.ResumeWindow != connector.NoResume {
		t.Fatalf("-resume-window 0: ResumeWindow %v, want NoResume", opts.ResumeWindow)
	}
	if opts := parseLimits(t, "-max-conns", "-5"); opts.MaxConnections != connector.NoConnectionLimit {
		t.Fatalf("-max-conns -5: MaxConnections %d, want NoConnectionLimit", opts.MaxConnections)
	}
}

func TestConnectionLimitFlagsDefaultToTheConnectorDefaults(t *testing.T) {
	t.Setenv("POMELO_MAX_CONNS", "")
	opts := parseLimits(t)
	if opts.MaxConnections != connector.DefaultMaxConnections || opts.HandshakeTimeout != connector.DefaultHandshakeTimeout || opts.HeartbeatTimeout != 0 ||
		opts.ResumeWindow != connector.DefaultResumeWindow {
		t.Fatalf("defaults %d, %v, %v, %v; want %d, %v, 0 (2 x heartbeat), %v", opts.MaxConnections, opts.HandshakeTimeout, opts.HeartbeatTimeout, opts.ResumeWindow,
			connector.DefaultMaxConnections, connector.DefaultHandshakeTimeout, connector.DefaultResumeWindow)
	}
}

func TestAdminFlagDefaultsTo3002OnlyForTheOneProcessRun(t *testing.T) {
	for _, tc := range []struct {
		flag  string
		whole bool
		want  string
	}{
		{"", true, "127.0.0.1:3002"},
		{"", false, "127.0.0.1:0"},
		{"off", true, ""},
		{"127.0.0.1:9100", false, "127.0.0.1:9100"},
	} {
		if got := adminAddr(tc.flag, tc.whole); got != tc.want {
			t.Errorf("adminAddr(%q, %v) = %q, want %q", tc.flag, tc.whole, got, tc.want)
		}
	}
}
