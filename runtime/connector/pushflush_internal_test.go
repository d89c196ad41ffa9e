package connector

// Tests of Config.PushFlushInterval: pushes held to share one write, and
// written at once with anything else.

import (
	"bytes"
	"context"
	"testing"
	"time"

	"github.com/pomelo-go/pomelo/runtime/session"
	"github.com/pomelo-go/pomelo/runtime/wire"
)

// workingConn is a WORKING connection on g of a new connector with cfg.
func workingConn(t *testing.T, cfg Config, g *gateTransport) *conn {
	t.Helper()
	svc := session.NewService("f-1", session.AllowMany)
	c := New(cfg, nil, svc, &reviewHandler{})
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		c.Shutdown(ctx, "")
	})
	c.admit()
	cn := newConn(c, g)
	if !c.addConn(cn) {
		t.Fatal("connection refused")
	}
	go cn.readLoop()
	cn.setState(stateWorking)
	return cn
}

// flushConn is a WORKING connection of a connector with cfg on a
// transport that records every frame and never blocks a write.
func flushConn(t *testing.T, cfg Config) (*conn, *gateTransport) {
	t.Helper()
	g := newGateTransport()
	close(g.release)
	return workingConn(t, cfg, g), g
}

func pushPkg(body string) []byte {
	p, _ := wire.AppendMessagePackage(nil, &wire.Message{Type: wire.Push, Route: "on.n", Body: []byte(body)})
	return p
}

func responsePkg(id uint64) []byte {
	p, _ := wire.AppendMessagePackage(nil, &wire.Message{Type: wire.Response, ID: id, Body: []byte("ok")})
	return p
}

// sendAll sends each package to cn and returns them concatenated.
func sendAll(t *testing.T, cn *conn, pkgs ...[]byte) []byte {
	t.Helper()
	var all []byte
	for _, p := range pkgs {
		if err := cn.Send(p); err != nil {
			t.Fatal(err)
		}
		all = append(all, p...)
	}
	return all
}

// nextWrite waits for the transport's next write.
func nextWrite(t *testing.T, g *gateTransport, what string) {
	t.Helper()
	select {
	case <-g.wrote:
	case <-time.After(5 * time.Second):
		t.Fatalf("no write: %s", what)
	}
}

// While only pushes are queued the writer holds them; a response queued
// next is written at once, in one frame with the pushes before it, in
// order.
func TestHeldPushesGoOutWithTheNextResponseInOneWrite(t *testing.T) {
	cn, g := flushConn(t, Config{Heartbeat: time.Minute, PushFlushInterval: time.Hour})
	want := sendAll(t, cn, pushPkg("1"), pushPkg("2"), pushPkg("3"))
	waitFor(t, "the writer to hold the pushes", func() bool { return goroutinesIn("(*conn).holdPushes") == 1 })
	if n := len(g.written()); n != 0 {
		t.Fatalf("%d frames written while the pushes are held", n)
	}
	want = append(want, sendAll(t, cn, responsePkg(7))...)
	nextWrite(t, g, "the response did not flush the held pushes")
	if frames := g.written(); len(frames) != 1 || !bytes.Equal(frames[0], want) {
		t.Fatalf("frames %q, want one frame %q", frames, want)
	}
}

// Pushes alone are held until the interval ends, then written together.
func TestHeldPushesAreWrittenTogetherWhenTheIntervalEnds(t *testing.T) {
	cn, g := flushConn(t, Config{Heartbeat: time.Minute, PushFlushInterval: 200 * time.Millisecond})
	want := sendAll(t, cn, pushPkg("1"), pushPkg("2"), pushPkg("3"))
	nextWrite(t, g, "the held pushes were never written")
	if frames := g.written(); len(frames) != 1 || !bytes.Equal(frames[0], want) {
		t.Fatalf("frames %q, want one frame %q", frames, want)
	}
	waitFor(t, "the writer to exit", func() bool { return !cn.writing.Load() })
}

// A kick or a close does not wait for the interval: the held pushes go
// out, then the KICK (none on a close), and the connection closes.
func TestKickOrCloseWritesTheHeldPushesAtOnce(t *testing.T) {
	for _, kick := range []bool{true, false} {
		cn, g := flushConn(t, Config{Heartbeat: time.Minute, PushFlushInterval: time.Hour})
		want := sendAll(t, cn, pushPkg("1"), pushPkg("2"))
		waitFor(t, "the writer to hold the pushes", func() bool { return goroutinesIn("(*conn).holdPushes") == 1 })
		if kick {
			cn.Kick("bye")
			k, _ := wire.AppendPackage(nil, wire.TypeKick, wire.KickBody("bye"))
			want = append(want, k...)
		} else {
			cn.Close()
		}
		select {
		case <-cn.done:
		case <-time.After(5 * time.Second):
			t.Fatalf("kick %v: the connection did not close while pushes were held", kick)
		}
		if got := bytes.Join(g.written(), nil); !bytes.Equal(got, want) {
			t.Fatalf("kick %v: wrote %q, want %q", kick, got, want)
		}
	}
}
