package channel_test

import (
	"context"
	"net"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/pomelo-go/pomelo/runtime"
	"github.com/pomelo-go/pomelo/runtime/channel"
	"github.com/pomelo-go/pomelo/runtime/session"
	"github.com/pomelo-go/pomelo/runtime/wire"
)

// fakeConn is a session.Conn that records the packages it is sent, or drops
// them.
type fakeConn struct {
	ser  runtime.Serializer
	drop bool

	mu     sync.Mutex
	sent   [][]byte
	closed bool
}

func (c *fakeConn) Send(pkgs []byte) error {
	if c.drop {
		return nil
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return runtime.Errorf(runtime.ErrClosed, "fake conn closed")
	}
	c.sent = append(c.sent, pkgs)
	return nil
}

func (c *fakeConn) Kick(string) { c.Close() }

func (c *fakeConn) Close() {
	c.mu.Lock()
	c.closed = true
	c.mu.Unlock()
}

func (c *fakeConn) RemoteAddr() net.Addr { return &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 1} }

func (c *fakeConn) Serializer() runtime.Serializer {
	if c.ser == nil {
		return runtime.JSON
	}
	return c.ser
}

// raw returns the Send arguments so far.
func (c *fakeConn) raw() [][]byte {
	c.mu.Lock()
	defer c.mu.Unlock()
	return slices.Clone(c.sent)
}

// pushed is a decoded PUSH message.
type pushed struct {
	Route string
	Body  string
}

// messages decodes every package the connection was sent.
func (c *fakeConn) messages(t testing.TB) []pushed {
	t.Helper()
	var out []pushed
	for _, b := range c.raw() {
		err := wire.SplitPackages(b, 0, func(pt wire.PackageType, body []byte) error {
			if pt != wire.TypeData {
				t.Errorf("package type %v, want DATA", pt)
				return nil
			}
			m, err := wire.DecodeMessage(body)
			if err != nil {
				return err
			}
			if m.Type != wire.Push {
				t.Errorf("message type %v, want PUSH", m.Type)
			}
			out = append(out, pushed{Route: m.Route, Body: string(m.Body)})
			return nil
		})
		if err != nil {
			t.Fatalf("decode sent bytes: %v", err)
		}
	}
	return out
}

// countingSerializer counts Marshal calls.
type countingSerializer struct {
	runtime.Serializer
	marshals atomic.Int64
}

func (s *countingSerializer) Marshal(dst []byte, m proto.Message) ([]byte, error) {
	s.marshals.Add(1)
	return s.Serializer.Marshal(dst, m)
}

// cluster is a set of frontends in one process, with a Delivery routing by
// frontend id to the right session service, as the cluster layer does over
// RPC, and counting its calls.
type cluster struct {
	t     testing.TB
	fes   map[string]*session.Service
	local map[string]channel.Delivery

	mu    sync.Mutex
	calls map[string]int
	uids  map[string][][]string // the uids of each call, per frontend
}

func newCluster(t testing.TB, frontends ...string) *cluster {
	cl := &cluster{
		t:     t,
		fes:   make(map[string]*session.Service),
		local: make(map[string]channel.Delivery),
		calls: make(map[string]int),
		uids:  make(map[string][][]string),
	}
	for _, fe := range frontends {
		svc := session.NewService(fe, session.AllowMany)
		cl.fes[fe] = svc
		cl.local[fe] = channel.LocalDelivery(svc)
	}
	return cl
}

// PushToUIDs implements channel.Delivery.
func (cl *cluster) PushToUIDs(ctx context.Context, frontendID, route string, msg proto.Message, uids []string) ([]string, error) {
	cl.mu.Lock()
	cl.calls[frontendID]++
	cl.uids[frontendID] = append(cl.uids[frontendID], slices.Clone(uids))
	cl.mu.Unlock()
	d, ok := cl.local[frontendID]
	if !ok {
		return slices.Clone(uids), runtime.Errorf(runtime.ErrUnavailable, "no frontend %q", frontendID)
	}
	return d.PushToUIDs(ctx, frontendID, route, msg, uids)
}

func (cl *cluster) callCounts() map[string]int {
	cl.mu.Lock()
	defer cl.mu.Unlock()
	m := make(map[string]int, len(cl.calls))
	for k, v := range cl.calls {
		m[k] = v
	}
	return m
}

func (cl *cluster) callUIDs(fe string) [][]string {
	cl.mu.Lock()
	defer cl.mu.Unlock()
	return slices.Clone(cl.uids[fe])
}

func (cl *cluster) resetCalls() {
	cl.mu.Lock()
	defer cl.mu.Unlock()
	clear(cl.calls)
	clear(cl.uids)
}

// login opens a session on frontend fe bound to uid and returns its
// connection.
func (cl *cluster) login(fe, uid string, ser runtime.Serializer) *fakeConn {
	cl.t.Helper()
	conn := &fakeConn{ser: ser}
	svc := cl.fes[fe]
	s := svc.Create(conn)
	if err := svc.Bind(s.ID(), uid); err != nil {
		cl.t.Fatalf("bind %s on %s: %v", uid, fe, err)
	}
	return conn
}

// eventually polls cond until it holds or a few seconds pass.
func eventually(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(time.Millisecond)
	}
}
