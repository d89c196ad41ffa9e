package server_test

// Back-pressure (a burst is served, not refused) and exactly one response
// per accepted request across a kick or a shutdown.

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/coder/websocket"

	testingv1 "github.com/pomelo-go/pomelo/gen/pomelo/testing/v1"
	"github.com/pomelo-go/pomelo/internal/server"
	"github.com/pomelo-go/pomelo/runtime"
	"github.com/pomelo-go/pomelo/runtime/client"
	"github.com/pomelo-go/pomelo/runtime/session"
	"github.com/pomelo-go/pomelo/runtime/wire"
)

const burst = 1000

// pipelineEchoes returns burst echo requests, ids 1..burst, as one block of
// packages.
func pipelineEchoes(t *testing.T) []byte {
	t.Helper()
	var pkgs []byte
	for id := uint64(1); id <= burst; id++ {
		var err error
		pkgs, err = wire.AppendMessagePackage(pkgs, &wire.Message{Type: wire.Request, ID: id,
			Route: testingv1.EchoHandlerEchoRoute, Body: fmt.Appendf(nil, `{"text":"%d"}`, id)})
		if err != nil {
			t.Fatal(err)
		}
	}
	return pkgs
}

// rawResponse is one response the raw client saw: its id, and the error
// name when it is an error.
type rawResponse struct {
	id   uint64
	err  string
	body string
}

// readUntilKick reads responses until a KICK (kicked true) or the end of the
// connection; it fails on anything after the KICK but the close.
func readUntilKick(t *testing.T, c *benchRawConn, stopAt int) (got []rawResponse, kicked bool) {
	t.Helper()
	for stopAt <= 0 || len(got) < stopAt {
		typ, body, err := c.next()
		if err != nil {
			return got, false
		}
		switch typ {
		case wire.TypeKick:
			if typ, body, err := c.next(); err == nil {
				t.Fatalf("package %v %q after the KICK", typ, body)
			}
			return got, true
		case wire.TypeData:
			m, err := wire.DecodeMessage(body)
			if err != nil || m.Type != wire.Response {
				t.Fatalf("unexpected data package %q: %v", body, err)
			}
			r := rawResponse{id: m.ID, body: string(m.Body)}
			if m.Error {
				var e errBody
				if err := json.Unmarshal(m.Body, &e); err != nil {
					t.Fatalf("error body %q: %v", m.Body, err)
				}
				r.err = e.Error
			}
			got = append(got, r)
		}
	}
	return got, false
}

// dialBurst connects a raw client over WebSocket (ws) or TCP.
func dialBurst(t *testing.T, s *server.Server, ws bool) *benchRawConn {
	t.Helper()
	addr := s.TCPAddr()
	if ws {
		addr = s.WSAddr()
	}
	c, err := benchDialRawErr(addr, ws, "json")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.nc.Close() })
	c.nc.SetDeadline(time.Now().Add(30 * time.Second)) // safety only
	return c
}

