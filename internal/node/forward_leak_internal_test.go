package node

import (
	"bytes"
	"context"
	goruntime "runtime"
	"runtime/pprof"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/emptypb"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/pomelo-go/pomelo/runtime"
	"github.com/pomelo-go/pomelo/runtime/cluster"
	"github.com/pomelo-go/pomelo/runtime/session"
)

// goroutineStacks returns the stack of every goroutine.
func goroutineStacks() []string {
	var b bytes.Buffer
	pprof.Lookup("goroutine").WriteTo(&b, 2)
	return strings.Split(b.String(), "\n\n")
}

// countGoroutines counts the goroutines whose stack mentions any of subs.
func countGoroutines(subs ...string) int {
	n := 0
	for _, g := range goroutineStacks() {
		for _, s := range subs {
			if strings.Contains(g, s) {
				n++
				break
			}
		}
	}
	return n
}

// Goroutines of forward streams, by side.
var (
	frontendStreamFuncs = []string{"node.(*fwdStream)", "writeRequestBody", "connect.(*duplexHTTPCall)"}
	backendStreamFuncs  = []string{"node.(*msgRemote).Forward", "node.(*responseQueue)"}
)

// A regression test: each forward stream that broke under traffic left
// goroutines and HTTP/2 streams behind on both the frontend and the
// backend, for good. Breaking the stream many times while requests are in
// flight must leave no more than one live stream's goroutines on either
// side, and the process's goroutine count back at its baseline.
func TestBrokenForwardStreamsReleaseEverything(t *testing.T) {
	st := cluster.NewStatic()
	front := reviewNode(t, st, "connector-1", "connector", true)
	back := reviewNode(t, st, "chat-1", "chat", false)
	release := make(chan struct{})
	var waiting atomic.Int64
	big := &wrapperspb.BytesValue{Value: make([]byte, 256<<10)}
	handle := func(route string, wait bool) {
		err := back.srv.RegisterHandler(runtime.HandlerDesc{Route: route, ServerType: "chat", Handle: func(ctx context.Context, _ runtime.Session, _ runtime.Serializer, _ []byte) (proto.Message, error) {
			if route == "chat.h.big" {
				return big, nil
			}
			if wait {
				waiting.Add(1)
				defer waiting.Add(-1)
				select {
				case <-release:
				case <-ctx.Done():
				}
			}
			return &emptypb.Empty{}, nil
		}})
		if err != nil {
			t.Fatal(err)
		}
	}
	handle("chat.h.echo", false)
	handle("chat.h.wait", true)
	handle("chat.h.big", false)
	var sid atomic.Uint64
	forward := func(route string) error {
		// A deadline far beyond the test's: only the stream's end can end
		// a waiting handler.
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
		defer cancel()
		// A session each: the backend runs one session's messages one at a
		// time.
		r := &runtime.Request{Route: route, ID: 1, Serializer: runtime.JSON, Body: []byte("{}")}
		_, err := front.fwd.Forward(ctx, "chat", session.Snapshot{ID: sid.Add(1), FrontendID: "connector-1"}, r)
		return err
	}
	if err := forward("chat.h.echo"); err != nil {
		t.Fatal(err)
	}
	settle := func() int {
		// Idle pool goroutines exit after a second; wait for the count to
		// hold for two seconds.
		n, same := -1, 0
		for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline) && same < 8; time.Sleep(250 * time.Millisecond) {
			m := goruntime.NumGoroutine()
			if m == n {
				same++
			} else {
				n, same = m, 0
			}
		}
		return n
	}
	baseline := settle()

	const breaks, inFlight = 30, 16
	for range breaks {
		var wg sync.WaitGroup
		for range inFlight {
			wg.Add(1)
			go func() { defer wg.Done(); forward("chat.h.wait") }()
		}
		var s *fwdStream
		waitUntil(t, func() bool {
			front.fwd.mu.Lock()
			s = front.fwd.streams["chat-1"]
			front.fwd.mu.Unlock()
			if s == nil {
				return false
			}
			s.mu.Lock()
			defer s.mu.Unlock()
			return len(s.pending) == inFlight && waiting.Load() >= inFlight
		})
		// Large responses under way fill the HTTP/2 flow-control windows
		// as the stream breaks.
		for range 8 {
			wg.Add(1)
			go func() { defer wg.Done(); forward("chat.h.big") }()
		}
		s.fail(runtime.Errorf(runtime.ErrUnavailable, "test: stream broken"))
		wg.Wait()
	}
	if err := forward("chat.h.echo"); err != nil {
		t.Fatalf("after the breaks: %v", err)
	}
	// One live forward stream remains: its sender, receiver and sweep on the
	// frontend, and the handler, its reader and sender on the backend, plus
	// the HTTP/2 machinery of that one stream.
	// The backend's handlers still waiting for release end with their
	// stream: nothing else ends them.
	// The backend also keeps one WatchSessions stream to the frontend, which
	// the forwarded sessions opened (autoWatch): its receiver and its
	// request writer match the frontend side's HTTP/2 names.
	waitUntil(t, func() bool {
		return countGoroutines(frontendStreamFuncs...) <= 4+2 && countGoroutines("node.(*watchHub).receive") == 1 &&
			countGoroutines(backendStreamFuncs...) <= 3 && waiting.Load() == 0
	})
	close(release)
	if n := settle(); n > baseline+4 {
		t.Errorf("%d goroutines after %d broken streams, %d before", n, breaks, baseline)
	}
	if t.Failed() {
		t.Log(strings.Join(goroutineStacks(), "\n\n"))
	}
}

// waitUntil polls cond until it holds, failing the test after 10 seconds.
func waitUntil(t *testing.T, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); !cond(); time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("condition not met in 10s")
		}
	}
}
