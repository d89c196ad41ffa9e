package app_test

import (
	"bytes"
	"log/slog"
	"strings"
	"testing"

	"github.com/pomelo-go/pomelo/example/chat/app"
	"github.com/pomelo-go/pomelo/runtime/cluster"
)

// The committed secret, or none, is refused as soon as one server of the
// cluster file is off loopback; on loopback the committed one only warns,
// and a secret of one's own is accepted anywhere.
func TestCommittedSecretRefusedOffLoopbackAndWarnedOn(t *testing.T) {
	file := func(secret string, hosts ...string) *cluster.File {
		f := &cluster.File{Secret: secret}
		for i, h := range hosts {
			f.Servers = append(f.Servers, cluster.ServerInfo{ID: "s" + string(rune('1'+i)), Type: app.TypeChat, Host: h, RPCPort: 1})
		}
		return f
	}
	for _, tc := range []struct {
		name   string
		f      *cluster.File
		refuse bool
		warn   bool
	}{
		{"committed on loopback", file(app.DefaultSecret, "127.0.0.1", "localhost", "::1"), false, true},
		{"committed with one remote host", file(app.DefaultSecret, "127.0.0.1", "10.0.0.5"), true, false},
		{"committed on all interfaces", file(app.DefaultSecret, "0.0.0.0"), true, false},
		{"empty on loopback", file("", "127.0.0.1"), true, false},
		{"own secret off loopback", file("s3cr3t-of-our-own", "10.0.0.5"), false, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var logs bytes.Buffer
			err := app.CheckSecret(tc.f, slog.New(slog.NewTextHandler(&logs, nil)))
			if (err != nil) != tc.refuse {
				t.Fatalf("err = %v, want refused %v", err, tc.refuse)
			}
			if err != nil && strings.Contains(err.Error(), app.DefaultSecret) {
				t.Fatalf("the error repeats the secret: %v", err)
			}
			if warned := strings.Contains(logs.String(), "level=WARN"); warned != tc.warn {
				t.Fatalf("warned = %v, want %v (logs %q)", warned, tc.warn, logs.String())
			}
		})
	}
}

// Start refuses the committed secret when a server is off loopback.
func TestStartRefusesCommittedSecretOffLoopback(t *testing.T) {
	f := testCluster()
	f.Secret = app.DefaultSecret
	f.Servers[3].Host = "192.0.2.1"
	if _, err := app.Start(app.Options{Cluster: f, Servers: []string{"chat-1"}, EphemeralPorts: true, Logger: quietLogger()}); err == nil || !strings.Contains(err.Error(), "loopback") {
		t.Fatalf("Start = %v, want a refusal about loopback", err)
	}
}
