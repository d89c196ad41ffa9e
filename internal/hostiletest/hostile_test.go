package hostiletest

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net"
	goruntime "runtime"
	"runtime/debug"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/protobuf/types/known/structpb"

	"github.com/pomelo-go/pomelo/internal/clustertest"
	"github.com/pomelo-go/pomelo/runtime"
	"github.com/pomelo-go/pomelo/runtime/client"
	"github.com/pomelo-go/pomelo/runtime/testkit"
	"github.com/pomelo-go/pomelo/runtime/wire"
)

const echoRoute = "chat.room.echo"

// startCluster starts a frontend and a backend; echo runs on the backend,
// so every request crosses the shared forward stream.
func startCluster(t *testing.T) *clustertest.Cluster {
	t.Helper()
	return clustertest.Start(t, clustertest.Options{
		Servers: []clustertest.Spec{{Type: "connector", Frontend: true}, {Type: "chat"}},
		Setup: func(m *clustertest.Member) error {
			if m.Info.Type == "chat" {
				testkit.HandleStruct(t, m.Server, echoRoute, func(_ context.Context, _ runtime.Session, in *structpb.Struct) (*structpb.Struct, error) {
					return in, nil
				})
			}
			return nil
		},
	})
}

// settle runs the collector until the heap stops shrinking and returns the
// live heap and the goroutine count.
func settle() (heap uint64, goroutines int) {
	var ms goruntime.MemStats
	for range 3 {
		goruntime.GC()
		debug.FreeOSMemory()
	}
	goruntime.ReadMemStats(&ms)
	return ms.HeapAlloc, goruntime.NumGoroutine()
}

// echoBody is the body every well-behaved client sends.
func echoBody(i int) []byte { return fmt.Appendf(nil, `{"n":%d,"pad":"%0100d"}`, i, i) }

// wellBehaved runs sequential echo round trips until stop closes (at most
// max) and counts every failure: an error, an error response, or a body
// that is not the one sent.
func wellBehaved(ctx context.Context, t *testing.T, url string, stop <-chan struct{}, max int, sent, failed *atomic.Int64) {
	cl, err := client.Dial(ctx, url)
	if err != nil {
		t.Errorf("well-behaved dial %s: %v", url, err)
		failed.Add(1)
		return
	}
	defer cl.Close()
	for i := 0; i < max; i++ {
		select {
		case <-stop:
			return
		default:
		}
		want := echoBody(i)
		rctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		got, isErr, err := cl.RequestRaw(rctx, echoRoute, want)
		cancel()
		sent.Add(1)
		if err != nil || isErr || !bytes.Contains(got, []byte(fmt.Sprintf(`"n":%d`, i))) {
			if failed.Add(1) <= 5 {
				t.Errorf("well-behaved client %s request %d: err=%v isErr=%v body=%q", url, i, err, isErr, got)
			}
		}
	}
}

// errName decodes the stable error name of an error response.
func errName(body []byte) string {
	var e struct {
		Error string `json:"error"`
	}
	if err := json.Unmarshal(body, &e); err != nil {
		return ""
	}
	return e.Error
}

// badRoutes sends requests and notifies whose routes are invalid UTF-8 or
// malformed; every request must be answered BAD_REQUEST or UNKNOWN_ROUTE and
// the connection must stay usable.
func badRoutes(ctx context.Context, t *testing.T, url string, rounds int) {
	cl, err := client.Dial(ctx, url)
	if err != nil {
		t.Errorf("hostile dial: %v", err)
		return
	}
	defer cl.Close()
	routes := []string{"chat.\xff\xfe.echo", "chat.room.\xc0\x80", "chat..echo", "nodots", "chat.room.echo\x00", ".", "chat.room.nope"}
	for i := 0; i < rounds; i++ {
		r := routes[i%len(routes)]
		if err := cl.NotifyRaw(ctx, r, []byte(`{}`)); err != nil {
			t.Errorf("hostile notify %q: %v", r, err)
			return
		}
		rctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		body, isErr, err := cl.RequestRaw(rctx, r, []byte(`{}`))
		cancel()
		if err != nil {
			t.Errorf("hostile request %q: connection failed instead of an error response: %v", r, err)
			return
		}
		name := errName(body)
		if !isErr || (name != runtime.ErrBadRequest.Name && name != runtime.ErrUnknownRoute.Name) {
			t.Errorf("hostile request %q: got isErr=%v %q, want BAD_REQUEST or UNKNOWN_ROUTE", r, isErr, body)
		}
		time.Sleep(2 * time.Millisecond)
	}
	// Bodies of the wrong type for the route are this request's problem only.
	for _, b := range []string{`[1,2]`, `"x"`, `{"a":`, "\xff\xfe"} {
		body, isErr, err := cl.RequestRaw(ctx, echoRoute, []byte(b))
		if err != nil || !isErr || errName(body) != runtime.ErrBadRequest.Name {
			t.Errorf("hostile body %q: err=%v isErr=%v %q, want BAD_REQUEST", b, err, isErr, body)
		}
	}
}

