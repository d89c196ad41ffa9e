package node_test

import (
	"context"
	"os"
	goruntime "runtime"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	testingv1 "github.com/pomelo-go/pomelo/gen/pomelo/testing/v1"
	"github.com/pomelo-go/pomelo/internal/clustertest"
	"github.com/pomelo-go/pomelo/internal/node"
	"github.com/pomelo-go/pomelo/internal/server"
	"github.com/pomelo-go/pomelo/runtime"
	"github.com/pomelo-go/pomelo/runtime/client"
)

// benchEcho answers Echo with its text and nothing else.
type benchEcho struct {
	testingv1.UnimplementedEchoHandlerServer
}

func (benchEcho) Echo(_ context.Context, _ runtime.Session, r *testingv1.EchoRequest) (*testingv1.EchoResponse, error) {
	return &testingv1.EchoResponse{Code: 200, Text: r.Text}, nil
}

// benchCPU returns the process's CPU time (user + system).
func benchCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

func benchReportCPU(b *testing.B, start time.Duration) {
	if b.N > 0 {
		b.ReportMetric(float64(benchCPU()-start)/float64(b.N), "cpu-ns/op")
	}
}

// benchMallocs returns how many heap objects the process allocated so far.
func benchMallocs() uint64 {
	var ms goruntime.MemStats
	goruntime.ReadMemStats(&ms)
	return ms.Mallocs
}

// benchSyscalls returns how many read and write system calls the process
// made so far (Linux's /proc/self/io), or -1 where that is not known.
func benchSyscalls() int64 {
	b, err := os.ReadFile("/proc/self/io")
	if err != nil {
		return -1
	}
	var n int64
	found := 0
	for _, line := range strings.Split(string(b), "\n") {
		k, v, ok := strings.Cut(line, ": ")
		if ok && (k == "syscr" || k == "syscw") {
			c, err := strconv.ParseInt(v, 10, 64)
			if err != nil {
				return -1
			}
			n += c
			found++
		}
	}
	if found != 2 {
		return -1
	}
	return n
}

// benchCost is what one message cost the whole process in a sub-benchmark:
// CPU time, heap allocations, and read and write system calls (a figure
// the machine's noise does not move).
type benchCost struct{ cpu, allocs, syscalls float64 }

// benchMeasure starts measuring a sub-benchmark's cost per message.
func benchMeasure() func(b *testing.B) benchCost {
	cpu, mallocs, calls := benchCPU(), benchMallocs(), benchSyscalls()
	return func(b *testing.B) benchCost {
		if b.N == 0 {
			return benchCost{}
		}
		c := benchCost{
			cpu:      float64(benchCPU()-cpu) / float64(b.N),
			allocs:   float64(benchMallocs()-mallocs) / float64(b.N),
			syscalls: -1,
		}
		b.ReportMetric(c.cpu, "cpu-ns/msg")
		if now := benchSyscalls(); calls >= 0 && now >= 0 {
			c.syscalls = float64(now-calls) / float64(b.N)
			b.ReportMetric(c.syscalls, "rw-syscalls/msg")
		}
		return c
	}
}

// benchCompare reports a forwarded variant's cost beside the same run's
// local handling of the same request: the ratio of their CPU per message
// (x-local-cpu), and the CPU, allocations and read/write system calls the
// forward hop adds (fwd-cpu-ns/msg, fwd-allocs/msg, fwd-syscalls/msg).
func benchCompare(b *testing.B, c, local benchCost) {
	if local.cpu <= 0 {
		return
	}
	b.ReportMetric(c.cpu/local.cpu, "x-local-cpu")
	b.ReportMetric(c.cpu-local.cpu, "fwd-cpu-ns/msg")
	b.ReportMetric(c.allocs-local.allocs, "fwd-allocs/msg")
	if c.syscalls >= 0 && local.syscalls >= 0 {
		b.ReportMetric(c.syscalls-local.syscalls, "fwd-syscalls/msg")
	}
}

// benchClients is how many concurrent clients the parallel variants use.
const benchClients = 64

