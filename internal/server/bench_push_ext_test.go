package server_test

import (
	"slices"
	"sync"
	"testing"

	testingv1 "github.com/pomelo-go/pomelo/gen/pomelo/testing/v1"
	"github.com/pomelo-go/pomelo/runtime"
	"github.com/pomelo-go/pomelo/runtime/session"
	"github.com/pomelo-go/pomelo/runtime/wire"
)

// benchCountingBody counts the encodings of a push per serializer.
type benchCountingBody struct {
	inner session.Body
	n     map[string]int
}

func (c *benchCountingBody) Encode(ser runtime.Serializer) ([]byte, error) {
	c.n[ser.Name()]++
	return c.inner.Encode(ser)
}

const benchFanout = 1000

// BenchmarkPushFanout1000 pushes one message to 1,000 sessions of a frontend
// whose clients are real raw-client connections over loopback, and waits
// until every client has read the push: ns/op is the time from the push
// call until the last of the 1,000 clients has it, allocs/op the
// allocations of the push (the raw clients allocate nothing). Every
// iteration checks that the push was encoded once per serializer
// (encodes/op: 1, or 2 in the mixed variant).
func BenchmarkPushFanout1000(b *testing.B) {
	s := benchStartServer(b)
	// Groups are dialed one after the other, and each group's sessions are
	// the ones that appeared while it was dialed (client addresses cannot
	// tell them apart: a port can be reused towards another server port).
	var got sync.WaitGroup // one Done per push a client reads
	seen := map[*session.Session]bool{}
	dialGroup := func(ws bool, ser string) []*session.Session {
		addr := s.TCPAddr()
		if ws {
			addr = s.WSAddr()
		}
		conns := make([]*benchRawConn, benchFanout)
		benchDialMany(b, conns, func() (*benchRawConn, error) { return benchDialRawErr(addr, ws, ser) })
		for _, c := range conns {
			b.Cleanup(func() { c.nc.Close() })
			go func() {
				for {
					t, _, err := c.next()
					if err != nil {
						return
					}
					if t == wire.TypeData {
						got.Done()
					}
				}
			}()
		}
		var out []*session.Session
		s.Sessions().Range(func(ss *session.Session) bool {
			if !seen[ss] {
				seen[ss] = true
				out = append(out, ss)
			}
			return true
		})
		if len(out) != benchFanout {
			b.Fatalf("%d new sessions, want %d", len(out), benchFanout)
		}
		for _, ss := range out {
			if ss.Serializer().Name() != ser {
				b.Fatalf("session %d uses %s, want %s", ss.ID(), ss.Serializer().Name(), ser)
			}
		}
		return out
	}
	tcpJSON := dialGroup(false, runtime.SerializerJSON)
	tcpProto := dialGroup(false, runtime.SerializerProtobuf)
	wsJSON := dialGroup(true, runtime.SerializerJSON)
	mixed := append(slices.Clone(tcpJSON[:benchFanout/2]), tcpProto[:benchFanout/2]...)
	msg := &testingv1.EchoEvent{Text: "a push to everyone in the room"}
	svc := s.Sessions()
	for _, v := range []struct {
		name    string
		targets []*session.Session
		encodes int
	}{
		{"tcp-json", tcpJSON, 1},
		{"tcp-protobuf", tcpProto, 1},
		{"tcp-mixed", mixed, 2},
		{"ws-json", wsJSON, 1},
	} {
		b.Run(v.name, func(b *testing.B) {
			body := &benchCountingBody{inner: session.MessageBody(msg), n: map[string]int{}}
			b.ReportAllocs()
			cpu := benchCPU()
			for b.Loop() {
				got.Add(len(v.targets))
				sent, err := svc.PushBodyToSessions(testingv1.EchoPushOnEchoRoute, body, v.targets)
				if err != nil || sent != len(v.targets) {
					b.Fatalf("push: sent %d of %d: %v", sent, len(v.targets), err)
				}
				got.Wait()
			}
			benchReportCPU(b, cpu)
			total := 0
			for _, n := range body.n {
				total += n
			}
			if len(body.n) != v.encodes || total != v.encodes*b.N {
				b.Fatalf("encodings per serializer over %d pushes: %v, want %d per push", b.N, body.n, v.encodes)
			}
			b.ReportMetric(float64(total)/float64(b.N), "encodes/op")
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/float64(len(v.targets)), "ns/recipient")
		})
	}
}

// benchDialMany fills conns by calling dial on a few goroutines.
func benchDialMany(b *testing.B, conns []*benchRawConn, dial func() (*benchRawConn, error)) {
	var wg sync.WaitGroup
	var mu sync.Mutex
	var first error
	next := make(chan int)
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range next {
				c, err := dial()
				mu.Lock()
				if err != nil && first == nil {
					first = err
				}
				mu.Unlock()
				conns[i] = c
			}
		}()
	}
	for i := range conns {
		next <- i
	}
	close(next)
	wg.Wait()
	if first != nil {
		for _, c := range conns {
			if c != nil {
				c.nc.Close()
			}
		}
		b.Fatal(first)
	}
}
