package cluster_test

import (
	"context"
	"io"
	"log/slog"
	"net"
	goruntime "runtime"
	"slices"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/pomelo-go/pomelo/internal/node"
	"github.com/pomelo-go/pomelo/internal/server"
	"github.com/pomelo-go/pomelo/internal/testenv"
	"github.com/pomelo-go/pomelo/runtime/cluster"
)

func quietLog() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

// listenLocal listens on a free loopback port.
func listenLocal(t *testing.T) net.Listener {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	return ln
}

func portOf(ln net.Listener) int { return ln.Addr().(*net.TCPAddr).Port }

// freePort returns a loopback port nothing listens on (now).
func freePort(t *testing.T) int { return testenv.FreePort(t) }

func memberIDs(servers []cluster.ServerInfo) []string {
	var out []string
	for _, s := range servers {
		out = append(out, s.ID)
	}
	return out
}

// notifications records what a subscriber is told.
type notifications struct {
	mu   sync.Mutex
	seen [][]string
}

func (n *notifications) add(l []cluster.ServerInfo) {
	n.mu.Lock()
	n.seen = append(n.seen, memberIDs(l))
	n.mu.Unlock()
}

func (n *notifications) list() [][]string {
	n.mu.Lock()
	defer n.mu.Unlock()
	return slices.Clone(n.seen)
}

// manual probes only when the test calls Probe (Start is not called).
func manual() cluster.ProbeConfig { return cluster.ProbeConfig{Logger: quietLog()} }

// A dead server is marked down after DownAfter failed probes in a row, and
// routing (the node's members, rendezvous over them) skips it; it is
// marked up again at the first probe that reaches it. Local servers are
// always members, reachable or not.
func TestProbedMarksDeadServerDownAndRoutingSkipsIt(t *testing.T) {
	chat1 := listenLocal(t)
	chat2 := listenLocal(t)
	servers := []cluster.ServerInfo{
		{ID: "connector-1", Type: "connector", Host: "127.0.0.1", RPCPort: freePort(t), Frontend: true},
		{ID: "chat-1", Type: "chat", Host: "127.0.0.1", RPCPort: portOf(chat1)},
		{ID: "chat-2", Type: "chat", Host: "127.0.0.1", RPCPort: portOf(chat2)},
	}
	p := cluster.NewProbed(servers, []string{"connector-1"}, manual())
	defer p.Close()
	if got, want := memberIDs(p.Servers()), []string{"chat-1", "chat-2", "connector-1"}; !slices.Equal(got, want) {
		t.Fatalf("members %q, want %q", got, want)
	}
	var seen notifications
	defer p.Subscribe(seen.add)()

	// The node routes on the membership.
	srv, err := server.New(server.Config{ID: "connector-1", Type: "connector", Frontend: true})
	if err != nil {
		t.Fatal(err)
	}
	node, err := node.Join(srv, node.Config{Self: servers[0], Membership: p, Insecure: true, Logger: quietLog()})
	if err != nil {
		t.Fatal(err)
	}
	defer node.Close(context.Background())
	// A key that chat-2 holds while both are up.
	var key string
	for i := 0; key == ""; i++ {
		if k := "room-" + strconv.Itoa(i); cluster.Rendezvous(k, node.Members("chat")).ID == "chat-2" {
			key = k
		}
	}

	// Nothing changed: nobody is told.
	p.Probe(context.Background())
	if got := seen.list(); len(got) != 0 {
		t.Fatalf("a probe that changed nothing notified %q", got)
	}

	// chat-2 dies: one failed probe is not enough, the second marks it down.
	chat2Port := portOf(chat2)
	chat2.Close()
	p.Probe(context.Background())
	if got, want := memberIDs(node.Members("chat")), []string{"chat-1", "chat-2"}; !slices.Equal(got, want) {
		t.Errorf("after one failed probe, chat members %q, want %q", got, want)
	}
	p.Probe(context.Background())
	if got, want := memberIDs(node.Members("chat")), []string{"chat-1"}; !slices.Equal(got, want) {
		t.Fatalf("after two failed probes, chat members %q, want %q", got, want)
	}
	if got := cluster.Rendezvous(key, node.Members("chat")).ID; got != "chat-1" {
		t.Errorf("%s routes to %q with chat-2 down, want chat-1", key, got)
	}
	if _, ok := node.Member("chat-2"); ok {
		t.Error("the node still knows chat-2")
	}
	if got, want := seen.list(), [][]string{{"chat-1", "connector-1"}}; !slices.EqualFunc(got, want, slices.Equal) {
		t.Errorf("subscriber told %q, want %q", got, want)
	}

	// chat-2 comes back on its port: up at the next probe, and it gets its
	// keys back.
	back, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(chat2Port)))
	if err != nil {
		t.Skipf("port %d was taken meanwhile: %v", chat2Port, err)
	}
	defer back.Close()
	p.Probe(context.Background())
	if got, want := memberIDs(node.Members("chat")), []string{"chat-1", "chat-2"}; !slices.Equal(got, want) {
		t.Fatalf("after chat-2 came back, chat members %q, want %q", got, want)
	}
	if got := cluster.Rendezvous(key, node.Members("chat")).ID; got != "chat-2" {
		t.Errorf("%s routes to %q with chat-2 back, want chat-2", key, got)
	}
	if got := seen.list(); len(got) != 2 {
		t.Errorf("subscriber told %q, want two changes", got)
	}
	// The local server was never reachable, and stayed a member.
	if _, ok := node.Member("connector-1"); !ok {
		t.Error("the local server is not a member")
	}
}

