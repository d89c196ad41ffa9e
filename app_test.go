package pomelo_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/pomelo-go/pomelo"
	testingv1 "github.com/pomelo-go/pomelo/gen/pomelo/testing/v1"
	"github.com/pomelo-go/pomelo/internal/testenv"
	"github.com/pomelo-go/pomelo/runtime"
	"github.com/pomelo-go/pomelo/runtime/channel"
	"github.com/pomelo-go/pomelo/runtime/client"
	"github.com/pomelo-go/pomelo/runtime/cluster"
	"github.com/pomelo-go/pomelo/runtime/connector"
)

var quiet = slog.New(slog.NewTextHandler(io.Discard, nil))

// echoServer is the backend of the tests: Echo binds the session to the
// text as a uid, puts it in the channel "room" and pushes to the room.
type echoServer struct {
	testingv1.UnimplementedEchoHandlerServer
	testingv1.UnimplementedEchoRemoteServer
	app *pomelo.App
}

func (e *echoServer) Echo(ctx context.Context, s runtime.Session, req *testingv1.EchoRequest) (*testingv1.EchoResponse, error) {
	if s.UID() == "" {
		if err := s.Bind(ctx, req.Text); err != nil {
			return nil, err
		}
	}
	room := e.app.Channels().GetOrCreate("room", channel.ChannelConfig{})
	if err := room.Add(req.Text, s.FrontendID()); err != nil {
		return nil, err
	}
	if err := e.app.Channels().GetOrCreate("lobby", channel.ChannelConfig{LeaveOnClose: true}).AddSession(s); err != nil {
		return nil, err
	}
	if _, err := testingv1.EchoPushOnEcho.ToGroup(ctx, room, &testingv1.EchoEvent{From: e.app.ID(), Text: req.Text}); err != nil {
		return nil, err
	}
	return &testingv1.EchoResponse{Code: 200, Text: req.Text}, nil
}

func (e *echoServer) Whoami(_ context.Context, req *testingv1.WhoamiRequest) (*testingv1.WhoamiResponse, error) {
	return &testingv1.WhoamiResponse{ServerId: e.app.ID(), Note: req.Note}, nil
}

func register(app *pomelo.App) error {
	if app.Type() != "echo" {
		return nil
	}
	e := &echoServer{app: app}
	if err := testingv1.RegisterEchoRemoteServer(app, e); err != nil {
		return err
	}
	return testingv1.RegisterEchoHandlerServer(app, e)
}

func listen(t *testing.T) net.Listener {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	return ln
}

func info(id, typ string, frontend bool, ln net.Listener) cluster.ServerInfo {
	return cluster.ServerInfo{ID: id, Type: typ, Host: "127.0.0.1", RPCPort: ln.Addr().(*net.TCPAddr).Port, Frontend: frontend}
}

// serve runs app.Serve in the background and waits until it is ready; the
// returned channel yields Serve's result.
func serve(t *testing.T, ctx context.Context, app *pomelo.App) <-chan error {
	t.Helper()
	done := make(chan error, 1)
	go func() { done <- app.Serve(ctx) }()
	select {
	case <-app.Ready():
	case err := <-done:
		t.Fatalf("%s: Serve: %v", app.ID(), err)
	case <-time.After(10 * time.Second):
		t.Fatalf("%s: not ready", app.ID())
	}
	return done
}

func wait(t *testing.T, done <-chan error) error {
	t.Helper()
	select {
	case err := <-done:
		return err
	case <-time.After(15 * time.Second):
		t.Fatal("Serve did not return after its context ended")
		return nil
	}
}