// dialTCP connects a Go client to s over TCP, closed at the end of the test.
func dialTCP(ctx context.Context, t *testing.T, s *server.Server) *client.Client {
	t.Helper()
	c, err := client.Dial(ctx, "tcp://"+s.TCPAddr().String())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func TestBurstOfPipelinedRequestsIsAnsweredInOrder(t *testing.T) {
	for _, ws := range []bool{false, true} {
		t.Run(fmt.Sprintf("ws=%v", ws), func(t *testing.T) {
			s, _ := startEcho(t, nil)
			c := dialBurst(t, s, ws)
			// Write from another goroutine: the server may stop reading
			// until we read its responses.
			werr := make(chan error, 1)
			go func() {
				_, err := c.nc.Write(c.frameOf(pipelineEchoes(t)))
				werr <- err
			}()
			got, _ := readUntilKick(t, c, burst)
			if len(got) != burst {
				t.Fatalf("%d of %d requests answered", len(got), burst)
			}
			for i, r := range got {
				var e testingv1.EchoResponse
				want := uint64(i + 1)
				if r.id != want || r.err != "" || json.Unmarshal([]byte(r.body), &e) != nil || e.Text != fmt.Sprint(want) {
					t.Fatalf("response %d: id %d err %q body %s; want id %d answered", i, r.id, r.err, r.body, want)
				}
			}
			if err := <-werr; err != nil {
				t.Fatal(err)
			}
		})
	}
}

func TestBurstOfConcurrentClientRequestsIsAnswered(t *testing.T) {
	for _, scheme := range []string{"tcp", "ws"} {
		t.Run(scheme, func(t *testing.T) {
			s, _ := startEcho(t, nil)
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			addr := "tcp://" + s.TCPAddr().String()
			if scheme == "ws" {
				addr = "ws://" + s.WSAddr().String() + "/"
			}
			c, err := client.Dial(ctx, addr)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			echo := testingv1.NewEchoHandlerClient(c)
			var wg sync.WaitGroup
			errs := make(chan error, burst)
			for i := 0; i < burst; i++ {
				wg.Go(func() {
					text := fmt.Sprint(i)
					r, err := echo.Echo(ctx, &testingv1.EchoRequest{Text: text})
					if err == nil && r.Text != text {
						err = fmt.Errorf("echo %q answered %q", text, r.Text)
					}
					if err != nil {
						errs <- err
					}
				})
			}
			wg.Wait()
			close(errs)
			n := 0
			for err := range errs {
				if n == 0 {
					t.Errorf("request failed: %v", err)
				}
				n++
			}
			if n > 0 {
				t.Fatalf("%d of %d requests failed", n, burst)
			}
		})
	}
}

// The limit bounds what is buffered, not what is served: with MaxInFlight 1
// and a slow request first, the requests behind it wait (the reader stops
// reading) and are all answered, in order. The time the reader is paused
// does not count against the heartbeat timeout: the client's heartbeats
// wait unread in the socket meanwhile.
func TestMaxInFlightPausesReadingInsteadOfRefusing(t *testing.T) {
	s, _ := startEcho(t, func(c *server.Config) {
		c.Connector.MaxInFlight = 1
		c.Connector.HeartbeatTimeout = 300 * time.Millisecond
	})
	r := dialRaw(t, s)
	r.handshake()
	var frame []byte
	for id := uint64(1); id <= 6; id++ {
		text := "x"
		if id == 1 {
			text = "sleep" // 2s, far longer than the heartbeat timeout
		}
		frame, _ = wire.AppendMessagePackage(frame, &wire.Message{Type: wire.Request, ID: id, Route: testingv1.EchoHandlerEchoRoute, Body: []byte(`{"text":"` + text + `"}`)})
	}
	r.send(frame)
	stop := make(chan struct{})
	var wg sync.WaitGroup
	defer wg.Wait()
	defer close(stop)
	wg.Go(func() { // a live client heartbeats
		tick := time.NewTicker(50 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-stop:
				return
			case <-tick.C:
				ctx, cancel := context.WithTimeout(context.Background(), time.Second)
				r.c.Write(ctx, websocket.MessageBinary, wire.HeartbeatPackage)
				cancel()
			}
		}
	})
	for id := uint64(1); id <= 6; id++ {
		m := r.response()
		if m.ID != id || m.Error {
			t.Fatalf("response id %d error %v body %s; want id %d answered", m.ID, m.Error, m.Body, id)
		}
	}
}

// countRuns counts the requests the server ran (the handling chain saw).
func countRuns(s *server.Server) *atomic.Int64 {
	var n atomic.Int64
	s.GlobalFilter(runtime.FilterFuncs{BeforeFunc: func(ctx context.Context, r *runtime.Request) (context.Context, error) {
		n.Add(1)
		return ctx, nil
	}})
	return &n
}

// checkExactlyOnce asserts that the responses answer requests 1..k in
// order, each once, with its echo or CLOSED, and that every request the
// server ran got its result.
func checkExactlyOnce(t *testing.T, got []rawResponse, ran int64) {
	t.Helper()
	ok, closed := int64(0), 0
	for i, r := range got {
		if r.id != uint64(i+1) {
			t.Fatalf("response %d answers request %d: responses are not requests 1..k in order", i, r.id)
		}
		switch r.err {
		case "":
			ok++
		case runtime.ErrClosed.Name:
			closed++
		default:
			t.Fatalf("request %d answered %s %s", r.id, r.err, r.body)
		}
	}
	if ok != ran {
		t.Fatalf("server ran %d requests, %d got their result", ran, ok)
	}
	t.Logf("%d of %d requests accepted: %d answered, %d CLOSED", len(got), burst, ok, closed)
}

func kickAll(s *server.Server) {
	s.Sessions().Range(func(sess *session.Session) bool {
		s.Sessions().CloseSession(sess, "bye", true)
		return true
	})
}

func shutdownNow(t *testing.T) func(*server.Server) {
	return func(s *server.Server) {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := s.Shutdown(ctx, "bye"); err != nil {
			t.Error(err)
		}
	}
}

