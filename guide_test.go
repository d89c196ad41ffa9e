package pomelo_test

// The code of docs/GUIDE.md: its snippets are excerpts of this file, and
// TestDocSnippetsMatchTheirSource keeps them so.

import (
	"context"
	"errors"
	"flag"
	"log"
	"os"
	"os/signal"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/pomelo-go/pomelo"
	testingv1 "github.com/pomelo-go/pomelo/gen/pomelo/testing/v1"
	"github.com/pomelo-go/pomelo/runtime/channel"
	"github.com/pomelo-go/pomelo/runtime/client"
	"github.com/pomelo-go/pomelo/runtime/cluster"
	"github.com/pomelo-go/pomelo/runtime/etcdmember"
	"github.com/pomelo-go/pomelo/runtime/online"
	"github.com/pomelo-go/pomelo/runtime/session"
	"github.com/pomelo-go/pomelo/runtime/testkit"
)

// ErrRoomFull is an application's named error: defined once, returned with
// pomelo.Errorf, matched with errors.Is on any server and in Go clients.
var ErrRoomFull = pomelo.DefineError(1001, "ROOM_FULL")

// lobby serves the "echo" servers' EchoHandler (what clients call) and
// EchoRemote (what servers call on each other).
type lobby struct {
	testingv1.UnimplementedEchoHandlerServer
	testingv1.UnimplementedEchoRemoteServer
	app      *pomelo.App
	capacity int
	mu       sync.Mutex // serializes joins, so that capacity holds
}

// setup registers what each server type serves. main passes it to
// pomelo.RunCluster or pomelo.StartCluster; tests to testkit.
func setup(app *pomelo.App) error {
	switch app.Type() {
	case testingv1.EchoHandlerServerType: // "echo", from the proto
		l := &lobby{app: app, capacity: 2}
		if err := testingv1.RegisterEchoRemoteServer(app, l); err != nil {
			return err
		}
		return testingv1.RegisterEchoHandlerServer(app, l)
	}
	return nil
}

