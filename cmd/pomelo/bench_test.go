package main

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/pomelo-go/pomelo/example/chat/app"
	"github.com/pomelo-go/pomelo/internal/bench"
	"github.com/pomelo-go/pomelo/runtime/cluster"
)

func TestBenchRefusesBadArguments(t *testing.T) {
	for _, args := range [][]string{
		{"bench"},
		{"bench", "--url", "ws://127.0.0.1:1/"},
		{"bench", "nope", "--url", "ws://127.0.0.1:1/"},
		{"bench", "echo"},
		{"bench", "echo", "--url", "http://127.0.0.1:1/"},
		{"bench", "echo", "--url", "ws://127.0.0.1:1/", "--gate", "ws://127.0.0.1:2/"},
		{"bench", "echo", "--url", "ws://127.0.0.1:1/", "--pids", "x"},
		{"bench", "echo", "--url", "ws://127.0.0.1:1/", "extra"},
		{"bench", "idle", "--url", "ws://127.0.0.1:1/", "-c", "1000000"},
	} {
		var out bytes.Buffer
		if err := run(args, &out, &out); err == nil {
			t.Errorf("pomelo %v succeeded", args)
		}
	}
}

func TestBenchPrintsJSONAndText(t *testing.T) {
	a, err := app.Start(app.Options{
		Cluster: &cluster.File{Secret: "test-secret", Servers: []cluster.ServerInfo{
			{ID: "connector-1", Type: app.TypeConnector, Host: "127.0.0.1", RPCPort: 1, Frontend: true, WSPort: 1},
			{ID: "chat-1", Type: app.TypeChat, Host: "127.0.0.1", RPCPort: 1},
		}},
		EphemeralPorts: true,
		Logger:         slog.New(slog.NewTextHandler(io.Discard, nil)),
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		a.Close(ctx)
	})
	url := "ws://" + net.JoinHostPort("127.0.0.1", strconv.Itoa(a.Server("connector-1").Info().WSPort)) + "/"
	common := []string{"--url", url, "-c", "3", "-d", "200ms", "--warmup", "50ms", "-q"}

	var out, errOut bytes.Buffer
	if err := run(append([]string{"bench", "fanout", "--json"}, common...), &out, &errOut); err != nil {
		t.Fatalf("bench fanout: %v (%s)", err, errOut.String())
	}
	var r bench.Result
	if err := json.Unmarshal(out.Bytes(), &r); err != nil {
		t.Fatalf("--json printed %q: %v", out.String(), err)
	}
	if r.Scenario != "fanout" || r.Clients != 3 || r.InFlight != 8 || r.Ops == 0 || r.Totals.Deliveries != r.Totals.Expected {
		t.Errorf("fanout result %+v", r)
	}

	out.Reset()
	if err := run(append([]string{"bench", "echo", "-k", "2"}, common...), &out, &errOut); err != nil {
		t.Fatalf("bench echo: %v (%s)", err, errOut.String())
	}
	for _, want := range []string{"echo against " + url, "2 in flight per client", "round trips/s", "p99", "errors     none"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("the text report lacks %q:\n%s", want, out.String())
		}
	}
}
