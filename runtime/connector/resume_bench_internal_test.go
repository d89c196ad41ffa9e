package connector

// Benchmarks of session resume: the heap a suspended session holds, and
// what replaying one kept package costs.
//
//	go test -run '^$' -bench SuspendedSessionMemory -benchtime 10000x -count 4 ./runtime/connector
//	go test -run '^$' -bench ResumeReplay -count 4 ./runtime/connector

import (
	"context"
	"fmt"
	"io"
	"net"
	goruntime "runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pomelo-go/pomelo/runtime/session"
	"github.com/pomelo-go/pomelo/runtime/wire"
)

// discardTransport drops what is written, counting the bytes; reads block
// until it is closed.
type discardTransport struct {
	closed  chan struct{}
	once    sync.Once
	written atomic.Int64
}

func newDiscardTransport() *discardTransport { return &discardTransport{closed: make(chan struct{})} }

func (d *discardTransport) readPackages(func(wire.PackageType, []byte) error) error {
	<-d.closed
	return io.EOF
}

func (d *discardTransport) write(b []byte, _ time.Duration) error {
	d.written.Add(int64(len(b)))
	return nil
}

func (d *discardTransport) close()               { d.once.Do(func() { close(d.closed) }) }
func (d *discardTransport) closeNow()            { d.close() }
func (d *discardTransport) remoteAddr() net.Addr { return stringAddr("bench") }
func (d *discardTransport) peerGone() bool       { return false }

func benchConnector(b *testing.B, cfg Config) (*Connector, *session.Service) {
	svc := session.NewService("f-1", session.AllowMany)
	c := New(cfg, nil, svc, newRecordHandler())
	b.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		c.Shutdown(ctx, "")
	})
	return c, svc
}

// handshakeOn runs the handshake (resume is the sys.resume JSON) and the
// ack of a connection over t, without a reader goroutine; it returns the
// connection and its reply.
func handshakeOn(b *testing.B, c *Connector, t transport, resume string) (*conn, *wire.ResumeReply) {
	c.admit()
	cn := newConn(c, t)
	if !c.addConn(cn) {
		b.Fatal("connection refused")
	}
	if err := cn.onPackage(wire.TypeHandshake, fmt.Appendf(nil, `{"sys":{"type":"bench","resume":%s}}`, resume)); err != nil {
		b.Fatal(err)
	}
	l := cn.link.Load()
	if l == nil {
		b.Fatal("not resumable")
	}
	l.mu.Lock()
	reply := &wire.ResumeReply{Token: l.token, Resumed: cn.session() != nil && l.state == linkSuspended}
	l.mu.Unlock()
	return cn, reply
}

// dropConn ends cn as a connection drop does.
func dropConn(cn *conn) {
	cn.drop(false)
	cn.finish()
}

func heapInUse() uint64 {
	for range 3 {
		goruntime.GC()
	}
	var ms goruntime.MemStats
	goruntime.ReadMemStats(&ms)
	return ms.HeapAlloc
}

// BenchmarkSuspendedSessionMemory reports the heap one suspended session
// holds (its session, link, token and kept packages; its connection is
// gone), with nothing kept and with 16 pushes shared by every session
// (encoded once: each session keeps references, not copies).
func BenchmarkSuspendedSessionMemory(b *testing.B) {
	for _, pushes := range []int{0, 16} {
		b.Run(fmt.Sprintf("pushes-%d", pushes), func(b *testing.B) {
			c, svc := benchConnector(b, Config{ResumeWindow: time.Hour, MaxConnections: NoConnectionLimit})
			body := rawBody(`{"from":"bench","msg":"a chat message of about sixty bytes...."}`)
			before := heapInUse()
			b.ResetTimer()
			for range b.N {
				cn, _ := handshakeOn(b, c, newDiscardTransport(), `{}`)
				if err := cn.onPackage(wire.TypeHandshakeAck, nil); err != nil {
					b.Fatal(err)
				}
				dropConn(cn)
			}
			for range pushes {
				if err := svc.BroadcastBody("onChat", body, false, nil); err != nil {
					b.Fatal(err)
				}
			}
			b.StopTimer()
			waitFor(b, "writers to exit", func() bool { return goroutinesIn("(*conn).writeLoop") == 0 })
			if n := svc.SuspendedCount(); n != b.N {
				b.Fatalf("%d suspended sessions, want %d", n, b.N)
			}
			after := heapInUse()
			b.ReportMetric(float64(int64(after)-int64(before))/float64(b.N), "heap-B/session")
			goruntime.KeepAlive(c)
		})
	}
}

// BenchmarkResumeReplay reports the cost of replaying one kept package on
// a resume: a suspended session keeps 256 pushes; each iteration resumes it
// on a new connection from the first (the handshake is not timed), replays
// the 256 (the ack: queued and written), and drops it again.
func BenchmarkResumeReplay(b *testing.B) {
	const kept = 256
	c, svc := benchConnector(b, Config{ResumeWindow: time.Hour})
	first, reply := handshakeOn(b, c, newDiscardTransport(), `{}`)
	if err := first.onPackage(wire.TypeHandshakeAck, nil); err != nil {
		b.Fatal(err)
	}
	sess := first.session()
	dropConn(first)
	body := rawBody(`{"from":"bench","msg":"a chat message of about sixty bytes...."}`)
	for range kept {
		if _, err := svc.PushBodyToSessions("onChat", body, []*session.Session{sess}); err != nil {
			b.Fatal(err)
		}
	}
	l := first.link.Load()
	token := reply.Token
	var mallocs uint64
	var ms goruntime.MemStats
	b.ResetTimer()
	for range b.N {
		b.StopTimer()
		t := newDiscardTransport()
		l.mu.Lock()
		received := l.sent - kept
		l.mu.Unlock()
		cn, r := handshakeOn(b, c, t, fmt.Sprintf(`{"token":%q,"received":%d}`, token, received))
		if !r.Resumed {
			b.Fatal("not resumed")
		}
		token = r.Token
		start := t.written.Load()
		goruntime.ReadMemStats(&ms)
		m0 := ms.Mallocs
		b.StartTimer()
		if err := cn.onPackage(wire.TypeHandshakeAck, nil); err != nil {
			b.Fatal(err)
		}
		// The 256 pushes and the heartbeat are written.
		for t.written.Load()-start < int64(kept*len(body)) {
			goruntime.Gosched()
		}
		b.StopTimer()
		goruntime.ReadMemStats(&ms)
		mallocs += ms.Mallocs - m0
		// Keep the session's count where the next resume starts from.
		for range kept {
			if _, err := svc.PushBodyToSessions("onChat", body, []*session.Session{sess}); err != nil {
				b.Fatal(err)
			}
		}
		dropConn(cn)
		b.StartTimer()
	}
	b.StopTimer()
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*kept), "ns/package")
	b.ReportMetric(float64(mallocs)/float64(b.N*kept), "allocs/package")
}
