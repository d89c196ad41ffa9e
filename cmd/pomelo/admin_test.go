package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	chatv1 "github.com/pomelo-go/pomelo/example/chat/gen/chat/v1"

	"github.com/pomelo-go/pomelo/example/chat/app"
	"github.com/pomelo-go/pomelo/internal/admincli"
	"github.com/pomelo-go/pomelo/internal/testenv"
	"github.com/pomelo-go/pomelo/runtime/client"
	"github.com/pomelo-go/pomelo/runtime/cluster"
)

// startExample runs the chat example's servers of its committed cluster
// file on ephemeral ports and returns it with a copy of the file that has
// the ports they listen on (chat-3, optional, does not run).
func startExample(t *testing.T) (*app.App, string) {
	t.Helper()
	f, err := cluster.LoadFile("../../example/chat/cluster.json")
	if err != nil {
		t.Fatal(err)
	}
	a, err := app.Start(app.Options{Cluster: f, EphemeralPorts: true, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		a.Close(ctx)
	})
	out := &cluster.File{Secret: f.Secret}
	for _, s := range f.Servers {
		if srv := a.Server(s.ID); srv != nil {
			s = srv.Info()
		} else {
			s.RPCPort = testenv.FreePort(t)
		}
		out.Servers = append(out.Servers, s)
	}
	b, err := json.Marshal(out)
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "cluster.json")
	if err := os.WriteFile(path, b, 0o600); err != nil {
		t.Fatal(err)
	}
	return a, path
}

// enter connects a chat client to a connector and enters room rid.
func enter(t *testing.T, a *app.App, connector, username, rid string) *client.Client {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	cl, err := client.Dial(ctx, "ws://"+a.Server(connector).WSAddr().String()+"/")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cl.Close() })
	if _, err := chatv1.NewEntryHandlerClient(cl).Enter(ctx, &chatv1.EnterRequest{Username: username, Rid: rid}); err != nil {
		t.Fatal(err)
	}
	return cl
}

// tableRow returns the fields of server id's row in `pomelo servers`.
func tableRow(t *testing.T, out, id string) string {
	t.Helper()
	for _, line := range strings.Split(out, "\n") {
		if f := strings.Fields(line); len(f) > 0 && f[0] == id {
			return strings.Join(f, " ")
		}
	}
	t.Fatalf("no row for %s in:\n%s", id, out)
	return ""
}

func TestServersListsTheRunningChatExampleAndKickEndsASession(t *testing.T) {
	a, file := startExample(t)
	ann := enter(t, a, "connector-1", "ann", "r1")
	enter(t, a, "connector-1", "ben", "r1")
	enter(t, a, "connector-2", "cid", "r2")

	var out, errOut bytes.Buffer
	if err := run([]string{"servers", "--cluster", file}, &out, &errOut); err != nil {
		t.Fatalf("servers: %v\n%s", err, errOut.String())
	}
	addr := func(id string) string { return a.Server(id).Info().RPCAddr() }
	for id, want := range map[string]string{
		"gate-1":      "gate-1 gate yes " + addr("gate-1") + " " + a.Server("gate-1").WSAddr().String() + " - up 0 0",
		"connector-1": "connector-1 connector yes " + addr("connector-1") + " " + a.Server("connector-1").WSAddr().String() + " " + a.Server("connector-1").TCPAddr().String() + " up 2 2",
		"connector-2": "connector-2 connector yes " + addr("connector-2") + " " + a.Server("connector-2").WSAddr().String() + " " + a.Server("connector-2").TCPAddr().String() + " up 1 1",
		"chat-1":      "chat-1 chat no " + addr("chat-1") + " - - up - -",
		"chat-2":      "chat-2 chat no " + addr("chat-2") + " - - up - -",
	} {
		if got := tableRow(t, out.String(), id); got != want {
			t.Errorf("row of %s:\n got %q\nwant %q", id, got, want)
		}
	}
	if got := tableRow(t, out.String(), "chat-3"); !strings.Contains(got, " down ") {
		t.Errorf("chat-3, which does not run, is listed as %q", got)
	}

	out.Reset()
	if err := run([]string{"kick", "ann*r1", "--cluster", file}, &out, &errOut); err != nil {
		t.Fatalf("kick: %v\n%s", err, errOut.String())
	}
	if !strings.Contains(out.String(), `kicked 1 session(s) of uid "ann*r1" on 3 frontend(s)`) {
		t.Errorf("kick printed:\n%s", out.String())
	}
	// The README's REPL example: ask the gate for a connector, input piped.
	var repl bytes.Buffer
	gate := "ws://" + a.Server("gate-1").WSAddr().String() + "/"
	if err := admincli.REPL(context.Background(), gate, strings.NewReader(`request gate.gateHandler.queryEntry {"uid":"ann"}`+"\n"), &repl, 10*time.Second); err != nil {
		t.Fatalf("client: %v\n%s", err, repl.String())
	}
	if !regexp.MustCompile(`response gate.gateHandler.queryEntry \{"code":200,"host":"127.0.0.1","port":\d+\}\n$`).MatchString(repl.String()) {
		t.Errorf("the REPL printed:\n%s", repl.String())
	}

	<-ann.Done()
	var kick *client.KickError
	if !errors.As(ann.Err(), &kick) {
		t.Errorf("ann's connection ended with %v, not a KICK", ann.Err())
	}
}
