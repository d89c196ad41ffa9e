package main

import (
	"bufio"
	"context"
	"encoding/json"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
	"google.golang.org/protobuf/proto"

	"github.com/pomelo-go/pomelo/example/chat/app"
	chatv1 "github.com/pomelo-go/pomelo/example/chat/gen/chat/v1"
	"github.com/pomelo-go/pomelo/internal/testservers"
	"github.com/pomelo-go/pomelo/runtime/client"
	"github.com/pomelo-go/pomelo/runtime/cluster"
)

// enterAt connects straight to the connector at port and enters room rid
// as name.
func enterAt(t *testing.T, port int, name, rid string) *chatter {
	t.Helper()
	u := &chatter{
		c:     dial(t, "ws://"+net.JoinHostPort("127.0.0.1", strconv.Itoa(port))+"/"),
		chats: make(chan *chatv1.ChatMessage, 100),
	}
	client.Subscribe(u.c, chatv1.ChatPushOnChat, func(m *chatv1.ChatMessage) { u.chats <- m })
	res, err := chatv1.NewEntryHandlerClient(u.c).Enter(testCtx(t), &chatv1.EnterRequest{Username: name, Rid: rid})
	if err != nil {
		t.Fatalf("%s enters %s on port %d: %v", name, rid, port, err)
	}
	u.users = res.GetUsers()
	return u
}

// wantChat checks the next onChat of u; the limit only keeps a broken test
// from hanging.
func (u *chatter) wantChat(t *testing.T, want *chatv1.ChatMessage) {
	t.Helper()
	select {
	case got := <-u.chats:
		if !proto.Equal(got, want) {
			t.Fatalf("got onChat %v, want %v", got, want)
		}
	case <-time.After(15 * time.Second):
		t.Fatalf("no onChat %v", want)
	}
}

