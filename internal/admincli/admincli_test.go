package admincli_test

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
	"sync"
	"testing"
	"time"

	"google.golang.org/protobuf/types/known/structpb"

	"github.com/pomelo-go/pomelo"
	"github.com/pomelo-go/pomelo/internal/admincli"
	"github.com/pomelo-go/pomelo/internal/testenv"
	"github.com/pomelo-go/pomelo/runtime"
	"github.com/pomelo-go/pomelo/runtime/client"
	"github.com/pomelo-go/pomelo/runtime/cluster"
	"github.com/pomelo-go/pomelo/runtime/testkit"
)

const secret = "admin-test-secret"

var quiet = slog.New(slog.NewTextHandler(io.Discard, nil))

// testCluster is a cluster run by pomelo.StartCluster: two frontends, one
// backend, and one backend of the file that does not run.
type testCluster struct {
	c    *pomelo.Cluster
	file string // the cluster file with the ports the servers listen on
}

// startCluster starts the cluster and writes its file. Frontends serve
// connector.entry.login ({"uid"}: binds the session), connector.entry.ping
// and connector.entry.hello ({"text"}: pushes onHello with the body to the
// session, then answers {"ok":true}); the backend serves area.room.echo.
func startCluster(t *testing.T) *testCluster {
	t.Helper()
	f := &cluster.File{Secret: secret, Servers: []cluster.ServerInfo{
		{ID: "connector-1", Type: "connector", Host: "127.0.0.1", RPCPort: 1, Frontend: true, WSPort: 1, TCPPort: 1},
		{ID: "connector-2", Type: "connector", Host: "127.0.0.1", RPCPort: 1, Frontend: true, WSPort: 1},
		{ID: "area-1", Type: "area", Host: "127.0.0.1", RPCPort: 1},
		{ID: "area-2", Type: "area", Host: "127.0.0.1", RPCPort: testenv.FreePort(t)},
	}}
	c, err := pomelo.StartCluster(f, pomelo.ClusterConfig{
		Servers:        []string{"connector-1", "connector-2", "area-1"},
		EphemeralPorts: true,
		Logger:         quiet,
	}, func(a *pomelo.App) error {
		if !a.Frontend() {
			testkit.HandleStruct(t, a, "area.room.echo", func(_ context.Context, _ runtime.Session, in *structpb.Struct) (*structpb.Struct, error) {
				return in, nil
			})
			return nil
		}
		testkit.HandleStruct(t, a, "connector.entry.login", func(ctx context.Context, s runtime.Session, in *structpb.Struct) (*structpb.Struct, error) {
			return testkit.Struct(map[string]any{"ok": true}), s.Bind(ctx, in.Fields["uid"].GetStringValue())
		})
		testkit.HandleStruct(t, a, "connector.entry.ping", func(context.Context, runtime.Session, *structpb.Struct) (*structpb.Struct, error) {
			return testkit.Struct(map[string]any{"pong": true}), nil
		})
		testkit.HandleStruct(t, a, "connector.entry.hello", func(ctx context.Context, s runtime.Session, in *structpb.Struct) (*structpb.Struct, error) {
			if err := s.Send(ctx, "onHello", in); err != nil {
				return nil, err
			}
			return testkit.Struct(map[string]any{"ok": true}), nil
		})
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	out := &cluster.File{Secret: secret}
	for _, s := range f.Servers {
		if a := c.App(s.ID); a != nil {
			s = a.Info()
		}
		out.Servers = append(out.Servers, s)
	}
	path := filepath.Join(t.TempDir(), "cluster.json")
	b, err := json.Marshal(out)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, b, 0o600); err != nil {
		t.Fatal(err)
	}
	return &testCluster{c: c, file: path}
}

// dial connects a client to a frontend and, when uid is not empty, logs
// in; either way a request has been answered, so the session exists.
func (tc *testCluster) dial(t *testing.T, frontend, uid string) *client.Client {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	cl, err := client.Dial(ctx, "ws://"+tc.c.App(frontend).WSAddr().String()+"/")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cl.Close() })
	if uid == "" {
		err = cl.Request(ctx, "connector.entry.ping", &structpb.Struct{}, &structpb.Struct{})
	} else {
		err = cl.Request(ctx, "connector.entry.login", testkit.Struct(map[string]any{"uid": uid}), &structpb.Struct{})
	}
	if err != nil {
		t.Fatal(err)
	}
	return cl
}

