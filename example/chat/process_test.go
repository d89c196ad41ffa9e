package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/pomelo-go/pomelo"
	"github.com/pomelo-go/pomelo/example/chat/app"
	chatv1 "github.com/pomelo-go/pomelo/example/chat/gen/chat/v1"
	"github.com/pomelo-go/pomelo/runtime/client"
	"github.com/pomelo-go/pomelo/runtime/cluster"
)

// built is the example's binary, built once for the tests that run it and
// removed by TestMain.
var built struct {
	once sync.Once
	dir  string
	bin  string
	err  error
}

// buildExample builds the example's binary, once per test binary.
func buildExample(t *testing.T) string {
	t.Helper()
	built.once.Do(func() {
		built.dir, built.err = os.MkdirTemp("", "pomelo-chat-example-")
		if built.err != nil {
			return
		}
		bin := filepath.Join(built.dir, "chat")
		if out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput(); err != nil {
			built.err = fmt.Errorf("go build: %v\n%s", err, out)
			return
		}
		built.bin = bin
	})
	if built.err != nil {
		t.Fatal(built.err)
	}
	return built.bin
}

// removeBuilt removes the binary buildExample built.
func removeBuilt() {
	if built.dir != "" {
		os.RemoveAll(built.dir)
	}
}

// freePort returns a port that was free a moment ago.
func freePort(t *testing.T) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

// roomOn3 returns a room id, starting with prefix, that rendezvous hashing
// over chat-1..3 places on chat-3.
func roomOn3(prefix string) string {
	servers := []cluster.ServerInfo{{ID: "chat-1"}, {ID: "chat-2"}, {ID: "chat-3"}}
	for i := 0; ; i++ {
		rid := fmt.Sprintf("%s-%d", prefix, i)
		if cluster.Rendezvous(rid, servers).ID == "chat-3" {
			return rid
		}
	}
}

// logLines collects the lines a process writes.
type logLines struct {
	mu    sync.Mutex
	lines []string
	added chan struct{}
}

func (l *logLines) scan(sc *bufio.Scanner) {
	for sc.Scan() {
		l.mu.Lock()
		l.lines = append(l.lines, sc.Text())
		l.mu.Unlock()
		select {
		case l.added <- struct{}{}:
		default:
		}
	}
}

func (l *logLines) find(parts ...string) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, line := range l.lines {
		ok := true
		for _, p := range parts {
			ok = ok && strings.Contains(line, p)
		}
		if ok {
			return true
		}
	}
	return false
}

func (l *logLines) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return strings.Join(l.lines, "\n")
}

// waitLog waits for a line holding every part; the limit only keeps a
// broken test from hanging.
func (l *logLines) wait(t *testing.T, parts ...string) {
	t.Helper()
	deadline := time.After(30 * time.Second)
	for !l.find(parts...) {
		select {
		case <-l.added:
		case <-deadline:
			t.Fatalf("no log line with %q; the process wrote:\n%s", parts, l)
		}
	}
}

