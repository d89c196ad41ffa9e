package node

import (
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
type guardListener struct {
	net.Listener
	window      time.Duration
	maxFailures int32
}

func (l *guardListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	g := &guardConn{Conn: c, maxFailures: l.maxFailures}
	g.timer.Store(time.AfterFunc(l.window, func() {
		if !g.authed.Load() {
			g.Close()
		}
	}))
	return g, nil
}

// guardConn is an RPC connection that must authenticate to stay open. Once
// it has, nothing limits its lifetime but the server's idle timeout: the
// long-lived forward and watch streams run on it.
type guardConn struct {
	net.Conn
	timer       atomic.Pointer[time.Timer] // set once, at accept
	authed      atomic.Bool
	failures    atomic.Int32
	maxFailures int32
	closeOnce   sync.Once
	closeErr    error
}

// authenticated records a request that carried the cluster secret.
func (c *guardConn) authenticated() {
	if !c.authed.Load() {
		c.authed.Store(true)
		c.stopTimer()
	}
}

// failed records a request without the secret; it reports whether the
// connection has failed too often and must be closed.
func (c *guardConn) failed() bool { return c.failures.Add(1) >= c.maxFailures }

func (c *guardConn) Close() error {
	c.closeOnce.Do(func() {
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
