package client

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"time"

	"github.com/coder/websocket"

	"github.com/pomelo-go/pomelo/runtime/wire"
)

// State is the connection state of a Client, reported to Config.OnState.
type State int

// The states of a Client (docs/PROTOCOL.md section 10).
const (
	// StateConnected: Dial connected, with a new session.
	StateConnected State = iota + 1
	// StateReconnecting: the connection of a resumable session broke; the client is dialling
	// again with backoff.
	StateReconnecting
	// StateResumed: a new connection continues the session: every response and push is
	// delivered once, in order, and the unanswered requests were sent again.
	StateResumed
	// StateLost: the session is gone. Either the server refused the resume (the client is
	// connected again, with a new session: pending requests failed with ErrSessionLost, the
	// application logs in again), or the client gave up reconnecting (Done is closed).
	StateLost
)

// String returns the state's name.
func (s State) String() string {
	switch s {
	case StateConnected:
		return "connected"
	case StateReconnecting:
		return "reconnecting"
	case StateResumed:
		return "resumed"
	case StateLost:
		return "lost"
	}
	return fmt.Sprintf("State(%d)", int(s))
}

// ErrSessionLost fails the requests pending when the server refused to resume the session: it
// was closed (its window ended, it was kicked, the server restarted) or it belongs to another
// server.
var ErrSessionLost = errors.New("pomelo client: session lost")

// statusGaveUp is the WebSocket close code of a connection the client gives up on itself.
const statusGaveUp websocket.StatusCode = 4000

// Defaults of the reconnection fields of Config.
const (
	// DefaultReconnectMinDelay is the default Config.ReconnectMinDelay.
	DefaultReconnectMinDelay = 100 * time.Millisecond
	// DefaultReconnectMaxDelay is the default Config.ReconnectMaxDelay.
	DefaultReconnectMaxDelay = 5 * time.Second
	// DefaultReconnectTimeout is the default Config.ReconnectTimeout.
	DefaultReconnectTimeout = 30 * time.Second
)

// report calls Config.OnState.
func (c *Client) report(s State) {
	if c.opts.onState != nil {
		c.opts.onState(s)
	}
}

// waitConnected waits while the client reconnects.
func (c *Client) waitConnected(ctx context.Context) error {
	c.mu.Lock()
	ch, up := c.connected, c.cur != nil
	c.mu.Unlock()
	if up {
		return nil
	}
	select {
	case <-ch:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	case <-c.done:
		return c.Err()
	}
}

// reconnect dials again after connection k of the session broke for cause, with exponential
// backoff and jitter, until a connection is up (resumed or not) or ReconnectTimeout has passed
// (the Client is then finished with cause).
func (c *Client) reconnect(k *cconn, cause error) {
	c.stateMu.Lock()
	c.report(StateReconnecting)
	c.stateMu.Unlock()
	// k's reader may still be going through packages it had read (k ended on a failed write,
	// or the heartbeat timeout): what it delivers is counted in the resume request.
	select {
	case <-k.readDone:
	case <-c.life.Done():
		return
	}
	deadline := time.Now().Add(c.opts.reconnectTimeout)
	delay := c.opts.minDelay
	for attempt := 0; ; attempt++ {
		if attempt > 0 {
			// Full jitter over the upper half: [delay/2, delay).
			wait := delay/2 + rand.N(delay/2+1)
			t := time.NewTimer(min(wait, max(0, time.Until(deadline))))
			select {
			case <-t.C:
			case <-c.life.Done():
				t.Stop()
				return
			}
			delay = min(2*delay, c.opts.maxDelay)
		}
		c.mu.Lock()
		req := &wire.ResumeRequest{Token: c.token, Received: c.received.Load()}
		c.mu.Unlock()
		ctx, cancel := context.WithDeadline(c.life, deadline)
		k, hs, err := c.connect(ctx, req)
		cancel()
		if err == nil {
			c.resumed(k, hs)
			return
		}
		var he *HandshakeError
		if c.life.Err() != nil {
			return
		}
		if errors.As(err, &he) || !time.Now().Before(deadline) {
			c.stateMu.Lock()
			c.shutdown(fmt.Errorf("%w: gave up reconnecting (%w) after %w", ErrConnectionLost, err, cause), false)
			c.report(StateLost)
			c.stateMu.Unlock()
			return
		}
	}
}

// resumed makes k, whose handshake reply is hs, the connection of the client: after a resume
// it sends again every request not answered yet, in id order; otherwise the pending requests
// fail with ErrSessionLost.
func (c *Client) resumed(k *cconn, hs *wire.HandshakeResponse) {
	ok := hs.Sys != nil && hs.Sys.Resume != nil && hs.Sys.Resume.Resumed
	c.stateMu.Lock()
	c.mu.Lock()
	if c.closing {
		c.mu.Unlock()
		c.stateMu.Unlock()
		k.end(ErrClosed, websocket.StatusNormalClosure)
		return
	}
	c.cur = k
	c.token = ""
	if hs.Sys != nil && hs.Sys.Resume != nil {
		c.token = hs.Sys.Resume.Token
	}
	var again [][]byte
	var lost []*call
	if ok {
		ids := make([]uint64, 0, len(c.pending))
		for id := range c.pending {
			ids = append(ids, id)
		}
		slices.Sort(ids)
		for _, id := range ids {
			again = append(again, c.pending[id].pkg)
		}
	} else {
		for id, cl := range c.pending {
			lost = append(lost, cl)
			delete(c.pending, id)
		}
	}
	close(c.connected)
	c.connected = make(chan struct{})
	c.mu.Unlock()
	for _, cl := range lost {
		cl.ch <- result{err: ErrSessionLost}
	}
	for _, pkg := range again {
		if c.writeOn(context.Background(), k, pkg) != nil {
			break // broke again: the next resume sends them
		}
	}
	if ok {
		c.report(StateResumed)
	} else {
		c.report(StateLost)
	}
	c.stateMu.Unlock()
	c.inUse(k)
}
