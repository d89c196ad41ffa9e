package node

import (
	"context"
	"errors"
	"fmt"
	"net"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/protobuf/types/known/wrapperspb"

	sysv1 "github.com/pomelo-go/pomelo/gen/pomelo/sys/v1"
	"github.com/pomelo-go/pomelo/internal/server"
	"github.com/pomelo-go/pomelo/runtime"
	"github.com/pomelo-go/pomelo/runtime/client"
	"github.com/pomelo-go/pomelo/runtime/cluster"
	"github.com/pomelo-go/pomelo/runtime/session"
)

// pushFrontend starts a frontend with a TCP client listener whose RPC
// listener is on rpcPort (0 for any), in st.
func pushFrontend(t *testing.T, st *cluster.Static, id string, rpcPort int) *Node {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:"+strconv.Itoa(rpcPort))
	if err != nil {
		t.Fatal(err)
	}
	srv, err := server.New(server.Config{ID: id, Type: "connector", Frontend: true, TCPAddr: "127.0.0.1:0"})
	if err != nil {
		t.Fatal(err)
	}
	info := cluster.ServerInfo{ID: id, Type: "connector", Host: "127.0.0.1", RPCPort: ln.Addr().(*net.TCPAddr).Port, Frontend: true}
	n, err := Join(srv, Config{Self: info, Membership: st, Secret: "s", Listener: ln})
	if err != nil {
		t.Fatal(err)
	}
	if err := srv.Start(); err != nil {
		t.Fatal(err)
	}
	if err := n.Start(); err != nil {
		t.Fatal(err)
	}
	st.Add(info)
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		n.Close(ctx)
	})
	return n
}

// pushClient connects a client to front, binds its session to uid and
// returns the texts of the "onText" pushes it receives, in order.
func pushClient(t *testing.T, front *Node, uid string) <-chan string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	cl, err := client.Dial(ctx, "tcp://"+front.srv.TCPAddr().String())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cl.Close() })
	got := make(chan string, 4096)
	cl.OnPush("onText", func(body []byte) {
		m := &wrapperspb.StringValue{}
		if err := runtime.JSON.Unmarshal(body, m); err != nil {
			t.Errorf("push body %q: %v", body, err)
		}
		got <- m.Value
	})
	waitUntil(t, func() bool {
		bound := false
		front.srv.Sessions().Range(func(s *session.Session) bool {
			if s.UID() == "" {
				bound = front.srv.Sessions().Bind(s.ID(), uid) == nil
			}
			return !bound
		})
		return bound || len(front.srv.Sessions().GetByUID(uid)) > 0
	})
	return got
}

func textPush(text string) *wrapperspb.StringValue { return wrapperspb.String(text) }