func TestAppPairForwardsRemotesPushesAndDrainsOnCancel(t *testing.T) {
	feLn, beLn := listen(t), listen(t)
	members := cluster.NewStatic(info("connector-1", "connector", true, feLn), info("echo-1", "echo", false, beLn))
	front, err := pomelo.New(pomelo.Config{
		ID: "connector-1", Type: "connector", Frontend: true,
		RPCListener: feLn, WSAddr: "127.0.0.1:0", TCPAddr: "127.0.0.1:0",
		Membership: members, Secret: "s", Logger: quiet,
	})
	if err != nil {
		t.Fatal(err)
	}
	back, err := pomelo.New(pomelo.Config{
		ID: "echo-1", Type: "echo", RPCListener: beLn,
		Membership: members, Secret: "s", Logger: quiet,
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := register(back); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	backDone := serve(t, ctx, back)
	frontCtx, stopFront := context.WithCancel(ctx)
	defer stopFront()
	frontDone := serve(t, frontCtx, front)

	rctx, rcancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer rcancel()
	cl, err := client.Dial(rctx, "tcp://"+front.TCPAddr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	pushed := make(chan *testingv1.EchoEvent, 1)
	client.Subscribe(cl, testingv1.EchoPushOnEcho, func(ev *testingv1.EchoEvent) { pushed <- ev })
	res, err := testingv1.NewEchoHandlerClient(cl).Echo(rctx, &testingv1.EchoRequest{Text: "alice"})
	if err != nil || res.Text != "alice" {
		t.Fatalf("forwarded request: %v, %v", res, err)
	}
	select {
	case ev := <-pushed:
		if ev.From != "echo-1" || ev.Text != "alice" {
			t.Fatalf("push %v", ev)
		}
	case <-rctx.Done():
		t.Fatal("no push from the backend's channel")
	}
	who, err := testingv1.NewEchoRemoteClient(front).Whoami(runtime.WithRouteKey(rctx, "k"), &testingv1.WhoamiRequest{Note: "n"})
	if err != nil || who.ServerId != "echo-1" || who.Note != "n" {
		t.Fatalf("remote call from the frontend: %v, %v", who, err)
	}
	if failed, err := testingv1.EchoPushOnEcho.ToUIDs(rctx, back, []string{"alice", "bob"}, &testingv1.EchoEvent{Text: "direct"}); err != nil || len(failed) != 1 || failed[0] != "bob" {
		t.Fatalf("push to uids from the backend: failed %v, %v", failed, err)
	}

	// A session that closes leaves the leave-on-close channels of the
	// backend that handled it and of its frontend.
	carol, err := client.Dial(rctx, "tcp://"+front.TCPAddr().String())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := testingv1.NewEchoHandlerClient(carol).Echo(rctx, &testingv1.EchoRequest{Text: "carol"}); err != nil {
		t.Fatal(err)
	}
	lobby, _ := back.Channels().Get("lobby")
	local := front.Channels().GetOrCreate("local", channel.ChannelConfig{LeaveOnClose: true})
	if err := local.Add("carol", "connector-1"); err != nil {
		t.Fatal(err)
	}
	if got := lobby.UIDs(); len(got) != 2 {
		t.Fatalf("lobby = %v, want alice and carol", got)
	}
	carol.Close()
	for deadline := time.Now().Add(5 * time.Second); lobby.Len() != 1 || local.Len() != 0; time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("after carol closed: lobby %v, frontend channel %v", lobby.UIDs(), local.UIDs())
		}
	}
	if got := lobby.UIDs(); got[0] != "alice" {
		t.Fatalf("lobby = %v, want alice only", got)
	}

	stopFront()
	if err := wait(t, frontDone); err != nil {
		t.Fatalf("frontend Serve after cancel: %v", err)
	}
	<-cl.Done()
	var kick *client.KickError
	if !errors.As(cl.Err(), &kick) || kick.Reason != connector.KickReasonShutdown {
		t.Fatalf("client after the frontend drained: %v", cl.Err())
	}
	cancel()
	if err := wait(t, backDone); err != nil {
		t.Fatalf("backend Serve after cancel: %v", err)
	}
	if _, err := back.Channels().Create("late", channel.ChannelConfig{}); !errors.Is(err, runtime.ErrClosed) {
		t.Fatalf("channels after Serve returned: %v", err)
	}
}

func TestRegistrationBeforeServeIsCheckedAtOnce(t *testing.T) {
	app, err := pomelo.New(pomelo.Config{ID: "echo-1", Type: "echo", RPCListener: listen(t), Secret: "s", Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	if err := register(app); err != nil {
		t.Fatal(err)
	}
	if err := testingv1.RegisterEchoHandlerServer(app, &echoServer{app: app}); err == nil {
		t.Fatal("registering the routes twice succeeded")
	}
	other, err := pomelo.New(pomelo.Config{ID: "gate-1", Type: "gate", RPCListener: listen(t), Secret: "s", Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	if err := testingv1.RegisterEchoHandlerServer(other, &echoServer{app: other}); err == nil {
		t.Fatal("a gate server accepted echo routes")
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	for _, a := range []*pomelo.App{app, other} {
		if err := a.Serve(ctx); err != nil {
			t.Fatalf("Serve with a done context: %v", err)
		}
		if err := a.Serve(ctx); err == nil {
			t.Fatal("Serve twice succeeded")
		}
	}
}

func TestNewRejectsIncompleteConfig(t *testing.T) {
	for name, cfg := range map[string]pomelo.Config{
		"no id":          {Type: "echo", RPCAddr: "127.0.0.1:4001"},
		"no rpc port":    {ID: "echo-1", Type: "echo"},
		"rpc port zero":  {ID: "echo-1", Type: "echo", RPCAddr: "127.0.0.1:0"},
		"missing file":   {ID: "echo-1", ClusterFile: filepath.Join(t.TempDir(), "none.json")},
		"not in file":    {ID: "nobody", ClusterFile: writeFile(t, 4001, 3010, 4002)},
		"type mismatch":  {ID: "echo-1", Type: "chat", ClusterFile: writeFile(t, 4001, 3010, 4002)},
		"bad rpc addr":   {ID: "echo-1", Type: "echo", RPCAddr: "4001"},
		"no type no ref": {ID: "echo-1", RPCAddr: "127.0.0.1:4001"},
	} {
		if _, err := pomelo.New(cfg); err == nil {
			t.Errorf("%s: New succeeded", name)
		}
	}
}

func TestServeReturnsTheListenerError(t *testing.T) {
	taken := listen(t)
	defer taken.Close()
	app, err := pomelo.New(pomelo.Config{
		ID: "connector-1", Type: "connector", Frontend: true,
		RPCListener: listen(t), WSAddr: taken.Addr().String(), Secret: "s", Logger: quiet,
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := app.Serve(ctx); err == nil || ctx.Err() != nil {
		t.Fatalf("Serve on a taken port: %v", err)
	}
}

// breakingListener is a listener whose Accept fails for good once broken.
type breakingListener struct {
	net.Listener
	broken chan struct{}
}

var errAcceptBroke = errors.New("accept broke")

func (l *breakingListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	select {
	case <-l.broken:
		if c != nil {
			c.Close()
		}
		return nil, errAcceptBroke
	default:
	}
	return c, err
}

func (l *breakingListener) breakNow() {
	close(l.broken)
	l.Listener.Close()
}

func TestServeDrainsAndReturnsTheErrorOfAnRPCListenerThatFails(t *testing.T) {
	ln := &breakingListener{Listener: listen(t), broken: make(chan struct{})}
	app, err := pomelo.New(pomelo.Config{ID: "echo-1", Type: "echo", RPCListener: ln, Secret: "s", Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	done := serve(t, context.Background(), app)
	ln.breakNow()
	if err := wait(t, done); !errors.Is(err, errAcceptBroke) {
		t.Fatalf("Serve after its RPC listener failed: %v", err)
	}
}

// writeFile writes a cluster file of a connector and an echo server.
func writeFile(t *testing.T, rpcPort, wsPort, echoPort int) string {
	t.Helper()
	p := strconv.Itoa
	body := `{"secret": "s", "servers": [
  {"id": "connector-1", "type": "connector", "host": "127.0.0.1", "rpcPort": ` + p(rpcPort) + `, "frontend": true, "wsPort": ` + p(wsPort) + `},
  {"id": "echo-1", "type": "echo", "host": "127.0.0.1", "rpcPort": ` + p(echoPort) + `}
]}`
	path := filepath.Join(t.TempDir(), "cluster.json")
	if err := os.WriteFile(path, []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

func TestStartClusterRunsEveryServerOfTheFile(t *testing.T) {
	f, err := cluster.LoadFile(writeFile(t, 1, 2, 3)) // ports unused: ephemeral
	if err != nil {
		t.Fatal(err)
	}
	c, err := pomelo.StartCluster(f, pomelo.ClusterConfig{EphemeralPorts: true, Logger: quiet}, register)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if got := len(c.Apps()); got != 2 || c.Apps()[0].ID() != "echo-1" {
		t.Fatalf("apps %d, first %s: want the backend first", got, c.Apps()[0].ID())
	}
	front := c.App("connector-1")
	if front.Info().WSPort == 0 || front.Info().WSPort == 2 {
		t.Fatalf("frontend not on an ephemeral port: %+v", front.Info())
	}
	if err := echoThrough("ws://"+front.WSAddr().String()+"/", "bob"); err != nil {
		t.Fatalf("request through the cluster: %v", err)
	}
	if err := c.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	select {
	case <-c.Stopped():
	default:
		t.Fatal("Stopped not closed after Close")
	}
}

func TestStartClusterFailsWhenSetupFails(t *testing.T) {
	f, err := cluster.LoadFile(writeFile(t, 1, 2, 3))
	if err != nil {
		t.Fatal(err)
	}
	_, err = pomelo.StartCluster(f, pomelo.ClusterConfig{EphemeralPorts: true, Logger: quiet}, func(a *pomelo.App) error {
		if a.Frontend() {
			return errors.New("boom")
		}
		return register(a)
	})
	if err == nil || !strings.Contains(err.Error(), "boom") {
		t.Fatalf("StartCluster: %v", err)
	}
	if _, err := pomelo.StartCluster(f, pomelo.ClusterConfig{Servers: []string{"nobody"}}, nil); err == nil {
		t.Fatal("an unknown server id was accepted")
	}
}

func TestRunClusterServesUntilCancelled(t *testing.T) {
	ws := testenv.FreePort(t)
	path := writeFile(t, testenv.FreePort(t), ws, testenv.FreePort(t))
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- pomelo.RunCluster(ctx, path, register) }()
	dctx, dcancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer dcancel()
	var cl *client.Client
	for {
		var err error
		if cl, err = client.Dial(dctx, "ws://127.0.0.1:"+strconv.Itoa(ws)+"/"); err == nil {
			break
		}
		select {
		case err := <-done:
			t.Fatalf("RunCluster: %v", err)
		case <-dctx.Done():
			t.Fatalf("frontend never answered: %v", err)
		case <-time.After(50 * time.Millisecond):
		}
	}
	defer cl.Close()
	if res, err := testingv1.NewEchoHandlerClient(cl).Echo(dctx, &testingv1.EchoRequest{Text: "carol"}); err != nil || res.Text != "carol" {
		t.Fatalf("request: %v, %v", res, err)
	}
	cancel()
	if err := wait(t, done); err != nil {
		t.Fatalf("RunCluster after cancel: %v", err)
	}
}

// A server made from a cluster file routes to the other servers of the file
// while they answer: a backend another process starts later with the same
// file becomes a member at the next probe, and leaves when it stops.
func TestClusterFileMembershipFollowsOtherProcesses(t *testing.T) {
	p := strconv.Itoa
	body := `{"secret": "s", "servers": [
  {"id": "connector-1", "type": "connector", "host": "127.0.0.1", "rpcPort": ` + p(testenv.FreePort(t)) + `, "frontend": true},
  {"id": "echo-1", "type": "echo", "host": "127.0.0.1", "rpcPort": ` + p(testenv.FreePort(t)) + `}
]}`
	path := filepath.Join(t.TempDir(), "cluster.json")
	if err := os.WriteFile(path, []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
	front, err := pomelo.New(pomelo.Config{ID: "connector-1", ClusterFile: path, TCPAddr: "127.0.0.1:0", Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	frontDone := serve(t, ctx, front)
	echoIDs := func() string {
		var ids []string
		for _, s := range front.Members("echo") {
			ids = append(ids, s.ID)
		}
		return strings.Join(ids, ",")
	}
	if got := echoIDs(); got != "" {
		t.Fatalf("echo members before echo-1 runs: %q", got)
	}

	// Another "process" runs echo-1 of the same file.
	f, err := cluster.LoadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	back, err := pomelo.StartCluster(f, pomelo.ClusterConfig{Servers: []string{"echo-1"}, Logger: quiet}, register)
	if err != nil {
		t.Fatal(err)
	}
	defer back.Close()
	waitUntil(t, func() bool { return echoIDs() == "echo-1" })
	if err := echoThrough("tcp://"+front.TCPAddr().String(), "carol"); err != nil {
		t.Fatalf("request to the server that joined: %v", err)
	}

	if err := back.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	waitUntil(t, func() bool { return echoIDs() == "" })
	cancel()
	if err := wait(t, frontDone); err != nil {
		t.Fatalf("drain: %v", err)
	}
}

// waitUntil waits up to 10s for cond.
func waitUntil(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition not met in 10s")
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// echoThrough connects a client to url and asks the echo backend for text.
func echoThrough(url, text string) error {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	cl, err := client.Dial(ctx, url)
	if err != nil {
		return err
	}
	defer cl.Close()
	res, err := testingv1.NewEchoHandlerClient(cl).Echo(ctx, &testingv1.EchoRequest{Text: text})
	if err != nil {
		return err
	}
	if res.Text != text {
		return fmt.Errorf("echoed %q, want %q", res.Text, text)
	}
	return nil
}
