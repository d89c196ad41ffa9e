package node_test

import (
	"context"
	"fmt"
	"net"
	"os"
	goruntime "runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	testingv1 "github.com/pomelo-go/pomelo/gen/pomelo/testing/v1"
	"github.com/pomelo-go/pomelo/internal/clustertest"
	"github.com/pomelo-go/pomelo/internal/server"
	"github.com/pomelo-go/pomelo/runtime"
	"github.com/pomelo-go/pomelo/runtime/session"
	"github.com/pomelo-go/pomelo/runtime/wire"
)

// benchPushSlots is how many pushes the -p8 variants keep in flight: each
// slot's push carries the slot's digit as its last text byte, so that raw
// clients tell the slots apart without decoding.
const benchPushSlots = 8

// benchPushClient is a raw TCP client that reads packages into a reused
// buffer and counts each push towards its slot's WaitGroup: it allocates
// nothing per push, so the allocations measured are the servers'.
type benchPushClient struct {
	nc net.Conn
	rd *wire.Reader
}

func benchDialPush(addr string, ser string) (*benchPushClient, error) {
	nc, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		return nil, err
	}
	c := &benchPushClient{nc: nc, rd: wire.NewReader(nc, 0)}
	nc.SetDeadline(time.Now().Add(10 * time.Second))
	hs, _ := wire.AppendPackage(nil, wire.TypeHandshake, fmt.Appendf(nil,
		`{"sys":{"type":"bench-raw","version":"0.0.1","protoVersion":0,"serializer":%q,"rsa":{}},"user":{}}`, ser))
	if _, err := nc.Write(hs); err != nil {
		nc.Close()
		return nil, err
	}
	if t, _, err := c.rd.Next(); err != nil || t != wire.TypeHandshake {
		nc.Close()
		return nil, fmt.Errorf("handshake reply %v: %v", t, err)
	}
	if _, err := nc.Write(wire.HandshakeAckPackage); err != nil {
		nc.Close()
		return nil, err
	}
	if t, _, err := c.rd.Next(); err != nil || t != wire.TypeHeartbeat {
		nc.Close()
		return nil, fmt.Errorf("no heartbeat after the ack: %v %v", t, err)
	}
	nc.SetDeadline(time.Time{})
	return c, nil
}

// read counts each push: slot = the body's byte at back from its end.
func (c *benchPushClient) read(back int, slots *[benchPushSlots]sync.WaitGroup) {
	for {
		t, body, err := c.rd.Next()
		if err != nil {
			return
		}
		if t == wire.TypeData && len(body) >= back {
			if s := int(body[len(body)-back] - '0'); s >= 0 && s < benchPushSlots {
				slots[s].Done()
			}
		}
	}
}

// benchWrites returns the write(2) calls the process made so far (Linux's
// syscw), or -1 where /proc/self/io cannot be read.
func benchWrites() int64 {
	b, err := os.ReadFile("/proc/self/io")
	if err != nil {
		return -1
	}
	for _, l := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(l, "syscw: "); ok {
			n, _ := strconv.ParseInt(v, 10, 64)
			return n
		}
	}
	return -1
}

// BenchmarkPushCrossServer pushes one message to a room of 1,000 (and 50)
// users whose raw TCP clients are on a "connector" frontend, from two
// places in the same run:
//
//   - local: the frontend itself (PushToFrontend to its own id: straight
//     into the session service, as a channel on the frontend does);
//   - remote: a "chat" backend, over the cluster transport to the frontend.
//
// An iteration is one push, done when every client has read it. The plain
// variants have one push in flight; -p8 ones keep 8 in flight (8
// goroutines, one slot each), as the chat fan-out does under load.
// cpu-ns/delivery is the process's CPU time (clients, frontend, backend)
// per push received by one client, allocs/delivery the process's heap
// allocations per delivery (the raw clients allocate none), writes/delivery
// the process's write(2) calls per delivery: below 1 when connection
// writers coalesce pushes into one write. remote minus local is what the
// hop between servers costs.
func BenchmarkPushCrossServer(b *testing.B) {
	c := clustertest.Start(b, clustertest.Options{
		Servers:   []clustertest.Spec{{Type: "connector", Frontend: true}, {Type: "chat"}},
		Configure: func(cfg *server.Config) { cfg.Connector.Heartbeat = 10 * time.Minute },
	})
	fe, be := c.Members("connector")[0], c.Members("chat")[0]
	for _, ser := range []string{runtime.SerializerJSON, runtime.SerializerProtobuf} {
		back := 1 // protobuf: the text is the body's last bytes
		if ser == runtime.SerializerJSON {
			back = 3 // ...3"}
		}
		for _, fanout := range []int{1000, 50, 1} {
			var slots [benchPushSlots]sync.WaitGroup
			uids := benchPushRoom(b, fe, ser, fanout, back, &slots)
			for _, v := range []struct {
				name string
				m    *clustertest.Member
			}{{"local", fe}, {"remote", be}} {
				for _, inFlight := range []int{1, benchPushSlots} {
					name := fmt.Sprintf("%s/%s-%d", ser, v.name, fanout)
					if inFlight > 1 {
						name += fmt.Sprintf("-p%d", inFlight)
					}
					b.Run(name, func(b *testing.B) {
						benchPushRun(b, v.m, fe.Info.ID, uids, inFlight, &slots)
					})
				}
			}
		}
	}
}

