package session_test

import (
	"net"
	"sync"
	"testing"

	testingv1 "github.com/pomelo-go/pomelo/gen/pomelo/testing/v1"
	"github.com/pomelo-go/pomelo/runtime"
	"github.com/pomelo-go/pomelo/runtime/session"
	"github.com/pomelo-go/pomelo/runtime/wire"
)

// benchConn is an in-memory session.Conn that does what the connector's
// Send does short of the socket: take the connection's lock, queue the
// package (a fixed ring here, so memory stays flat) and wake the writer
// (a non-blocking signal nobody drains).
type benchConn struct {
	ser  runtime.Serializer
	mu   sync.Mutex
	ring [8][]byte
	n    int
	wake chan struct{}
}

func newBenchConn(ser runtime.Serializer) *benchConn {
	return &benchConn{ser: ser, wake: make(chan struct{}, 1)}
}

func (c *benchConn) Send(pkg []byte) error {
	c.mu.Lock()
	c.ring[c.n%len(c.ring)] = pkg
	c.n++
	c.mu.Unlock()
	select {
	case c.wake <- struct{}{}:
	default:
	}
	return nil
}

func (c *benchConn) last() []byte {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.n == 0 {
		return nil
	}
	return c.ring[(c.n-1)%len(c.ring)]
}

func (c *benchConn) Kick(string)                    {}
func (c *benchConn) Close()                         {}
func (c *benchConn) RemoteAddr() net.Addr           { return &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 1} }
func (c *benchConn) Serializer() runtime.Serializer { return c.ser }

// benchCountingBody counts the encodings of a push per serializer.
type benchCountingBody struct {
	inner session.Body
	mu    sync.Mutex
	n     map[string]int
}

func newBenchCountingBody(b session.Body) *benchCountingBody {
	return &benchCountingBody{inner: b, n: map[string]int{}}
}

func (c *benchCountingBody) Encode(ser runtime.Serializer) ([]byte, error) {
	c.mu.Lock()
	c.n[ser.Name()]++
	c.mu.Unlock()
	return c.inner.Encode(ser)
}

// benchSessions creates n sessions on fake connections; the first
// protobuf of them use protobuf, the others JSON.
func benchSessions(svc *session.Service, n, protobuf int) ([]*session.Session, []*benchConn) {
	ss := make([]*session.Session, n)
	cs := make([]*benchConn, n)
	for i := range ss {
		ser := runtime.JSON
		if i < protobuf {
			ser = runtime.Protobuf
		}
		cs[i] = newBenchConn(ser)
		ss[i] = svc.Create(cs[i])
	}
	return ss, cs
}

// benchCheckShared checks that every connection of one serializer holds the very
// same bytes of the last push, and that these are a PUSH of route.
func benchCheckShared(tb testing.TB, cs []*benchConn, route string, dict *wire.Dict) {
	tb.Helper()
	first := map[string][]byte{}
	for _, c := range cs {
		p := c.last()
		if len(p) == 0 {
			tb.Fatal("a session got no push")
		}
		f, ok := first[c.ser.Name()]
		if !ok {
			first[c.ser.Name()] = p
			f = p
		}
		if &p[0] != &f[0] {
			tb.Fatalf("%s sessions got distinct copies of one push: it was encoded more than once", c.ser.Name())
		}
	}
	for name, p := range first {
		var m wire.Message
		err := wire.SplitPackages(p, 0, func(t wire.PackageType, body []byte) (err error) {
			m, err = wire.DecodeMessage(body)
			return err
		})
		if err != nil || m.Type != wire.Push {
			tb.Fatalf("%s push: %v %v", name, m.Type, err)
		}
		if code, ok := dict.Code(route); ok && (!m.Compressed || m.RouteCode != code) {
			tb.Fatalf("%s push: route not compressed", name)
		}
	}
}

func benchDict(tb testing.TB) *wire.Dict {
	d, err := wire.NewDict(runtime.RegisteredRoutesOf(runtime.RouteHandler), runtime.RegisteredRoutesOf(runtime.RoutePush))
	if err != nil {
		tb.Fatal(err)
	}
	return d
}