// waitUntil polls cond; the limit only keeps a broken test from hanging.
func waitUntil(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func hasMember(a *app.App, id string) bool {
	return slices.ContainsFunc(a.Members(), func(s cluster.ServerInfo) bool { return s.ID == id })
}

// TestSecondProcess starts the example's binary as a second process that
// runs only chat-3, an optional server of the cluster file: the running
// servers find it and place new rooms on it, while rooms that exist stay
// where they are; when it stops (SIGTERM, gracefully), new rooms go to the
// other chat servers again.
func TestSecondProcess(t *testing.T) {
	if runtime.GOOS == "windows" {
		t.Skip("sends SIGTERM")
	}
	if testing.Short() {
		t.Skip("builds the example")
	}
	bin := buildExample(t)

	f := testCluster()
	chat3 := cluster.ServerInfo{ID: "chat-3", Type: app.TypeChat, Host: "127.0.0.1", RPCPort: freePort(t), Metadata: map[string]string{app.MetadataOptional: "true"}}
	f.Servers = append(f.Servers, chat3)
	a := startApp(t, app.Options{Cluster: f, EphemeralPorts: true, ProbeInterval: 50 * time.Millisecond})
	if hasMember(a, "chat-3") {
		t.Fatal("chat-3 is a member before it runs")
	}

	// A room created while chat-3 is down, whose id hashes to chat-3 once it
	// is up.
	oldRoom, newRoom := roomOn3("old"), roomOn3("new")
	ann := enterRoom(t, a, "ann", oldRoom)

	// The second process: the same cluster file, with the ports the first
	// one bound.
	var file cluster.File
	file.Secret = f.Secret
	for _, s := range a.Servers() {
		file.Servers = append(file.Servers, s.Info())
	}
	file.Servers = append(file.Servers, chat3)
	b, err := json.MarshalIndent(&file, "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "cluster.json")
	if err := os.WriteFile(path, b, 0o644); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, "-cluster", path, "-servers", "chat-3", "-probe", "50ms")
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	logs := &logLines{added: make(chan struct{}, 1)}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	scanned := make(chan struct{})
	go func() {
		defer close(scanned)
		logs.scan(bufio.NewScanner(stderr))
	}()
	exited := false
	defer func() {
		if !exited {
			cmd.Process.Kill()
			<-scanned
			cmd.Wait()
		}
	}()

	waitUntil(t, "the first process to see chat-3", func() bool { return hasMember(a, "chat-3") })

	// A new room goes to chat-3, in the other process; its users talk
	// through it.
	bob := enterRoom(t, a, "bob", newRoom)
	carl := enterRoom(t, a, "carl", newRoom)
	if !slices.Equal(carl.users, []string{"bob", "carl"}) {
		t.Fatalf("carl sees users %q in %s, want [bob carl]", carl.users, newRoom)
	}
	logs.wait(t, `msg="room opened"`, "server=chat-3", "rid="+newRoom)
	bob.say(t, "bob", "hello from chat-3", carl)
	carl.say(t, "carl", "loud and clear", bob)

	// The old room stayed where it was created.
	dora := enterRoom(t, a, "dora", oldRoom)
	if !slices.Equal(dora.users, []string{"ann", "dora"}) {
		t.Fatalf("dora sees users %q in %s, want [ann dora]: the room was split", dora.users, oldRoom)
	}
	dora.say(t, "dora", "still here?", ann)
	if logs.find(`msg="room opened"`, "rid="+oldRoom) {
		t.Errorf("%s was opened on chat-3 too:\n%s", oldRoom, logs)
	}

	// SIGTERM stops the second process gracefully.
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	<-scanned
	err = cmd.Wait()
	exited = true
	if err != nil {
		t.Fatalf("the second process exited with %v:\n%s", err, logs)
	}
	t.Logf("the second process wrote:\n%s", logs)
	if !logs.find(`msg=stopped`) {
		t.Errorf("no clean stop in the second process's log:\n%s", logs)
	}
	waitUntil(t, "the first process to see chat-3 go", func() bool { return !hasMember(a, "chat-3") })

	// New rooms go to the remaining chat servers; the room chat-3 held is
	// gone with it, and its users are told so.
	eve := enterRoom(t, a, "eve", roomOn3("later"))
	eve.say(t, "eve", "anyone?")
	_, err = chatv1.NewChatHandlerClient(bob.c).Send(testCtx(t), &chatv1.SendRequest{Content: "hello?", Target: "*"})
	if !errors.Is(err, pomelo.ErrNotFound) {
		t.Errorf("sending in a room whose server is gone: %v, want NOT_FOUND (enter it again)", err)
	}
}

// TestCrashedConnectorsUsersLeaveTheirRooms runs a connector in a second
// process and kills it (SIGKILL, no goodbye): the chat server holding the
// room of its user hears that the session is gone with its connector, and
// the room sees the user leave.
func TestCrashedConnectorsUsersLeaveTheirRooms(t *testing.T) {
	if runtime.GOOS == "windows" {
		t.Skip("kills a process")
	}
	if testing.Short() {
		t.Skip("builds the example")
	}
	bin := buildExample(t)
	f := testCluster()
	conn3 := cluster.ServerInfo{ID: "connector-3", Type: app.TypeConnector, Host: "127.0.0.1", RPCPort: freePort(t),
		Frontend: true, WSPort: freePort(t), Metadata: map[string]string{app.MetadataOptional: "true"}}
	f.Servers = append(f.Servers, conn3)
	a := startApp(t, app.Options{Cluster: f, EphemeralPorts: true, ProbeInterval: 50 * time.Millisecond})

	file := cluster.File{Secret: f.Secret}
	for _, s := range a.Servers() {
		file.Servers = append(file.Servers, s.Info())
	}
	file.Servers = append(file.Servers, conn3)
	b, err := json.MarshalIndent(&file, "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "cluster.json")
	if err := os.WriteFile(path, b, 0o644); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, "-cluster", path, "-servers", "connector-3", "-probe", "50ms", "-web", "off")
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	out := &logLines{added: make(chan struct{}, 1)}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	scanned := make(chan struct{})
	go func() {
		defer close(scanned)
		out.scan(bufio.NewScanner(stdout))
	}()
	defer func() {
		cmd.Process.Kill()
		<-scanned
		cmd.Wait()
	}()
	out.wait(t, "connector-3", "ws://127.0.0.1:"+fmt.Sprint(conn3.WSPort))
	waitUntil(t, "the first process to see connector-3", func() bool { return hasMember(a, "connector-3") })

	ann := enterAt(t, conn3.WSPort, "ann", "crash")
	bob := enterRoom(t, a, "bob", "crash")
	if !slices.Equal(bob.users, []string{"ann", "bob"}) {
		t.Fatalf("bob sees users %q, want [ann bob]", bob.users)
	}
	leaves := make(chan string, 10)
	client.Subscribe(bob.c, chatv1.ChatPushOnLeave, func(m *chatv1.UserEvent) { leaves <- m.GetUser() })
	ann.say(t, "ann", "from connector-3", bob)

	if err := cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	select {
	case u := <-leaves:
		if u != "ann" {
			t.Fatalf("onLeave %q, want ann", u)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("the room never saw ann leave after her connector was killed")
	}
	carl := enterRoom(t, a, "carl", "crash")
	if !slices.Equal(carl.users, []string{"bob", "carl"}) {
		t.Fatalf("carl sees users %q, want [bob carl]", carl.users)
	}
}
