package admincli_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/pomelo-go/pomelo/internal/testservers"
	"github.com/pomelo-go/pomelo/runtime/etcdmember"
)

func TestMain(m *testing.M) { testservers.Main(m) }

func TestServersListsTheMembersRegisteredInEtcd(t *testing.T) {
	etcd := testservers.SharedEtcd(t)
	prefix := testservers.Prefix(t)
	tc := startCluster(t)
	tc.dial(t, "connector-2", "erin")
	for _, id := range []string{"connector-1", "connector-2", "area-1"} {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		m, err := etcdmember.New(ctx, etcdmember.Config{Endpoints: []string{etcd.Endpoint}, Prefix: prefix, Logger: quiet})
		cancel()
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { m.Close() })
		if err := m.Register(tc.c.App(id).Info()); err != nil {
			t.Fatal(err)
		}
	}
	// The secret comes from the environment: there is no cluster file.
	env := map[string]string{"POMELO_SECRET": secret}
	out, err := run(t, env, "servers", "--etcd", etcd.Endpoint, "--prefix", prefix)
	if err != nil {
		t.Fatalf("servers: %v\n%s", err, out)
	}
	if got := strings.Join(row(t, out, "connector-2")[6:9], " "); got != "up 1 1" {
		t.Errorf("connector-2 is %q, want up 1 1:\n%s", got, out)
	}
	if strings.Contains(out, "area-2") || !strings.Contains(out, "3 server(s): 3 up") {
		t.Errorf("the listing is not etcd's members:\n%s", out)
	}
	if out, err := run(t, env, "broadcast", "onNews", `{"x":1}`, "--etcd", etcd.Endpoint, "--prefix", prefix); err != nil || !strings.Contains(out, "pushed onNews to 1 session(s) on 2 frontend(s)") {
		t.Errorf("broadcast over etcd: %v\n%s", err, out)
	}
}