// TestBenchFanoutSharesOneEncodingPerSerializer checks what BenchmarkPushFanout1000
// relies on: a push to sessions of both serializers is encoded once per
// serializer and every session of a serializer is queued the same bytes.
func TestBenchFanoutSharesOneEncodingPerSerializer(t *testing.T) {
	svc := session.NewService("fe-1", session.AllowMany)
	dict := benchDict(t)
	svc.SetDict(dict)
	ss, cs := benchSessions(svc, 10, 4)
	body := newBenchCountingBody(session.MessageBody(&testingv1.EchoEvent{Text: "hi"}))
	sent, err := svc.PushBodyToSessions(testingv1.EchoPushOnEchoRoute, body, ss)
	if err != nil || sent != len(ss) {
		t.Fatalf("sent %d of %d: %v", sent, len(ss), err)
	}
	if body.n[runtime.SerializerJSON] != 1 || body.n[runtime.SerializerProtobuf] != 1 || len(body.n) != 2 {
		t.Fatalf("encodings: %v, want one per serializer", body.n)
	}
	benchCheckShared(t, cs, testingv1.EchoPushOnEchoRoute, dict)
}

// BenchmarkPushFanout1000 pushes one message to 1,000 sessions on in-memory
// connections: the cost of encoding it (once per serializer) and queueing
// the shared bytes on every connection, without sockets. The peers in the
// same run:
//
//   - encode-once: encoding the push for one serializer, what the fan-out
//     must add little to;
//   - per-session-send-json: the same 1,000 sessions pushed one by one with
//     Session.Send, which encodes for each session.
//
// encodes/op is checked: 1 per serializer present.
func BenchmarkPushFanout1000(b *testing.B) {
	const n = 1000
	route := testingv1.EchoPushOnEchoRoute
	msg := &testingv1.EchoEvent{Text: "a push to everyone in the room"}
	dict := benchDict(b)
	for _, v := range []struct {
		name     string
		protobuf int
		encodes  int
	}{
		{"fake-json", 0, 1},
		{"fake-protobuf", n, 1},
		{"fake-mixed", n / 2, 2},
	} {
		b.Run(v.name, func(b *testing.B) {
			svc := session.NewService("fe-1", session.AllowMany)
			svc.SetDict(dict)
			ss, cs := benchSessions(svc, n, v.protobuf)
			body := newBenchCountingBody(session.MessageBody(msg))
			b.ReportAllocs()
			for b.Loop() {
				sent, err := svc.PushBodyToSessions(route, body, ss)
				if err != nil || sent != n {
					b.Fatalf("sent %d of %d: %v", sent, n, err)
				}
			}
			total := 0
			for _, k := range body.n {
				total += k
			}
			if len(body.n) != v.encodes || total != v.encodes*b.N {
				b.Fatalf("encodings over %d pushes: %v, want %d per push", b.N, body.n, v.encodes)
			}
			benchCheckShared(b, cs, route, dict)
			b.ReportMetric(float64(total)/float64(b.N), "encodes/op")
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/n, "ns/recipient")
		})
	}
	for _, ser := range []runtime.Serializer{runtime.JSON, runtime.Protobuf} {
		b.Run("encode-once-"+ser.Name(), func(b *testing.B) {
			svc := session.NewService("fe-1", session.AllowMany)
			svc.SetDict(dict)
			b.ReportAllocs()
			for b.Loop() {
				if _, err := svc.EncodePush(ser, route, msg); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
	b.Run("per-session-send-json", func(b *testing.B) {
		svc := session.NewService("fe-1", session.AllowMany)
		svc.SetDict(dict)
		ss, _ := benchSessions(svc, n, 0)
		b.ReportAllocs()
		for b.Loop() {
			for _, s := range ss {
				if err := s.Send(route, msg); err != nil {
					b.Fatal(err)
				}
			}
		}
		b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/n, "ns/recipient")
	})
}