// Echo logs the player in as req.Text, adds the session to the "lobby"
// channel and tells every member.
func (l *lobby) Echo(ctx context.Context, s pomelo.Session, req *testingv1.EchoRequest) (*testingv1.EchoResponse, error) {
	if req.Text == "" {
		return nil, pomelo.Errorf(pomelo.ErrBadRequest, "text is empty")
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	room := l.app.Channels().GetOrCreate("lobby", channel.ChannelConfig{LeaveOnClose: true})
	if room.Len() >= l.capacity {
		return nil, pomelo.Errorf(ErrRoomFull, "the lobby has %d players", room.Len())
	}
	if err := s.Bind(ctx, req.Text); err != nil {
		return nil, err
	}
	if err := room.AddSession(s); err != nil {
		return nil, err
	}
	event := &testingv1.EchoEvent{From: s.UID(), Text: "joined"}
	if _, err := testingv1.EchoPushOnEcho.ToGroup(ctx, room, event); err != nil {
		return nil, err
	}
	return &testingv1.EchoResponse{Code: 200, Text: "welcome, " + s.UID()}, nil
}

// Sum adds the values up with EchoRemote.Add calls.
func (l *lobby) Sum(ctx context.Context, s pomelo.Session, req *testingv1.SumRequest) (*testingv1.SumResponse, error) {
	remote := testingv1.NewEchoRemoteClient(l.app)
	var sum int64
	for _, v := range req.Values {
		// Routed by the session in ctx to one "echo" server; AddTo calls a
		// server by id, AddAll every server of the type.
		res, err := remote.Add(ctx, &testingv1.AddRequest{A: sum, B: v})
		if err != nil {
			return nil, err
		}
		sum = res.Sum
	}
	return &testingv1.SumResponse{Code: 200, Sum: sum, Count: uint32(len(req.Values))}, nil
}

// Add implements EchoRemote.Add.
func (l *lobby) Add(_ context.Context, req *testingv1.AddRequest) (*testingv1.AddResponse, error) {
	return &testingv1.AddResponse{Sum: req.A + req.B, ServerId: l.app.ID()}, nil
}

// TestGuideLobbyThroughTestkit runs the guide's servers with testkit and
// plays them as game clients: joins are pushed to the lobby, the third
// player is refused with ROOM_FULL until a member disconnects, and Sum adds
// up through remote calls.
func TestGuideLobbyThroughTestkit(t *testing.T) {
	c := testkit.Start(t, testkit.Config{
		Servers: []testkit.Spec{
			{Type: "connector", Frontend: true},
			{Type: testingv1.EchoHandlerServerType},
		},
		Configure: func(cfg *pomelo.Config) { cfg.Logger = quiet },
		Setup:     func(m *testkit.Member) error { return setup(m.App) },
	})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	url := c.Members("connector")[0].WSURL()

	ann, err := client.Dial(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	defer ann.Close()
	joined := make(chan *testingv1.EchoEvent, 4)
	client.Subscribe(ann, testingv1.EchoPushOnEcho, func(ev *testingv1.EchoEvent) { joined <- ev })
	res, err := testingv1.NewEchoHandlerClient(ann).Echo(ctx, &testingv1.EchoRequest{Text: "ann"})
	if err != nil || res.Text != "welcome, ann" {
		t.Fatalf("ann's Echo: %v, %v", res, err)
	}

	bob, err := client.Dial(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := testingv1.NewEchoHandlerClient(bob).Echo(ctx, &testingv1.EchoRequest{Text: "bob"}); err != nil {
		t.Fatalf("bob's Echo: %v", err)
	}
	for _, want := range []string{"ann", "bob"} {
		select {
		case ev := <-joined:
			if ev.From != want {
				t.Fatalf("push from %q, want %q", ev.From, want)
			}
		case <-ctx.Done():
			t.Fatalf("no push of %s joining", want)
		}
	}

	cid, err := client.Dial(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	defer cid.Close()
	cidEcho := testingv1.NewEchoHandlerClient(cid)
	if _, err := cidEcho.Echo(ctx, &testingv1.EchoRequest{Text: "cid"}); !errors.Is(err, ErrRoomFull) {
		t.Fatalf("cid's Echo in a full lobby: %v, want ROOM_FULL", err)
	}

	// bob disconnects: the channel, made with LeaveOnClose, drops him once
	// his session's close reaches the echo server.
	bob.Close()
	for {
		_, err := cidEcho.Echo(ctx, &testingv1.EchoRequest{Text: "cid"})
		if err == nil {
			break
		}
		if !errors.Is(err, ErrRoomFull) || ctx.Err() != nil {
			t.Fatalf("cid's Echo after bob left: %v", err)
		}
	}

	sum, err := testingv1.NewEchoHandlerClient(ann).Sum(ctx, &testingv1.SumRequest{Values: []int64{1, 2, 3}})
	if err != nil || sum.Sum != 6 || sum.Count != 3 {
		t.Fatalf("Sum: %v, %v", sum, err)
	}
}

// One server per process: the process runs the server of the cluster file
// its -id flag names (pomelo.New fills in the type, the addresses and the
// secret from the file's entry), and finds the others by probing the
// file's servers.
func ExampleNew() {
	id := flag.String("id", "echo-1", "the server to run")
	flag.Parse()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	app, err := pomelo.New(pomelo.Config{ID: *id, ClusterFile: "cluster.json"})
	if err != nil {
		log.Fatal(err)
	}
	if err := setup(app); err != nil {
		log.Fatal(err)
	}
	if err := app.Serve(ctx); err != nil { // until ctx ends, then drains
		log.Fatal(err)
	}
}

// Several servers of the cluster file per process: each process runs the
// servers its -servers flag lists ("connector-1", or "echo-1,echo-2").
func ExampleStartCluster_separateProcesses() {
	servers := flag.String("servers", "", "the servers to run here, comma-separated (default all)")
	flag.Parse()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	f, err := cluster.LoadFile("cluster.json")
	if err != nil {
		log.Fatal(err)
	}
	var opts pomelo.ClusterConfig
	if *servers != "" {
		opts.Servers = strings.Split(*servers, ",")
	}
	c, err := pomelo.StartCluster(f, opts, setup)
	if err != nil {
		log.Fatal(err)
	}
	select {
	case <-ctx.Done():
	case <-c.Stopped(): // a server stopped by itself
	}
	if err := c.Close(); err != nil { // drains: frontends first
		log.Fatal(err)
	}
}

// Membership in etcd and online status in Redis: each server gets its own
// etcdmember.Membership and online.Service. The App closes its online
// service when Serve returns; the memberships are the caller's to close.
func ExampleConfig_etcdAndRedis() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	rdb := redis.NewClient(&redis.Options{Addr: "127.0.0.1:6379"})
	defer rdb.Close()
	var members []*etcdmember.Membership
	configure := func(cfg *pomelo.Config) {
		m, err := etcdmember.New(ctx, etcdmember.Config{Endpoints: []string{"http://127.0.0.1:2379"}, Prefix: "/mygame/servers/"})
		if err != nil {
			log.Fatal(err)
		}
		members = append(members, m)
		cfg.Membership = m           // registered while Serve runs
		cfg.DrainDelay = time.Second // so that the others see it leave
		cfg.Online = online.New(rdb, online.Config{Prefix: "mygame:", Policy: session.KickOld})
	}
	f, err := cluster.LoadFile("cluster.json")
	if err != nil {
		log.Fatal(err)
	}
	c, err := pomelo.StartCluster(f, pomelo.ClusterConfig{Configure: configure}, setup)
	if err != nil {
		log.Fatal(err)
	}
	<-ctx.Done()
	err = c.Close()
	for _, m := range members {
		m.Close()
	}
	if err != nil {
		log.Fatal(err)
	}
}