// burst sends n requests back to back from one client: every one must be
// answered, without error.
func burst(ctx context.Context, t *testing.T, url string, n int) {
	cl, err := client.Dial(ctx, url)
	if err != nil {
		t.Errorf("burst dial: %v", err)
		return
	}
	defer cl.Close()
	var wg sync.WaitGroup
	var bad atomic.Int64
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rctx, cancel := context.WithTimeout(ctx, 30*time.Second)
			defer cancel()
			body, isErr, err := cl.RequestRaw(rctx, echoRoute, echoBody(i))
			if err != nil || isErr {
				if bad.Add(1) <= 3 {
					t.Errorf("burst request %d: err=%v isErr=%v %q", i, err, isErr, body)
				}
			}
		}()
	}
	wg.Wait()
	if b := bad.Load(); b > 0 {
		t.Errorf("burst of %d requests from one client: %d not answered successfully", n, b)
	}
}

// rawHandshake connects over TCP and completes the handshake by hand.
func rawHandshake(t *testing.T, addr net.Addr) net.Conn {
	nc, err := net.Dial("tcp", addr.String())
	if err != nil {
		t.Errorf("raw dial: %v", err)
		return nil
	}
	hs, _ := wire.AppendPackage(nil, wire.TypeHandshake, []byte(`{"sys":{"type":"hostile","version":"0.0.1","rsa":{},"protoVersion":0},"user":{}}`))
	if _, err := nc.Write(hs); err != nil {
		t.Errorf("raw handshake: %v", err)
	}
	rd := wire.NewReader(nc, 0)
	nc.SetReadDeadline(time.Now().Add(10 * time.Second))
	if _, _, err := rd.Next(); err != nil {
		t.Errorf("raw handshake reply: %v", err)
	}
	nc.SetReadDeadline(time.Time{})
	nc.Write(wire.HandshakeAckPackage)
	return nc
}

// oversized claims a package larger than any limit: the server must close
// the connection.
func oversized(t *testing.T, addr net.Addr) {
	nc := rawHandshake(t, addr)
	if nc == nil {
		return
	}
	defer nc.Close()
	nc.Write([]byte{byte(wire.TypeData), 0xff, 0xff, 0xff, 0, 1})
	nc.SetReadDeadline(time.Now().Add(10 * time.Second))
	buf := make([]byte, 4096)
	for {
		if _, err := nc.Read(buf); err != nil {
			if ne, ok := err.(net.Error); ok && ne.Timeout() {
				t.Errorf("oversized package: connection still open after 10 s")
			}
			return
		}
	}
}

// neverReads sends many requests and never reads a response: the server
// must not let it slow anyone else, and must not hold more than a bounded
// amount for it.
func neverReads(t *testing.T, addr net.Addr, n int, stop <-chan struct{}) {
	nc := rawHandshake(t, addr)
	if nc == nil {
		return
	}
	defer nc.Close()
	pad := bytes.Repeat([]byte("x"), 2000)
	for i := range n {
		m := wire.Message{Type: wire.Request, ID: uint64(i + 1), Route: echoRoute, Body: fmt.Appendf(nil, `{"pad":%q}`, pad)}
		pkg, _ := wire.AppendMessagePackage(nil, &m)
		nc.SetWriteDeadline(time.Now().Add(200 * time.Millisecond))
		if _, err := nc.Write(pkg); err != nil {
			break // the server stopped reading us (back-pressure) or closed us
		}
	}
	<-stop
}

// resumeChurn makes n connections that ask for a resumable session, ack
// and drop at once, each leaving a suspended session behind (within the
// frontend's cap); the odd ones first present a token that was never
// issued with an absurd count, which must be refused (resumed:false: the
// connection gets a new session).
func resumeChurn(t *testing.T, addr net.Addr, n int) {
	for i := range n {
		nc, err := net.Dial("tcp", addr.String())
		if err != nil {
			t.Errorf("resume churn dial: %v", err)
			return
		}
		resume := `{}`
		if i%2 == 1 {
			resume = fmt.Sprintf(`{"token":"%022x","received":%d}`, i, uint64(1)<<62)
		}
		hs, _ := wire.AppendPackage(nil, wire.TypeHandshake, []byte(`{"sys":{"type":"hostile","version":"0.0.1","resume":`+resume+`},"user":{}}`))
		nc.Write(hs)
		rd := wire.NewReader(nc, 0)
		nc.SetReadDeadline(time.Now().Add(10 * time.Second))
		_, body, err := rd.Next()
		if err != nil {
			t.Errorf("resume churn handshake reply: %v", err)
			nc.Close()
			return
		}
		var reply struct {
			Sys struct {
				Resume *struct{ Resumed bool } `json:"resume"`
			} `json:"sys"`
		}
		if err := json.Unmarshal(body, &reply); err != nil || reply.Sys.Resume == nil {
			t.Errorf("resume churn: handshake reply %q has no resume object", body)
		} else if reply.Sys.Resume.Resumed {
			t.Errorf("resume churn: a token never issued resumed a session")
		}
		nc.Write(wire.HandshakeAckPackage)
		nc.Close()
	}
}