// benchPushRoom dials fanout clients to fe with serializer ser and binds
// their sessions to fresh uids, which it returns.
func benchPushRoom(b *testing.B, fe *clustertest.Member, ser string, fanout, back int, slots *[benchPushSlots]sync.WaitGroup) []string {
	b.Helper()
	before := map[uint64]bool{}
	fe.Server.Sessions().Range(func(s *session.Session) bool { before[s.ID()] = true; return true })
	clients := make([]*benchPushClient, fanout)
	var wg sync.WaitGroup
	var mu sync.Mutex
	var first error
	next := make(chan int)
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range next {
				cl, err := benchDialPush(fe.Server.TCPAddr().String(), ser)
				mu.Lock()
				if err != nil && first == nil {
					first = err
				}
				mu.Unlock()
				clients[i] = cl
			}
		}()
	}
	for i := range clients {
		next <- i
	}
	close(next)
	wg.Wait()
	for _, cl := range clients {
		if cl != nil {
			b.Cleanup(func() { cl.nc.Close() })
			go cl.read(back, slots)
		}
	}
	if first != nil {
		b.Fatal(first)
	}
	var uids []string
	fe.Server.Sessions().Range(func(s *session.Session) bool {
		if !before[s.ID()] {
			uid := fmt.Sprintf("%s-%d-%d", ser, fanout, len(uids))
			if err := fe.Server.Sessions().Bind(s.ID(), uid); err != nil {
				b.Fatal(err)
			}
			uids = append(uids, uid)
		}
		return true
	})
	if len(uids) != fanout {
		b.Fatalf("%d new sessions, want %d", len(uids), fanout)
	}
	return uids
}

func benchPushRun(b *testing.B, from *clustertest.Member, frontendID string, uids []string, inFlight int, slots *[benchPushSlots]sync.WaitGroup) {
	msgs := make([]*testingv1.EchoEvent, inFlight)
	for i := range msgs {
		msgs[i] = &testingv1.EchoEvent{Text: "a push to everyone in the room " + strconv.Itoa(i)}
	}
	ctx := context.Background()
	push := func(slot int) {
		slots[slot].Add(len(uids))
		failed, err := from.Node.PushToFrontend(ctx, frontendID, testingv1.EchoPushOnEchoRoute, msgs[slot], uids)
		if err != nil || len(failed) > 0 {
			b.Errorf("push: %d failed: %v", len(failed), err)
			slots[slot].Add(-len(uids)) // taken as not delivered
			return
		}
		slots[slot].Wait()
	}
	push(0) // the stream is open and the clients have read one push
	var ms0, ms1 goruntime.MemStats
	goruntime.ReadMemStats(&ms0)
	writes := benchWrites()
	cpu := benchCPU()
	b.ReportAllocs()
	b.ResetTimer()
	if inFlight == 1 {
		for range b.N {
			push(0)
		}
	} else {
		var n atomic.Int64
		var wg sync.WaitGroup
		for s := range inFlight {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for n.Add(1) <= int64(b.N) {
					push(s)
				}
			}()
		}
		wg.Wait()
	}
	b.StopTimer()
	cpuUsed := benchCPU() - cpu
	writes = benchWrites() - writes
	goruntime.ReadMemStats(&ms1)
	deliveries := float64(b.N) * float64(len(uids))
	b.ReportMetric(float64(cpuUsed.Nanoseconds())/deliveries, "cpu-ns/delivery")
	b.ReportMetric(float64(ms1.Mallocs-ms0.Mallocs)/deliveries, "allocs/delivery")
	if writes >= 0 {
		b.ReportMetric(float64(writes)/deliveries, "writes/delivery")
	}
}