// BenchmarkForward measures a client request/response round trip of
// echo.echoHandler.echo over loopback TCP with the Go client and the
// protobuf serializer, handled three ways in the same run:
//
//   - local: on an "echo" frontend that runs the handler itself;
//   - stream: on a "connector" frontend that forwards it to an "echo"
//     backend over the long-lived Forward stream (the default);
//   - unary: the same frontend and backend, one ForwardMessage call per
//     message (node.SetForwardMode(node.ForwardUnary)).
//
// Every server is a cluster member (testkit), so the local path carries
// the same cluster wiring. The plain variants send one request at a time;
// -p64 ones run 64 clients, one request in flight each (throughput).
// cpu-ns/msg is the CPU time of the whole process (client, frontend and
// backend) per request. The forwarded variants also report themselves
// against the local variant of the same run (benchCompare): x-local-cpu,
// their CPU per message over local's, and fwd-cpu-ns/msg and
// fwd-allocs/msg, what the forward hop adds to a message. Run local with
// them (the default), or those are not reported.
func BenchmarkForward(b *testing.B) {
	configure := func(cfg *server.Config) { cfg.Connector.Heartbeat = 10 * time.Minute }
	setup := func(m *clustertest.Member) error {
		if m.Info.Type == "echo" {
			return testingv1.RegisterEchoHandlerServer(m.Server, benchEcho{})
		}
		return nil
	}
	local := clustertest.Start(b, clustertest.Options{
		Servers:   []clustertest.Spec{{Type: "echo", Frontend: true}},
		Configure: configure, Setup: setup,
	})
	fwd := clustertest.Start(b, clustertest.Options{
		Servers:   []clustertest.Spec{{Type: "connector", Frontend: true}, {Type: "echo"}},
		Configure: configure, Setup: setup,
	})
	fe := fwd.Members("connector")[0]
	parent := b
	pools := map[*clustertest.Member][]*client.Client{}
	clients := func(b *testing.B, m *clustertest.Member, n int) []*client.Client {
		for len(pools[m]) < n {
			c, err := client.Config{Serializer: runtime.Protobuf}.Dial(context.Background(), m.TCPURL())
			if err != nil {
				b.Fatal(err)
			}
			parent.Cleanup(func() { c.Close() })
			pools[m] = append(pools[m], c)
		}
		return pools[m][:n]
	}
	req := &testingv1.EchoRequest{Text: "hello, pomelo"}
	ctx := context.Background()
	var localC, localP benchCost // the local variants' last results
	for _, v := range []struct {
		name string
		m    *clustertest.Member
		mode node.ForwardMode
	}{
		{"local", local.Members("echo")[0], node.ForwardStream},
		{"stream", fe, node.ForwardStream},
		{"unary", fe, node.ForwardUnary},
	} {
		v := v
		v.m.Node.SetForwardMode(v.mode)
		b.Run(v.name, func(b *testing.B) {
			ec := testingv1.NewEchoHandlerClient(clients(b, v.m, 1)[0])
			if res, err := ec.Echo(ctx, req); err != nil || res.Text != req.Text {
				b.Fatalf("echo: %v %v", res, err)
			}
			b.ReportAllocs()
			measure := benchMeasure()
			for b.Loop() {
				if _, err := ec.Echo(ctx, req); err != nil {
					b.Fatal(err)
				}
			}
			c := measure(b)
			if v.name == "local" {
				localC = c
			} else {
				benchCompare(b, c, localC)
			}
		})
		b.Run(v.name+"-p64", func(b *testing.B) {
			procs := goruntime.GOMAXPROCS(0)
			p := max(1, (benchClients+procs-1)/procs)
			b.SetParallelism(p)
			cs := clients(b, v.m, p*procs)
			var next atomic.Int64
			b.ReportAllocs()
			measure := benchMeasure()
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
			c := measure(b)
			if v.name == "local" {
				localP = c
			} else {
				benchCompare(b, c, localP)
			}
		})
	}
}