func TestKickAnswersEveryAcceptedRequestBeforeTheKick(t *testing.T) {
	for _, ws := range []bool{false, true} {
		t.Run(fmt.Sprintf("ws=%v", ws), func(t *testing.T) { exactlyOnceAcrossClose(t, ws, kickAll) })
	}
	t.Run("client", func(t *testing.T) { exactlyOnceForClient(t, kickAll) })
}

func TestShutdownAnswersEveryAcceptedRequestBeforeTheKick(t *testing.T) {
	for _, ws := range []bool{false, true} {
		t.Run(fmt.Sprintf("ws=%v", ws), func(t *testing.T) { exactlyOnceAcrossClose(t, ws, shutdownNow(t)) })
	}
	t.Run("client", func(t *testing.T) { exactlyOnceForClient(t, shutdownNow(t)) })
}

// exactlyOnceForClient issues a burst of concurrent requests from the Go
// client, closes the session with stop once some are answered, and checks
// that each request ended once: with its result (as many as the server
// ran), CLOSED, or, never read by the server, the KICK.
func exactlyOnceForClient(t *testing.T, stop func(*server.Server)) {
	s, _ := startEcho(t, nil)
	ran := countRuns(s)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	c := dialTCP(ctx, t, s)
	echo := testingv1.NewEchoHandlerClient(c)
	var ok, closed, kicked atomic.Int64
	answered := make(chan struct{}, burst)
	var wg sync.WaitGroup
	for i := 0; i < burst; i++ {
		wg.Go(func() {
			_, err := echo.Echo(ctx, &testingv1.EchoRequest{Text: "x"})
			var ke *client.KickError
			switch {
			case err == nil:
				ok.Add(1)
				answered <- struct{}{}
			case errors.Is(err, runtime.ErrClosed):
				closed.Add(1)
			case errors.As(err, &ke):
				kicked.Add(1)
			default:
				t.Errorf("request failed: %v", err)
			}
		})
	}
	for i := 0; i < 10; i++ {
		<-answered
	}
	stop(s)
	wg.Wait()
	if ok.Load() != ran.Load() {
		t.Fatalf("server ran %d requests, %d got their result", ran.Load(), ok.Load())
	}
	if n := ok.Load() + closed.Load() + kicked.Load(); n != burst {
		t.Fatalf("%d of %d requests ended", n, burst)
	}
	t.Logf("%d answered, %d CLOSED, %d not read (KICK)", ok.Load(), closed.Load(), kicked.Load())
}

// exactlyOnceAcrossClose pipelines a burst, closes the session with stop
// once the first responses arrived, and checks that every accepted request
// got exactly one response before the KICK.
func exactlyOnceAcrossClose(t *testing.T, ws bool, stop func(*server.Server)) {
	s, _ := startEcho(t, nil)
	ran := countRuns(s)
	c := dialBurst(t, s, ws)
	go c.nc.Write(c.frameOf(pipelineEchoes(t))) // fails once closed: fine
	got, _ := readUntilKick(t, c, 10)
	stopped := make(chan struct{})
	go func() {
		defer close(stopped)
		stop(s)
	}()
	rest, kicked := readUntilKick(t, c, 0)
	c.nc.Close()
	<-stopped
	if !kicked {
		t.Fatal("connection closed without a KICK")
	}
	got = append(got, rest...)
	checkExactlyOnce(t, got, ran.Load())
}

// A request running when its session is kicked by a handler of the same
// session (here: itself) still gets its result, before the KICK.
func TestHandlerKickingItsOwnSessionGetsItsResultFirst(t *testing.T) {
	s, _ := startEcho(t, nil)
	s.GlobalFilter(runtime.FilterFuncs{AfterFunc: func(ctx context.Context, r *runtime.Request, res *runtime.Result) {
		if l, ok := r.Session.(*session.Local); ok && r.Route == testingv1.EchoHandlerEchoRoute {
			s.Sessions().Kick(l.ID(), "done")
		}
	}})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c := dialTCP(ctx, t, s)
	if _, err := testingv1.NewEchoHandlerClient(c).Echo(ctx, &testingv1.EchoRequest{Text: "x"}); err != nil {
		t.Fatalf("request that kicked its session: %v", err)
	}
	select {
	case <-c.Done():
	case <-ctx.Done():
		t.Fatal("not kicked")
	}
	var ke *client.KickError
	if !errors.As(c.Err(), &ke) || ke.Reason != "done" {
		t.Fatalf("connection ended with %v, want the KICK", c.Err())
	}
}
