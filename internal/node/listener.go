package node

import (
	"bufio"
	"context"
	"crypto/tls"
	"net"
	"sync"
	"sync/atomic"
	"time"
)

// Defaults of the RPC listener's limits (see Config).
const (
	defaultAuthTimeout          = 10 * time.Second
	defaultMaxAuthFailures      = 3
	defaultRPCIdleTimeout       = 2 * time.Minute
	defaultMaxConcurrentStreams = 250
)

// guardListener hands out guardConns: connections that are closed unless
// they complete an authenticated request within the auth window, or once
// they have sent too many unauthenticated ones.
//
// It also lets the server's graceful shutdown finish: http.Server.Shutdown
// sends HTTP/2 connections their GOAWAY only if they are already served
// when it begins, and waits for the others as for active ones. A connection
// accepted just before the listener closed, whose HTTP/2 serving starts a
// moment later, would hold Shutdown until its ctx ends. drain closes the
// connections that have not authenticated (they carry no work) and refuses
// any later one, so only connections Shutdown knows about remain.
type guardListener struct {
	net.Listener
	window      time.Duration
	maxFailures int32

	mu       sync.Mutex
	conns    map[*guardConn]struct{} // not yet authenticated
	draining bool
}

func (l *guardListener) Accept() (net.Conn, error) {
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		g := &guardConn{Conn: c, l: l, maxFailures: l.maxFailures, br: bufio.NewReaderSize(c, connReadBuffer)}
		l.mu.Lock()
		if l.draining {
			l.mu.Unlock()
			c.Close()
			continue
		}
		if l.conns == nil {
			l.conns = map[*guardConn]struct{}{}
		}
		l.conns[g] = struct{}{}
		l.mu.Unlock()
		g.timer.Store(time.AfterFunc(l.window, func() {
			if !g.authed.Load() {
				g.Close()
			}
		}))
		return g, nil
	}
}

// drain, called before the server's Shutdown, closes the connections that
// have not authenticated and every connection accepted from now on.
func (l *guardListener) drain() {
	l.mu.Lock()
	l.draining = true
	conns := make([]*guardConn, 0, len(l.conns))
	for g := range l.conns {
		conns = append(conns, g)
	}
	l.mu.Unlock()
	for _, g := range conns {
		g.Close()
	}
}

// guardConn is an RPC connection that must authenticate to stay open. Once
// it has, nothing limits its lifetime but the server's idle timeout: the
// long-lived forward and watch streams run on it.
type guardConn struct {
	net.Conn
	br          *bufio.Reader // reads of the connection, buffered
	l           *guardListener
	timer       atomic.Pointer[time.Timer] // set once, at accept
	authed      atomic.Bool
	failures    atomic.Int32
	maxFailures int32
	closeOnce   sync.Once
	closeErr    error
}

// connReadBuffer is the read buffer of an RPC connection. Go's HTTP/2
// server reads each frame's header and payload from the connection as two
// reads: buffered, a forward stream's frame costs one system call, and
// frames that arrive together share it.
const connReadBuffer = 16 << 10

// Read reads from the connection through its buffer.
func (c *guardConn) Read(p []byte) (int, error) { return c.br.Read(p) }

// authenticated records a request that carried the cluster secret. It
// reports false when the listener drains and the connection had not
// authenticated before: the connection is being closed, the request must
// not run.
func (c *guardConn) authenticated() bool {
	if c.authed.Load() {
		return true
	}
	c.l.mu.Lock()
	if c.l.draining {
		c.l.mu.Unlock()
		return false
	}
	delete(c.l.conns, c)
	c.authed.Store(true)
	c.l.mu.Unlock()
	c.stopTimer()
	return true
}

// failed records a request without the secret; it reports whether the
// connection has failed too often and must be closed.
func (c *guardConn) failed() bool { return c.failures.Add(1) >= c.maxFailures }

func (c *guardConn) Close() error {
	c.closeOnce.Do(func() {
		c.l.mu.Lock()
		delete(c.l.conns, c)
		c.l.mu.Unlock()
		c.stopTimer()
		c.closeErr = c.Conn.Close()
	})
	return c.closeErr
}

// stopTimer stops the auth window's timer; its callback may run before
// Accept stored it, and then finds none.
func (c *guardConn) stopTimer() {
	if t := c.timer.Load(); t != nil {
		t.Stop()
	}
}

type guardConnKey struct{}

// withGuardConn is the RPC server's ConnContext: it makes the connection's
// guard reachable from its requests.
func withGuardConn(ctx context.Context, c net.Conn) context.Context {
	if tc, ok := c.(*tls.Conn); ok {
		c = tc.NetConn()
	}
	if g, ok := c.(*guardConn); ok {
		return context.WithValue(ctx, guardConnKey{}, g)
	}
	return ctx
}

// guardConnFrom returns the guard of a request's connection, if any.
func guardConnFrom(ctx context.Context) *guardConn {
	g, _ := ctx.Value(guardConnKey{}).(*guardConn)
	return g
}
