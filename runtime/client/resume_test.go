package client_test

import (
	"context"
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
// connection after those answers every request with {}.
func flakyResumer(t *testing.T, drops int) string {
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
	addr := flakyResumer(t, drops)
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
	mu.Lock()
	defer mu.Unlock()
	if !slices.Equal(got, want) || overlap {
		t.Fatalf("states %v (overlapping calls: %v), want %v", got, overlap, want)
	}
}