// A server the file lists that is not running when the membership is made
// is not a member; it becomes one when it starts, at the next round of the
// prober Start started.
func TestProbedFindsServerStartedLater(t *testing.T) {
	port := freePort(t)
	servers := []cluster.ServerInfo{
		{ID: "chat-1", Type: "chat", Host: "127.0.0.1", RPCPort: 1},
		{ID: "chat-2", Type: "chat", Host: "127.0.0.1", RPCPort: port},
	}
	p := cluster.NewProbed(servers, []string{"chat-1"}, cluster.ProbeConfig{Interval: 10 * time.Millisecond, Logger: quietLog()})
	p.Start()
	defer p.Close()
	if got, want := memberIDs(p.Servers()), []string{"chat-1"}; !slices.Equal(got, want) {
		t.Fatalf("members %q, want %q", got, want)
	}
	ln, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(port)))
	if err != nil {
		t.Skipf("port %d was taken meanwhile: %v", port, err)
	}
	defer ln.Close()
	joined := make(chan []string, 1)
	defer p.Subscribe(func(l []cluster.ServerInfo) {
		select {
		case joined <- memberIDs(l):
		default:
		}
	})()
	select {
	case got := <-joined:
		if want := []string{"chat-1", "chat-2"}; !slices.Equal(got, want) {
			t.Errorf("members %q, want %q", got, want)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the server started later never became a member")
	}
}

// Update publishes a local server's bound ports; an id the file does not
// list is ignored; an unsubscribed function is not called again.
func TestProbedUpdateAndUnsubscribe(t *testing.T) {
	servers := []cluster.ServerInfo{{ID: "chat-1", Type: "chat", Host: "127.0.0.1", RPCPort: 1}}
	p := cluster.NewProbed(servers, []string{"chat-1"}, manual())
	defer p.Close()
	var seen notifications
	cancel := p.Subscribe(seen.add)
	p.Update(cluster.ServerInfo{ID: "chat-1", Type: "chat", Host: "127.0.0.1", RPCPort: 4242})
	if s := p.Servers()[0]; s.RPCPort != 4242 {
		t.Errorf("after Update, chat-1 is %+v", s)
	}
	p.Update(cluster.ServerInfo{ID: "chat-9", Type: "chat", Host: "127.0.0.1", RPCPort: 4243})
	if got, want := memberIDs(p.Servers()), []string{"chat-1"}; !slices.Equal(got, want) {
		t.Errorf("after Update of an unknown id, members %q, want %q", got, want)
	}
	if got := seen.list(); len(got) != 1 {
		t.Errorf("subscriber told %q, want the one Update", got)
	}
	cancel()
	p.Update(servers[0])
	if got := seen.list(); len(got) != 1 {
		t.Errorf("told %q after unsubscribing", got)
	}
}

// Close stops the prober: its goroutine ends, even in the middle of a
// round; a second Close returns too, as does Close without Start, and Start
// after Close starts nothing.
func TestProbedCloseStopsProber(t *testing.T) {
	baseline := goruntime.NumGoroutine()
	ln := listenLocal(t)
	servers := []cluster.ServerInfo{
		{ID: "chat-1", Type: "chat", Host: "127.0.0.1", RPCPort: 1},
		{ID: "chat-2", Type: "chat", Host: "127.0.0.1", RPCPort: portOf(ln)},
	}
	for range 5 {
		p := cluster.NewProbed(servers, []string{"chat-1"}, cluster.ProbeConfig{Interval: time.Millisecond, Logger: quietLog()})
		p.Start()
		p.Start()
		time.Sleep(5 * time.Millisecond)
		p.Close()
		p.Close()
		p.Start()
	}
	cluster.NewProbed(servers, []string{"chat-1"}, manual()).Close()
	waitFor(t, func() bool { return goruntime.NumGoroutine() <= baseline })
}

func waitFor(t testing.TB, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition not met in 5s")
		}
		time.Sleep(10 * time.Millisecond)
	}
}