// run runs an admin command and returns its output.
func run(t *testing.T, env map[string]string, args ...string) (string, error) {
	t.Helper()
	var out, errOut bytes.Buffer
	err := admincli.Run(context.Background(), args[0], args[1:], admincli.Env{
		Stdout: &out, Stderr: &errOut,
		Getenv: func(k string) string { return env[k] },
	})
	return out.String() + errOut.String(), err
}

// row returns the fields of the table row of server id.
func row(t *testing.T, out, id string) []string {
	t.Helper()
	for _, line := range strings.Split(out, "\n") {
		if f := strings.Fields(line); len(f) > 0 && f[0] == id {
			return f
		}
	}
	t.Fatalf("no row for %s in:\n%s", id, out)
	return nil
}

func TestServersListsEveryServerWithItsStateAndSessionCounts(t *testing.T) {
	tc := startCluster(t)
	tc.dial(t, "connector-1", "alice")
	tc.dial(t, "connector-1", "bob")
	tc.dial(t, "connector-1", "")
	tc.dial(t, "connector-2", "")

	out, err := run(t, nil, "servers", "--cluster", tc.file)
	if err != nil {
		t.Fatalf("servers: %v\n%s", err, out)
	}
	c1 := tc.c.App("connector-1").Info()
	// ID TYPE FRONTEND RPC WS TCP STATE SESSIONS BOUND [NOTE]
	want := map[string][]string{
		"connector-1": {"connector-1", "connector", "yes", c1.RPCAddr(), tc.c.App("connector-1").WSAddr().String(), tc.c.App("connector-1").TCPAddr().String(), "up", "3", "2"},
		"connector-2": {"connector-2", "connector", "yes", tc.c.App("connector-2").Info().RPCAddr(), tc.c.App("connector-2").WSAddr().String(), "-", "up", "1", "0"},
		"area-1":      {"area-1", "area", "no", tc.c.App("area-1").Info().RPCAddr(), "-", "-", "up", "-", "-"},
	}
	for id, w := range want {
		if got := row(t, out, id); strings.Join(got, " ") != strings.Join(w, " ") {
			t.Errorf("row of %s:\n got %q\nwant %q", id, got, w)
		}
	}
	if got := row(t, out, "area-2"); got[6] != "down" {
		t.Errorf("the server that does not run is %q, want down:\n%s", got[6], out)
	}
	if !strings.Contains(out, "4 server(s): 3 up, 1 down, 0 unreachable; 4 session(s), 2 bound, on 2 frontend(s)") {
		t.Errorf("no summary line:\n%s", out)
	}
}

func TestServersTakesTheSecretFromTheFlagThenTheEnvironment(t *testing.T) {
	tc := startCluster(t)
	out, err := run(t, nil, "servers", "--cluster", tc.file, "--secret", "wrong")
	if err != nil {
		t.Fatal(err)
	}
	if got := row(t, out, "connector-1"); got[6] != "unreachable" || !strings.Contains(out, "the cluster secret was refused") {
		t.Errorf("with a wrong --secret:\n%s", out)
	}
	out, _ = run(t, map[string]string{admincli.SecretEnv: "wrong"}, "servers", "--cluster", tc.file)
	if got := row(t, out, "connector-1"); got[6] != "unreachable" {
		t.Errorf("with a wrong %s:\n%s", admincli.SecretEnv, out)
	}
	out, _ = run(t, map[string]string{admincli.SecretEnv: "wrong"}, "servers", "--cluster", tc.file, "--secret", secret)
	if got := row(t, out, "connector-1"); got[6] != "up" {
		t.Errorf("--secret does not win over %s:\n%s", admincli.SecretEnv, out)
	}
}

