package server_test

import (
	"context"
	"sync/atomic"
	"testing"

	testingv1 "github.com/pomelo-go/pomelo/gen/pomelo/testing/v1"
	"github.com/pomelo-go/pomelo/internal/metrics"
	"github.com/pomelo-go/pomelo/internal/server"
	"github.com/pomelo-go/pomelo/runtime"
	"github.com/pomelo-go/pomelo/runtime/client"
	"github.com/pomelo-go/pomelo/runtime/wire"
)

// benchGoPool dials Go clients on demand and keeps them for the sibling
// sub-benchmarks; they close when parent ends.
type benchGoPool struct {
	parent  *testing.B
	addr    string
	ser     runtime.Serializer
	clients []*client.Client
}

func (p *benchGoPool) get(b *testing.B, n int) []*client.Client {
	for len(p.clients) < n {
		c, err := client.Config{Serializer: p.ser}.Dial(context.Background(), p.addr)
		if err != nil {
			b.Fatal(err)
		}
		p.parent.Cleanup(func() { c.Close() })
		p.clients = append(p.clients, c)
	}
	return p.clients[:n]
}

// benchRawPool is benchGoPool for raw clients, each with the request
// prepared.
type benchRawPool struct {
	parent *testing.B
	dial   func() (*benchRawConn, error)
	ser    runtime.Serializer
	req    *testingv1.EchoRequest
	conns  []*benchRawConn
}

func (p *benchRawPool) get(b *testing.B, n int) []*benchRawConn {
	for len(p.conns) < n {
		c, err := p.dial()
		if err != nil {
			b.Fatal(err)
		}
		p.parent.Cleanup(func() { c.nc.Close() })
		c.prepare(b, p.ser, testingv1.EchoHandlerEchoRoute, p.req)
		p.conns = append(p.conns, c)
	}
	return p.conns[:n]
}

// benchClients is how many concurrent clients the parallel variants use.
const benchClients = 64

