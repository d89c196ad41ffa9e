package client_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/pomelo-go/pomelo/runtime/client"
	"github.com/pomelo-go/pomelo/runtime/wire"
)

// flakyResumer is a raw TCP frontend whose first drops connections end
// right after the client's HANDSHAKE_ACK; every handshake is answered with a
// resume reply (the first resumed:false, the others resumed:true). The
// connection after those answers every request with {}; with silent, it
// and every later one never answer the handshake.
func flakyResumer(t *testing.T, drops int, silent bool) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	t.Cleanup(func() { ln.Close(); wg.Wait() })
	wg.Add(1)
	go func() {
		defer wg.Done()
		for i := 0; ; i++ {
			nc, err := ln.Accept()
			if err != nil {
				return
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer nc.Close()
				r := wire.NewReader(nc, 0)
				if typ, _, err := r.Next(); err != nil || typ != wire.TypeHandshake {
					return
				}
				if silent && i >= drops {
					r.Next() // until the client goes
					return
				}
				reply := fmt.Appendf(nil, `{"code":200,"sys":{"heartbeat":30,"resume":{"token":"t%d","resumed":%t}}}`, i, i > 0)
				if _, err := nc.Write(pkg(wire.TypeHandshake, reply)); err != nil {
					return
				}
				if typ, _, err := r.Next(); err != nil || typ != wire.TypeHandshakeAck {
					return
				}
				if i < drops {
					return // the connection ends as soon as it is up
				}
				for {
					typ, body, err := r.Next()
					if err != nil {
						return
					}
					if typ != wire.TypeData {
						continue
					}
					m, err := wire.DecodeMessage(body)
					if err != nil || m.Type != wire.Request {
						continue
					}
					if _, err := nc.Write(dataPkg(wire.Message{Type: wire.Response, ID: m.ID, Body: []byte("{}")})); err != nil {
						return
					}
				}
			}()
		}
	}()
	return "tcp://" + ln.Addr().String()
}