func TestPushStreamDeliversInOrderPerServerAndFrontend(t *testing.T) {
	st := cluster.NewStatic()
	front := pushFrontend(t, st, "connector-1", 0)
	back := reviewNode(t, st, "chat-1", "chat", false)
	got := pushClient(t, front, "u1")

	// Queue every push before waiting for any, so that they share stream
	// messages; each must arrive once, in the order queued.
	const n = 2000
	s, err := back.pushes.get("connector-1")
	if err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(time.Minute).UnixNano()
	type queued struct {
		seq uint64
		ch  chan *sysv1.PushAck
	}
	qs := make([]queued, n)
	for i := range n {
		p, err := newPayload(textPush(strconv.Itoa(i)))
		if err != nil {
			t.Fatal(err)
		}
		sp := &sysv1.StreamedPush{Route: "onText", Payload: p, Uids: packUIDs([]string{"u1"})}
		ch, err := s.enqueue(sp, deadline)
		if err != nil {
			t.Fatal(err)
		}
		qs[i] = queued{sp.Seq, ch}
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	for i, q := range qs {
		ack, err := s.wait(ctx, q.seq, q.ch)
		if err != nil || len(ack.FailedUids) != 0 {
			t.Fatalf("push %d: ack %v, %v", i, ack, err)
		}
	}
	for i := range n {
		if v := <-got; v != strconv.Itoa(i) {
			t.Fatalf("push %d arrived as %q", i, v)
		}
	}
	select {
	case v := <-got:
		t.Fatalf("an extra push %q", v)
	default:
	}
}

func TestPushStreamReportsUIDsWithNoSessionOnTheFrontend(t *testing.T) {
	st := cluster.NewStatic()
	front := pushFrontend(t, st, "connector-1", 0)
	back := reviewNode(t, st, "chat-1", "chat", false)
	got := pushClient(t, front, "u1")
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	failed, err := back.PushToFrontend(ctx, "connector-1", "onText", textPush("hi"), []string{"u1", "nobody"})
	if err != nil || len(failed) != 1 || failed[0] != "nobody" {
		t.Fatalf("failed %v, %v; want [nobody]", failed, err)
	}
	if v := <-got; v != "hi" {
		t.Fatalf("got %q", v)
	}
	failed, err = back.PushToFrontend(ctx, "connector-9", "onText", textPush("hi"), []string{"u1"})
	if !errors.Is(err, runtime.ErrUnavailable) || len(failed) != 1 {
		t.Fatalf("push to an unknown frontend: failed %v, %v", failed, err)
	}
}

func TestPushStreamReconnectsToARestartedFrontend(t *testing.T) {
	st := cluster.NewStatic()
	front := pushFrontend(t, st, "connector-1", 0)
	back := reviewNode(t, st, "chat-1", "chat", false)
	got := pushClient(t, front, "u1")
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := back.PushToFrontend(ctx, "connector-1", "onText", textPush("before"), []string{"u1"}); err != nil {
		t.Fatal(err)
	}
	if v := <-got; v != "before" {
		t.Fatalf("got %q", v)
	}
	back.pushes.mu.Lock()
	old := back.pushes.streams["connector-1"]
	back.pushes.mu.Unlock()

	// The frontend crashes and comes back at the same address: the
	// membership never changed, so only the broken stream tells.
	port := front.cfg.Self.RPCPort
	front.Kill()
	front = pushFrontend(t, st, "connector-1", port)
	got = pushClient(t, front, "u1")
	var err error
	for range 200 {
		var failed []string
		failed, err = back.PushToFrontend(ctx, "connector-1", "onText", textPush("after"), []string{"u1"})
		if err == nil && len(failed) == 0 {
			break
		}
		if err != nil && !errors.Is(err, runtime.ErrUnavailable) {
			t.Fatalf("push to the restarting frontend: %v", err)
		}
		time.Sleep(10 * time.Millisecond)
	}
	if err != nil {
		t.Fatalf("no push reached the restarted frontend: %v", err)
	}
	if v := <-got; v != "after" {
		t.Fatalf("got %q", v)
	}
	back.pushes.mu.Lock()
	cur := back.pushes.streams["connector-1"]
	back.pushes.mu.Unlock()
	if cur == old || !old.isDead() {
		t.Fatal("the push went out on the broken stream")
	}
}

func TestPushesToAGoneFrontendFailUnavailableAndLeaveNothing(t *testing.T) {
	st := cluster.NewStatic()
	front := pushFrontend(t, st, "connector-1", 0)
	back := reviewNode(t, st, "chat-1", "chat", false)
	pushClient(t, front, "u1")
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if _, err := back.PushToFrontend(ctx, "connector-1", "onText", textPush("x"), []string{"u1"}); err != nil {
		t.Fatal(err)
	}
	front.Kill() // still a member: unreachable, not gone from the view
	for round := range 5 {
		var wg sync.WaitGroup
		errs := make([]error, 32)
		for i := range errs {
			wg.Add(1)
			go func() {
				defer wg.Done()
				var failed []string
				failed, errs[i] = back.PushToFrontend(ctx, "connector-1", "onText", textPush("x"), []string{"u1"})
				if errs[i] != nil && len(failed) != 1 {
					errs[i] = fmt.Errorf("failed uids %v with %w", failed, errs[i])
				}
			}()
		}
		wg.Wait()
		for i, err := range errs {
			// A refused connection fails every push waiting on the stream,
			// long before the minute of ctx.
			if !errors.Is(err, runtime.ErrUnavailable) {
				t.Fatalf("round %d push %d: %v, want UNAVAILABLE", round, i, err)
			}
		}
	}
	st.Remove("connector-1")
	waitUntil(t, func() bool {
		back.pushes.mu.Lock()
		defer back.pushes.mu.Unlock()
		return len(back.pushes.streams) == 0
	})
	waitUntil(t, func() bool { return countGoroutines("node.(*pushStream)") == 0 })
	_, err := back.PushToFrontend(ctx, "connector-1", "onText", textPush("x"), []string{"u1"})
	if !errors.Is(err, runtime.ErrUnavailable) {
		t.Fatalf("push to a frontend that left: %v", err)
	}
}

func TestPackedUIDsDecodeToTheSameUIDsAndRejectTruncation(t *testing.T) {
	for _, uids := range [][]string{nil, {"a"}, {"", "bb", strings.Repeat("x", 300), "ü"}} {
		got, err := unpackUIDs(packUIDs(uids))
		if err != nil || !slices.Equal(got, uids) {
			t.Fatalf("%q came back as %q, %v", uids, got, err)
		}
	}
	b := packUIDs([]string{"abc", "defgh"})
	for i := 1; i < len(b); i++ {
		if _, err := unpackUIDs(b[:i]); i != 4 && !errors.Is(err, runtime.ErrBadRequest) {
			t.Fatalf("truncated at %d: %v", i, err)
		}
	}
}

func TestPushStreamRefusesPushesBeyondItsQueueBound(t *testing.T) {
	st := cluster.NewStatic()
	pushFrontend(t, st, "connector-1", 0)
	back := reviewNode(t, st, "chat-1", "chat", false)
	s, err := back.pushes.get("connector-1")
	if err != nil {
		t.Fatal(err)
	}
	// A sender that never writes: the stream's writes do not keep up.
	s.mu.Lock()
	s.started = true
	s.mu.Unlock()
	p, err := newPayload(textPush("x"))
	if err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(time.Minute).UnixNano()
	var chans []chan *sysv1.PushAck
	for i := range maxQueuedPushes + 1 {
		ch, err := s.enqueue(&sysv1.StreamedPush{Route: "onText", Payload: p}, deadline)
		if i < maxQueuedPushes {
			if err != nil {
				t.Fatalf("push %d refused: %v", i, err)
			}
			chans = append(chans, ch)
			continue
		}
		if !errors.Is(err, runtime.ErrUnavailable) {
			t.Fatalf("push %d beyond the bound: %v, want UNAVAILABLE", i, err)
		}
	}
	s.fail(runtime.Errorf(runtime.ErrUnavailable, "test: stream broken"))
	for i, ch := range chans {
		if _, ok := <-ch; ok {
			t.Fatalf("queued push %d was answered by a stream that never wrote", i)
		}
	}
}