// BenchmarkRequestRoundTrip measures one request/response round trip of
// echo.echoHandler.echo through the connector and the handling chain over
// loopback, on WebSocket and raw TCP, with the JSON and protobuf serializers:
//
//   - goclient: the Go client and the generated typed client, one request
//     at a time. Client-side cost (encode, id bookkeeping, decode, its
//     reader goroutine) is included in ns/op, allocs/op and cpu-ns/op.
//   - raw: a raw client that sends a pre-encoded request and reads into
//     reused buffers; it allocates nothing, so allocs/op is the server's.
//   - *-p64: 64 clients on their own connections, one request in flight
//     each (throughput: ns/op is wall time per request over all clients).
//
// tcp/floor is the peer the raw variants compare with: the same bytes
// bounced by a bare loopback TCP server without any Pomelo logic. cpu-ns/op
// is the process's CPU time (user+sys, client and server) per request.
func BenchmarkRequestRoundTrip(b *testing.B) {
	// The "+metrics" variants run against a server that records its
	// metrics, for the overhead: -bench 'RequestRoundTrip/tcp/protobuf/raw'
	// runs both.
	plain := benchStartServer(b)
	metered := benchStartServerWith(b, metrics.New(metrics.Options{Server: "bench-echo-1"}))
	req := &testingv1.EchoRequest{Text: "hello, pomelo"}
	ctx := context.Background()
	for _, tr := range []struct {
		name string
		ws   bool
		s    *server.Server
	}{
		{"ws", true, plain},
		{"tcp", false, plain},
		{"ws+metrics", true, metered},
		{"tcp+metrics", false, metered},
	} {
		s := tr.s
		tr := struct {
			name string
			ws   bool
			url  string
		}{tr.name, tr.ws, "tcp://" + s.TCPAddr().String()}
		if tr.ws {
			tr.url = "ws://" + s.WSAddr().String() + "/"
		}
		for _, ser := range []runtime.Serializer{runtime.JSON, runtime.Protobuf} {
			b.Run(tr.name+"/"+ser.Name(), func(b *testing.B) {
				gp := &benchGoPool{parent: b, addr: tr.url, ser: ser}
				addr := s.TCPAddr()
				if tr.ws {
					addr = s.WSAddr()
				}
				rp := &benchRawPool{parent: b, ser: ser, req: req, dial: func() (*benchRawConn, error) {
					return benchDialRawErr(addr, tr.ws, ser.Name())
				}}
				b.Run("goclient", func(b *testing.B) {
					ec := testingv1.NewEchoHandlerClient(gp.get(b, 1)[0])
					if res, err := ec.Echo(ctx, req); err != nil || res.Text != req.Text {
						b.Fatalf("echo: %v %v", res, err)
					}
					b.ReportAllocs()
					cpu := benchCPU()
					for b.Loop() {
						if _, err := ec.Echo(ctx, req); err != nil {
							b.Fatal(err)
						}
					}
					benchReportCPU(b, cpu)
				})
				b.Run("goclient-p64", func(b *testing.B) {
					cs := gp.get(b, benchParallelism(b, benchClients))
					var next atomic.Int64
					b.ReportAllocs()
					cpu := benchCPU()
					b.ResetTimer()
					b.RunParallel(func(pb *testing.PB) {
						ec := testingv1.NewEchoHandlerClient(cs[next.Add(1)-1])
						for pb.Next() {
							if _, err := ec.Echo(ctx, req); err != nil {
								b.Error(err)
								return
							}
						}
					})
					benchReportCPU(b, cpu)
				})
				b.Run("raw", func(b *testing.B) {
					c := rp.get(b, 1)[0]
					if err := c.roundTrip(); err != nil {
						b.Fatal(err)
					}
					b.ReportAllocs()
					cpu := benchCPU()
					for b.Loop() {
						if err := c.roundTrip(); err != nil {
							b.Fatal(err)
						}
					}
					benchReportCPU(b, cpu)
				})
				b.Run("raw-p64", func(b *testing.B) {
					cs := rp.get(b, benchParallelism(b, benchClients))
					benchRunRawParallel(b, cs)
				})
			})
		}
	}

	// The floor: the protobuf request and response bytes over bare TCP.
	dict, err := plain.Dict()
	if err != nil {
		b.Fatal(err)
	}
	code, _ := dict.Code(testingv1.EchoHandlerEchoRoute)
	reqBody, _ := runtime.Protobuf.Marshal(nil, req)
	reqPkg, _ := wire.AppendMessagePackage(nil, &wire.Message{Type: wire.Request, ID: 1, Compressed: true, RouteCode: code, Body: reqBody})
	respBody, _ := runtime.Protobuf.Marshal(nil, &testingv1.EchoResponse{Code: 200, Text: req.Text})
	respPkg, _ := wire.AppendMessagePackage(nil, &wire.Message{Type: wire.Response, ID: 1, Body: respBody})
	floor := benchStartFloor(b, respPkg)
	b.Run("tcp/floor", func(b *testing.B) {
		c := floor.dial(b, b, reqPkg)
		b.ReportAllocs()
		cpu := benchCPU()
		for b.Loop() {
			if err := c.roundTrip(); err != nil {
				b.Fatal(err)
			}
		}
		benchReportCPU(b, cpu)
	})
	var floorConns []*benchRawConn
	parent := b
	b.Run("tcp/floor-p64", func(b *testing.B) {
		n := benchParallelism(b, benchClients)
		for len(floorConns) < n {
			floorConns = append(floorConns, floor.dial(b, parent, reqPkg))
		}
		benchRunRawParallel(b, floorConns[:n])
	})
}

// benchRunRawParallel runs round trips on the raw clients cs, one goroutine
// each.
func benchRunRawParallel(b *testing.B, cs []*benchRawConn) {
	var next atomic.Int64
	b.ReportAllocs()
	cpu := benchCPU()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		c := cs[next.Add(1)-1]
		for pb.Next() {
			if err := c.roundTrip(); err != nil {
				b.Error(err)
				return
			}
		}
	})
	benchReportCPU(b, cpu)
}