// TestEtcdRedisFlags runs the example's binary with -etcd and -redis, as a
// whole cluster in one process: its servers register in etcd, a user who
// enters again on the other connector keeps one session (the first is
// kicked with the reason relogin) and is reached there, and SIGTERM stops
// it cleanly, leaving nothing in etcd and Redis.
func TestEtcdRedisFlags(t *testing.T) {
	if runtime.GOOS == "windows" {
		t.Skip("sends SIGTERM")
	}
	if testing.Short() {
		t.Skip("builds the example")
	}
	etcd := testservers.SharedEtcd(t)
	rds := testservers.SharedRedis(t)
	prefix := testservers.Prefix(t)
	etcdPrefix := "/" + prefix
	bin := buildExample(t)

	// A cluster file with free ports.
	file := cluster.File{Secret: "flags-secret"}
	for _, s := range []struct{ id, typ string }{
		{"gate-1", app.TypeGate}, {"connector-1", app.TypeConnector}, {"connector-2", app.TypeConnector},
		{"chat-1", app.TypeChat}, {"chat-2", app.TypeChat},
	} {
		info := cluster.ServerInfo{ID: s.id, Type: s.typ, Host: "127.0.0.1", RPCPort: freePort(t)}
		if s.typ != app.TypeChat {
			info.Frontend, info.WSPort = true, freePort(t)
		}
		file.Servers = append(file.Servers, info)
	}
	port := func(id string) int {
		s, _ := file.Server(id)
		return s.WSPort
	}
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
	cmd := exec.CommandContext(ctx, bin, "-cluster", path, "-web", "off",
		"-etcd", etcd.Endpoint, "-etcd-prefix", etcdPrefix, "-redis", rds.Addr, "-redis-prefix", prefix)
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	out := &logLines{added: make(chan struct{}, 1)}
	logs := &logLines{added: make(chan struct{}, 1)}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	scanned := make(chan struct{}, 2)
	go func() { out.scan(bufio.NewScanner(stdout)); scanned <- struct{}{} }()
	go func() { logs.scan(bufio.NewScanner(stderr)); scanned <- struct{}{} }()
	exited := false
	defer func() {
		if !exited {
			cmd.Process.Kill()
			<-scanned
			<-scanned
			cmd.Wait()
		}
	}()
	out.wait(t, "online status in Redis "+rds.Addr)
	if !out.find("membership in etcd " + etcd.Endpoint) {
		t.Errorf("the process does not say it uses etcd:\n%s", out)
	}

	cli, err := clientv3.New(clientv3.Config{Endpoints: []string{etcd.Endpoint}, DialTimeout: 5 * time.Second, Logger: zap.NewNop()})
	if err != nil {
		t.Fatal(err)
	}
	defer cli.Close()
	registered := func() []string {
		t.Helper()
		res, err := cli.Get(testCtx(t), etcdPrefix, clientv3.WithPrefix(), clientv3.WithKeysOnly())
		if err != nil {
			t.Fatal(err)
		}
		var ids []string
		for _, kv := range res.Kvs {
			ids = append(ids, strings.TrimPrefix(string(kv.Key), etcdPrefix))
		}
		slices.Sort(ids)
		return ids
	}
	if got, want := registered(), []string{"chat-1", "chat-2", "connector-1", "connector-2", "gate-1"}; !slices.Equal(got, want) {
		t.Fatalf("registered in etcd: %q, want %q", got, want)
	}

	// The gate hands out the connectors it found in etcd.
	g := dial(t, "ws://"+net.JoinHostPort("127.0.0.1", strconv.Itoa(port("gate-1")))+"/")
	entry, err := chatv1.NewGateHandlerClient(g).QueryEntry(testCtx(t), &chatv1.QueryEntryRequest{Uid: "ann"})
	g.Close()
	if err != nil || (int(entry.GetPort()) != port("connector-1") && int(entry.GetPort()) != port("connector-2")) {
		t.Fatalf("queryEntry = %v, %v; want a connector", entry, err)
	}

	// ann enters on connector-1, then again on connector-2.
	ann1 := enterAt(t, port("connector-1"), "ann", "lobby")
	bob := enterAt(t, port("connector-1"), "bob", "lobby")
	ann2 := enterAt(t, port("connector-2"), "ann", "lobby")
	if !slices.Equal(ann2.users, []string{"ann", "bob"}) {
		t.Errorf("users after the relogin: %q, want [ann bob]", ann2.users)
	}
	select {
	case <-ann1.c.Done():
	case <-ctx.Done():
		t.Fatal("ann's first session is still open")
	}
	if reason, ok := ann1.c.KickReason(); !ok || reason != "relogin" {
		t.Fatalf("ann's first session ended with %v, want a kick with reason relogin", ann1.c.Err())
	}
	// bob, on connector-1, reaches ann on connector-2.
	if _, err := chatv1.NewChatHandlerClient(bob.c).Send(testCtx(t), &chatv1.SendRequest{Content: "psst", Target: "ann"}); err != nil {
		t.Fatal(err)
	}
	want := &chatv1.ChatMessage{Msg: "psst", From: "bob", Target: "ann"}
	ann2.wantChat(t, want)
	bob.wantChat(t, want)

	// SIGTERM: every server leaves etcd, and the online status is gone.
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	<-scanned
	<-scanned
	err = cmd.Wait()
	exited = true
	if err != nil {
		t.Fatalf("the process exited with %v:\n%s", err, logs)
	}
	if !logs.find(`msg=stopped`) {
		t.Errorf("no clean stop in the log:\n%s", logs)
	}
	if got := registered(); len(got) != 0 {
		t.Errorf("still registered in etcd after the process stopped: %q", got)
	}
	rdb := redis.NewClient(&redis.Options{Addr: rds.Addr})
	defer rdb.Close()
	var keys []string
	iter := rdb.Scan(testCtx(t), 0, prefix+"*", 100).Iterator()
	for iter.Next(testCtx(t)) {
		keys = append(keys, iter.Val())
	}
	if err := iter.Err(); err != nil {
		t.Fatal(err)
	}
	if len(keys) != 0 {
		t.Errorf("Redis keys left after the process stopped: %q", keys)
	}
}