// A connection that ends the moment it is up (before the client has made it
// the one in use) is a drop like any other: the client reconnects rather
// than keep a dead connection, and it reports its states in order, one call
// at a time: connected, then reconnecting and resumed for each drop.
func TestConnectionThatEndsAsSoonAsItIsUpIsReconnected(t *testing.T) {
	const drops = 20
	addr := flakyResumer(t, drops, false)
	var (
		mu      sync.Mutex
		got     []client.State
		inCall  bool
		overlap bool
	)
	cfg := client.Config{Resume: true, ReconnectMinDelay: time.Millisecond, ReconnectMaxDelay: time.Millisecond, NoHeartbeat: true,
		OnState: func(s client.State) {
			mu.Lock()
			overlap = overlap || inCall
			inCall = true
			got = append(got, s)
			mu.Unlock()
			time.Sleep(time.Millisecond) // widen a window in which a second call would overlap
			mu.Lock()
			inCall = false
			mu.Unlock()
		}}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := cfg.Dial(ctx, addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, _, err := c.RequestRaw(ctx, "test.h.echo", nil); err != nil {
		t.Fatalf("request after %d connections that ended at once: %v (states %v)", drops, err, got)
	}
	want := []client.State{client.StateConnected}
	for range drops {
		want = append(want, client.StateReconnecting, client.StateResumed)
	}
	// The request may be answered before the last resumed is reported:
	// the resend and new requests go first.
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(time.Millisecond) {
		mu.Lock()
		n := len(got)
		mu.Unlock()
		if n >= len(want) || time.Now().After(deadline) {
			break
		}
	}
	mu.Lock()
	defer mu.Unlock()
	if !slices.Equal(got, want) || overlap {
		t.Fatalf("states %v (overlapping calls: %v), want %v", got, overlap, want)
	}
}

// Close while the client reconnects (its attempt waits for a handshake
// reply that does not come) ends the Client at once, with ErrClosed, and reports nothing after
// reconnecting; TestMain checks that no goroutine of it is left.
func TestCloseWhileReconnectingEndsTheClient(t *testing.T) {
	addr := flakyResumer(t, 1, true)
	states := make(chan client.State, 8)
	cfg := client.Config{Resume: true, NoHeartbeat: true,
		OnState: func(s client.State) { states <- s }}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := cfg.Dial(ctx, addr)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []client.State{client.StateConnected, client.StateReconnecting} {
		select {
		case s := <-states:
			if s != want {
				t.Fatalf("state %v, want %v", s, want)
			}
		case <-ctx.Done():
			t.Fatalf("no %v", want)
		}
	}
	c.Close()
	if err := c.Err(); !errors.Is(err, client.ErrClosed) {
		t.Fatalf("Err after Close: %v", err)
	}
	if _, _, err := c.RequestRaw(ctx, "test.h.echo", nil); !errors.Is(err, client.ErrClosed) {
		t.Fatalf("request after Close: %v", err)
	}
	select {
	case s := <-states:
		t.Fatalf("state %v reported after Close", s)
	default:
	}
}

// A client that cannot get its session back within ReconnectTimeout (its
// attempt waits for a handshake reply that does not come) gives up: the
// Client is finished with an error wrapping ErrConnectionLost, and lost is
// its last state.
func TestReconnectGivesUpAfterReconnectTimeout(t *testing.T) {
	addr := flakyResumer(t, 1, true)
	states := make(chan client.State, 8)
	cfg := client.Config{Resume: true, NoHeartbeat: true, ReconnectTimeout: 100 * time.Millisecond,
		OnState: func(s client.State) { states <- s }}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := cfg.Dial(ctx, addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	select {
	case <-c.Done():
	case <-ctx.Done():
		t.Fatal("the client did not give up")
	}
	if err := c.Err(); !errors.Is(err, client.ErrConnectionLost) {
		t.Fatalf("Err: %v, want ErrConnectionLost", err)
	}
	var got []client.State
	for len(got) < 3 {
		select {
		case s := <-states:
			got = append(got, s)
		case <-ctx.Done():
			t.Fatalf("states %v", got)
		}
	}
	if want := []client.State{client.StateConnected, client.StateReconnecting, client.StateLost}; !slices.Equal(got, want) {
		t.Fatalf("states %v, want %v", got, want)
	}
}

// serverSide is the server end of one raw TCP connection of a test.
type serverSide struct {
	t  *testing.T
	nc net.Conn
	r  *wire.Reader
}

func (s serverSide) next(want wire.PackageType) []byte {
	s.t.Helper()
	s.nc.SetReadDeadline(time.Now().Add(5 * time.Second))
	for {
		typ, body, err := s.r.Next()
		if err != nil {
			s.t.Fatalf("server: reading %s: %v", want, err)
		}
		if typ == want {
			return append([]byte(nil), body...)
		}
		if typ != wire.TypeHeartbeat {
			s.t.Fatalf("server: got %s, want %s", typ, want)
		}
	}
}

func (s serverSide) write(b []byte) {
	s.t.Helper()
	if _, err := s.nc.Write(b); err != nil {
		s.t.Fatalf("server: %v", err)
	}
}

// acceptRaw listens on loopback TCP and hands over each connection.
func acceptRaw(t *testing.T) (string, <-chan serverSide) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	conns := make(chan serverSide, 4)
	go func() {
		for {
			nc, err := ln.Accept()
			if err != nil {
				return
			}
			t.Cleanup(func() { nc.Close() })
			conns <- serverSide{t: t, nc: nc, r: wire.NewReader(nc, 0)}
		}
	}()
	t.Cleanup(func() { ln.Close() })
	return "tcp://" + ln.Addr().String(), conns
}

func nextConn(t *testing.T, conns <-chan serverSide) serverSide {
	t.Helper()
	select {
	case s := <-conns:
		return s
	case <-time.After(5 * time.Second):
		t.Fatal("no connection")
		panic("unreachable")
	}
}

// A request made while the client reconnects is sent once on the resumed
// connection: it is one of the unanswered requests sent again after the
// resume, and nothing else sends it (a second copy would run again once
// the first is answered).
func TestRequestMadeWhileReconnectingIsSentOnce(t *testing.T) {
	addr, conns := acceptRaw(t)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	dialed := make(chan *client.Client, 1)
	go func() {
		c, err := client.Config{Resume: true, NoHeartbeat: true}.Dial(ctx, addr)
		if err != nil {
			t.Error(err)
		}
		dialed <- c
	}()
	s0 := nextConn(t, conns)
	s0.next(wire.TypeHandshake)
	s0.write(pkg(wire.TypeHandshake, []byte(`{"code":200,"sys":{"heartbeat":30,"resume":{"token":"t0","resumed":false}}}`)))
	s0.next(wire.TypeHandshakeAck)
	c := <-dialed
	if c == nil {
		t.FailNow()
	}
	defer c.Close()
	s0.nc.Close() // the client reconnects

	s1 := nextConn(t, conns)
	s1.next(wire.TypeHandshake)
	answered := make(chan error, 1)
	go func() {
		_, _, err := c.RequestRaw(ctx, "test.h.a", nil)
		answered <- err
	}()
	deadline := time.Now().Add(5 * time.Second)
	for client.PendingCount(c) != 1 {
		if time.Now().After(deadline) {
			t.Fatal("the request made while reconnecting is not pending")
		}
		time.Sleep(time.Millisecond)
	}
	s1.write(pkg(wire.TypeHandshake, []byte(`{"code":200,"sys":{"heartbeat":30,"resume":{"token":"t1","resumed":true}}}`)))
	s1.next(wire.TypeHandshakeAck)
	readRequest := func() uint64 {
		m, err := wire.DecodeMessage(s1.next(wire.TypeData))
		if err != nil {
			t.Fatal(err)
		}
		return m.ID
	}
	first := readRequest()
	s1.write(dataPkg(wire.Message{Type: wire.Response, ID: first, Body: []byte("{}")}))
	if err := <-answered; err != nil {
		t.Fatal(err)
	}
	go c.RequestRaw(ctx, "test.h.b", nil)
	if id := readRequest(); id == first {
		t.Fatalf("request %d sent twice on the resumed connection", id)
	}
}

// The client's DATA count in its resume request includes every package it
// delivered: when its connection ends (here as on a failed write) while
// its reader still goes through packages it had read, the resume waits for
// the reader to be done, so that the replay from that count brings each
// push once.
func TestResumeCountsEveryPackageTheReaderDelivered(t *testing.T) {
	const n = 20000
	addr, conns := acceptRaw(t)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	pushes := func(from int) []byte {
		var b []byte
		for i := from; i < n; i++ {
			b = append(b, dataPkg(wire.Message{Type: wire.Push, Route: "p", Body: []byte(fmt.Sprint(i))})...)
		}
		return b
	}
	dialed := make(chan *client.Client, 1)
	go func() {
		c, err := client.Config{Resume: true, NoHeartbeat: true}.Dial(ctx, addr)
		if err != nil {
			t.Error(err)
		}
		dialed <- c
	}()
	s0 := nextConn(t, conns)
	s0.next(wire.TypeHandshake)
	s0.write(pkg(wire.TypeHandshake, []byte(`{"code":200,"sys":{"heartbeat":30,"resume":{"token":"t0","resumed":false}}}`)))
	s0.next(wire.TypeHandshakeAck)
	c := <-dialed
	if c == nil {
		t.FailNow()
	}
	defer c.Close()
	var mu sync.Mutex
	var got []string
	c.OnAnyPush(func(_ string, body []byte) {
		mu.Lock()
		got = append(got, string(body))
		mu.Unlock()
	})
	go s0.nc.Write(pushes(0)) // fails once the client has gone
	deadline := time.Now().Add(5 * time.Second)
	for c.Received() < 100 {
		if time.Now().After(deadline) {
			t.Fatal("no pushes")
		}
		time.Sleep(time.Millisecond)
	}
	client.DropConn(c)

	s1 := nextConn(t, conns)
	var hs struct {
		Sys struct {
			Resume struct{ Received int }
		}
	}
	if err := json.Unmarshal(s1.next(wire.TypeHandshake), &hs); err != nil {
		t.Fatal(err)
	}
	s1.write(pkg(wire.TypeHandshake, []byte(`{"code":200,"sys":{"heartbeat":30,"resume":{"token":"t1","resumed":true}}}`)))
	s1.next(wire.TypeHandshakeAck)
	s1.write(pushes(hs.Sys.Resume.Received))
	for {
		mu.Lock()
		k := len(got)
		mu.Unlock()
		if k >= n {
			break
		}
		if ctx.Err() != nil {
			t.Fatalf("%d pushes of %d", k, n)
		}
		time.Sleep(time.Millisecond)
	}
	mu.Lock()
	defer mu.Unlock()
	for i, body := range got {
		if body != fmt.Sprint(i) {
			t.Fatalf("push %d is %s (resumed from %d): %d pushes for %d sent", i, body, hs.Sys.Resume.Received, len(got), n)
		}
	}
}
