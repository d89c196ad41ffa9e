package node_test

import (
	"context"
	"encoding/binary"
	"io"
	"net"
	"testing"
	"time"

	"github.com/pomelo-go/pomelo/internal/clustertest"
	"github.com/pomelo-go/pomelo/internal/node"
)

// h2Preface is what an HTTP/2 client sends first: the connection preface
// and an empty SETTINGS frame.
var h2Preface = append([]byte("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"), 0, 0, 0, 4, 0, 0, 0, 0, 0)

// readH2Frames reads HTTP/2 frames from c until one of type want arrives
// (true) or the connection fails (false).
func readH2Frames(c net.Conn, want byte) bool {
	var h [9]byte
	for {
		if _, err := io.ReadFull(c, h[:]); err != nil {
			return false
		}
		if h[3] == want {
			return true
		}
		n := int(binary.BigEndian.Uint32(append([]byte{0}, h[:3]...)))
		if _, err := io.CopyN(io.Discard, c, int64(n)); err != nil {
			return false
		}
	}
}

// A connection the RPC listener accepted before Close, whose HTTP/2
// preface arrives only once the server's shutdown has sent its GOAWAYs,
// does not hold Close until its deadline: the HTTP server would never tell
// it to go away, and would wait for it as for an active connection.
func TestCloseIsNotHeldByAConnectionThatStartsHTTP2DuringShutdown(t *testing.T) {
	c := clustertest.Start(t, clustertest.Options{
		Servers: []clustertest.Spec{{Type: "chat"}},
		// The auth window must not close the late connection for Close.
		ConfigureNode: func(cfg *node.Config) { cfg.AuthTimeout = time.Hour },
	})
	n := c.Members("chat")[0].Node
	addr := n.RPCAddr().String()
	late, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer late.Close()
	served, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer served.Close()
	served.SetDeadline(time.Now().Add(time.Minute)) // a safety net only
	if _, err := served.Write(h2Preface); err != nil {
		t.Fatal(err)
	}
	// The server's SETTINGS: served is an HTTP/2 connection, and late,
	// accepted before it, is accepted.
	if !readH2Frames(served, 0x4) {
		t.Fatal("no SETTINGS from the RPC server")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	closed := make(chan error, 1)
	go func() { closed <- n.Close(ctx) }()
	// GOAWAY (or the connection closed): the shutdown has told the HTTP/2
	// connections it knows to go away. Only now does late start HTTP/2.
	readH2Frames(served, 0x7)
	late.Write(h2Preface) // fails when the connection is already closed
	if err := <-closed; err != nil {
		t.Fatalf("Close: %v", err)
	}
}