func TestKickClosesEverySessionOfTheUIDOnEveryFrontend(t *testing.T) {
	tc := startCluster(t)
	a1 := tc.dial(t, "connector-1", "alice")
	a2 := tc.dial(t, "connector-2", "alice")
	bob := tc.dial(t, "connector-1", "bob")

	out, err := run(t, nil, "kick", "alice", "--reason", "maintenance", "--cluster", tc.file)
	if err != nil {
		t.Fatalf("kick: %v\n%s", err, out)
	}
	if !strings.Contains(out, `kicked 2 session(s) of uid "alice" on 2 frontend(s)`) {
		t.Errorf("kick printed:\n%s", out)
	}
	for _, cl := range []*client.Client{a1, a2} {
		<-cl.Done()
		var kick *client.KickError
		if !errors.As(cl.Err(), &kick) || kick.Reason != "maintenance" {
			t.Errorf("alice's connection ended with %v, want a KICK with the reason", cl.Err())
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := bob.Request(ctx, "connector.entry.ping", &structpb.Struct{}, &structpb.Struct{}); err != nil {
		t.Errorf("bob was affected: %v", err)
	}
	out, _ = run(t, nil, "servers", "--cluster", tc.file)
	if got := row(t, out, "connector-2"); got[7] != "0" {
		t.Errorf("connector-2 still has sessions after the kick:\n%s", out)
	}
}

func TestBroadcastPushesToEverySessionOfEveryFrontend(t *testing.T) {
	tc := startCluster(t)
	clients := []*client.Client{tc.dial(t, "connector-1", "alice"), tc.dial(t, "connector-1", ""), tc.dial(t, "connector-2", "carol")}
	var pushes []<-chan []byte
	for _, cl := range clients {
		pushes = append(pushes, cl.Pushes("onNews", 1))
	}
	out, err := run(t, nil, "broadcast", "onNews", `{"text": "hello all"}`, "--cluster", tc.file)
	if err != nil {
		t.Fatalf("broadcast: %v\n%s", err, out)
	}
	if !strings.Contains(out, "pushed onNews to 3 session(s) on 2 frontend(s)") {
		t.Errorf("broadcast printed:\n%s", out)
	}
	for i, ch := range pushes {
		if body := <-ch; string(body) != `{"text":"hello all"}` {
			t.Errorf("client %d got %s", i, body)
		}
	}
	if _, err := run(t, nil, "broadcast", "onNews", `{not json`, "--cluster", tc.file); err == nil {
		t.Error("a body that is not JSON was broadcast")
	}
}

func TestBroadcastReachesProtobufClientsAsAStruct(t *testing.T) {
	tc := startCluster(t)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	cl, err := client.Config{Serializer: runtime.Protobuf}.Dial(ctx, "ws://"+tc.c.App("connector-2").WSAddr().String()+"/")
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	if err := cl.Request(ctx, "connector.entry.ping", &structpb.Struct{}, &structpb.Struct{}); err != nil {
		t.Fatal(err)
	}
	got := make(chan *structpb.Struct, 1)
	cl.OnPush("onNews", func(body []byte) {
		s := &structpb.Struct{}
		if runtime.Protobuf.Unmarshal(body, s) == nil {
			got <- s
		}
	})
	if out, err := run(t, nil, "broadcast", "onNews", `{"n": 7}`, "--cluster", tc.file); err != nil {
		t.Fatalf("broadcast: %v\n%s", err, out)
	}
	if s := <-got; s.Fields["n"].GetNumberValue() != 7 {
		t.Errorf("the protobuf client got %v", s)
	}
}

func TestCommandsRefuseBadArguments(t *testing.T) {
	for _, args := range [][]string{
		{"servers"},
		{"servers", "extra", "--cluster", "x"},
		{"servers", "--cluster", "/nonexistent/cluster.json"},
		{"servers", "--cluster", "x", "--etcd", "http://127.0.0.1:1"},
		{"kick", "--cluster", "x"},
		{"broadcast", "onNews", "--cluster", "x"},
		{"client"},
	} {
		if out, err := run(t, nil, args...); err == nil {
			t.Errorf("pomelo %v succeeded:\n%s", args, out)
		}
	}
}

// lockedBuffer is a bytes.Buffer safe for the REPL's goroutines.
type lockedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// waitFor waits until out contains every string of want.
func waitFor(t *testing.T, out *lockedBuffer, want ...string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		missing := ""
		for _, w := range want {
			if !strings.Contains(out.String(), w) {
				missing = w
			}
		}
		if missing == "" {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("the REPL never printed %q:\n%s", missing, out.String())
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestClientREPLPrintsResponsesErrorsAndPushesAndExitsAtTheEndOfItsInput(t *testing.T) {
	tc := startCluster(t)
	for _, url := range []string{
		"ws://" + tc.c.App("connector-1").WSAddr().String() + "/",
		"tcp://" + tc.c.App("connector-1").TCPAddr().String(),
	} {
		t.Run(url[:strings.Index(url, ":")], func(t *testing.T) {
			in, stdin := io.Pipe()
			out := &lockedBuffer{}
			done := make(chan error, 1)
			go func() {
				done <- admincli.Run(context.Background(), "client", []string{url}, admincli.Env{Stdin: in, Stdout: out, Stderr: out})
			}()
			io.WriteString(stdin, "request connector.entry.hello {\"text\": \"yo\"}\n")
			waitFor(t, out, "connected to "+url, `response connector.entry.hello {"ok":true}`, `push onHello {"text":"yo"}`)
			io.WriteString(stdin, "request area.room.echo {\"a\":[1,2]}\nrequest connector.entry.nope\nnotify connector.entry.ping {}\nrequest connector.entry.ping {bad\nfly away\n")
			waitFor(t, out, `response area.room.echo {"a":[1,2]}`, "error connector.entry.nope", "UNKNOWN_ROUTE", "error: the body is not JSON", `error: unknown command "fly"`)
			stdin.Close()
			if err := <-done; err != nil {
				t.Fatalf("the REPL ended with %v at the end of its input:\n%s", err, out)
			}
		})
	}
}

func TestClientREPLShowsAKickAndEnds(t *testing.T) {
	tc := startCluster(t)
	in, stdin := io.Pipe()
	defer stdin.Close()
	out := &lockedBuffer{}
	done := make(chan error, 1)
	go func() {
		done <- admincli.REPL(context.Background(), "ws://"+tc.c.App("connector-2").WSAddr().String()+"/", in, out, 10*time.Second)
	}()
	io.WriteString(stdin, "request connector.entry.login {\"uid\":\"dave\"}\n")
	waitFor(t, out, `response connector.entry.login {"ok":true}`)
	if o, err := run(t, nil, "kick", "dave", "--cluster", tc.file); err != nil {
		t.Fatalf("kick: %v\n%s", err, o)
	}
	if err := <-done; err != nil {
		t.Fatalf("the REPL ended with %v after a kick", err)
	}
	if !regexp.MustCompile(`kicked: kick\n$`).MatchString(out.String()) {
		t.Errorf("the REPL did not show the kick:\n%s", out)
	}
}

func TestClientREPLQuits(t *testing.T) {
	tc := startCluster(t)
	in, stdin := io.Pipe()
	defer stdin.Close()
	out := &lockedBuffer{}
	done := make(chan error, 1)
	go func() {
		done <- admincli.REPL(context.Background(), "ws://"+tc.c.App("connector-1").WSAddr().String()+"/", in, out, 10*time.Second)
	}()
	io.WriteString(stdin, "help\nquit\n")
	if err := <-done; err != nil {
		t.Fatalf("quit: %v", err)
	}
	if !strings.Contains(out.String(), "request ROUTE [JSON]") {
		t.Errorf("help printed:\n%s", out)
	}
}

func TestKickFailsWhenAFrontendRefusesTheSecret(t *testing.T) {
	tc := startCluster(t)
	out, err := run(t, nil, "kick", "alice", "--cluster", tc.file, "--secret", "wrong")
	if err == nil || !strings.Contains(out, "connector-1: unreachable: the cluster secret was refused") {
		t.Errorf("kick with a wrong secret: %v\n%s", err, out)
	}
}

func TestJSONPayloadCarriesTheTextAndTheMessage(t *testing.T) {
	for text, typ := range map[string]string{
		`{ "a" : 1 }`: "google.protobuf.Struct",
		`[1, "x"]`:    "google.protobuf.Value",
		`"hi"`:        "google.protobuf.Value",
	} {
		p, err := admincli.JSONPayload([]byte(text))
		if err != nil {
			t.Fatalf("%s: %v", text, err)
		}
		var compact bytes.Buffer
		json.Compact(&compact, []byte(text))
		if p.Type != typ || string(p.Json) != compact.String() || len(p.Proto) == 0 {
			t.Errorf("%s: payload %v", text, p)
		}
	}
	if _, err := admincli.JSONPayload([]byte(`{"a":`)); err == nil {
		t.Error("a text that is not JSON made a payload")
	}
}