// TestHostileClientsDoNotHurtWellBehavedOnes runs well-behaved clients (TCP
// and WebSocket) doing echo round trips through a forwarding frontend while
// hostile clients send invalid routes, wrong bodies, a 1000-request burst, an
// oversized package, a flood they never read, and resumable sessions
// dropped at once or resumes with tokens never issued. The well-behaved clients
// see zero errors, every hostile request gets its own error, and afterwards
// goroutines and the heap return to their baseline.
func TestHostileClientsDoNotHurtWellBehavedOnes(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	c := startCluster(t)
	fe := c.Members("connector")[0]

	// Warm up: one round trip on each transport, so lazily made streams
	// and pools are part of the baseline.
	for _, u := range []string{fe.TCPURL(), fe.WSURL()} {
		var sent, failed atomic.Int64
		wellBehaved(ctx, t, u, nil, 3, &sent, &failed)
	}
	time.Sleep(100 * time.Millisecond)
	baseHeap, baseG := settle()

	stop := make(chan struct{})
	var sent, failed atomic.Int64
	var good sync.WaitGroup
	for i := range 8 {
		u := fe.TCPURL()
		if i%2 == 1 {
			u = fe.WSURL()
		}
		good.Add(1)
		go func() { defer good.Done(); wellBehaved(ctx, t, u, stop, 400, &sent, &failed) }()
	}
	var hostile sync.WaitGroup
	run := func(fn func()) { hostile.Add(1); go func() { defer hostile.Done(); fn() }() }
	stopReaders := make(chan struct{})
	run(func() { badRoutes(ctx, t, fe.TCPURL(), 140) })
	run(func() { badRoutes(ctx, t, fe.WSURL(), 140) })
	run(func() { burst(ctx, t, fe.TCPURL(), 1000) })
	run(func() { burst(ctx, t, fe.WSURL(), 1000) })
	run(func() { oversized(t, fe.Server.TCPAddr()) })
	run(func() { resumeChurn(t, fe.Server.TCPAddr(), 300) })
	for range 3 {
		run(func() { neverReads(t, fe.Server.TCPAddr(), 2000, stopReaders) })
	}
	// Let the never-reading clients sit while the others finish.
	go func() { time.Sleep(3 * time.Second); close(stopReaders) }()
	hostile.Wait()
	close(stop)
	good.Wait()
	if sent.Load() == 0 {
		t.Fatal("the well-behaved clients sent nothing")
	}
	if f := failed.Load(); f > 0 {
		t.Fatalf("%d of %d well-behaved requests failed beside hostile clients", f, sent.Load())
	}
	t.Logf("well-behaved requests: %d, all answered", sent.Load())
	if n := fe.Server.Sessions().SuspendedCount(); n == 0 {
		t.Error("the resume churn left no suspended session: it tested nothing")
	} else {
		t.Logf("suspended sessions left by the resume churn: %d", n)
	}

	// Back to baseline: every connection above is closed, so what it
	// held must go.
	deadline := time.Now().Add(20 * time.Second)
	for {
		heap, g := settle()
		// A few goroutines of slack for pools that keep a worker a second,
		// and a few MiB for buffers sized by the load.
		if g <= baseG+4 && heap <= baseHeap+8<<20 {
			t.Logf("goroutines %d -> %d, heap %d KiB -> %d KiB", baseG, g, baseHeap>>10, heap>>10)
			break
		}
		if time.Now().After(deadline) {
			buf := make([]byte, 1<<20)
			n := goruntime.Stack(buf, true)
			t.Fatalf("not back to baseline: goroutines %d (baseline %d), heap %d KiB (baseline %d KiB)\n%s", g, baseG, heap>>10, baseHeap>>10, buf[:n])
		}
		time.Sleep(200 * time.Millisecond)
	}
	// The cluster still serves.
	var s2, f2 atomic.Int64
	wellBehaved(ctx, t, fe.TCPURL(), nil, 5, &s2, &f2)
	if f2.Load() > 0 {
		t.Fatal("the frontend stopped serving after the hostile clients")
	}
}
