package bench

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/url"
	"strconv"
	"sync"
	"time"

	"github.com/pomelo-go/pomelo/runtime"
	"github.com/pomelo-go/pomelo/runtime/client"
)

// Routes are the routes of the chat demo's contract that the scenarios use.
// Their defaults are those of Pomelo's chatofpomelo-websocket demo, which
// this project's example/chat and the real Pomelo peer both serve.
type Routes struct {
	// Gate is asked {uid} and answers {code, host, port}: the connector to use.
	Gate string
	// Entry binds the session: {username, rid} -> {code: 200, ...}.
	Entry string
	// Echo answers its request body.
	Echo string
	// Send is {content, target: "*"}: pushes Push to the whole room.
	Send string
	// Push is the route of the room's messages, {msg, from, target}.
	Push string
}

// DefaultRoutes are the chat demo's routes.
var DefaultRoutes = Routes{
	Gate:  "gate.gateHandler.queryEntry",
	Entry: "connector.entryHandler.entry",
	Echo:  "chat.chatHandler.echo",
	Send:  "chat.chatHandler.send",
	Push:  "onChat",
}

// Target is the application under load and how clients reach it.
type Target struct {
	// URLs are frontend addresses ("ws://127.0.0.1:3010/", "tcp://127.0.0.1:3110");
	// client i uses URLs[i % len(URLs)]. Unused when Gate is set.
	URLs []string
	// Gate, when set, is a gate's address: each client asks it for its
	// connector (Routes.Gate with its uid) and connects there, with the
	// gate's scheme.
	Gate string
	// Routes are the routes used; zero fields take DefaultRoutes.
	Routes Routes
	// DialTimeout bounds connecting, the handshake and the entry of one
	// client (default 10 s).
	DialTimeout time.Duration
	// RequestTimeout bounds one request (default 10 s).
	RequestTimeout time.Duration
}

func (t *Target) defaults() {
	r := &t.Routes
	d := DefaultRoutes
	for _, p := range []struct {
		f *string
		v string
	}{{&r.Gate, d.Gate}, {&r.Entry, d.Entry}, {&r.Echo, d.Echo}, {&r.Send, d.Send}, {&r.Push, d.Push}} {
		if *p.f == "" {
			*p.f = p.v
		}
	}
	if t.DialTimeout <= 0 {
		t.DialTimeout = 10 * time.Second
	}
	if t.RequestTimeout <= 0 {
		t.RequestTimeout = 10 * time.Second
	}
}

// check validates the target's addresses.
func (t *Target) check() error {
	if t.Gate == "" && len(t.URLs) == 0 {
		return errors.New("no target: give a frontend URL or a gate")
	}
	addrs := t.URLs
	if t.Gate != "" {
		addrs = []string{t.Gate}
	}
	for _, a := range addrs {
		u, err := url.Parse(a)
		if err != nil || u.Host == "" {
			return fmt.Errorf("bad address %q: want ws://host:port/ or tcp://host:port", a)
		}
		switch u.Scheme {
		case "ws", "wss", "tcp", "tls":
		default:
			return fmt.Errorf("bad address %q: the scheme is ws, wss, tcp or tls", a)
		}
	}
	return nil
}

// Transport returns the transport clients use: "ws" or "tcp" (or wss, tls).
func (t *Target) Transport() string {
	a := t.Gate
	if a == "" && len(t.URLs) > 0 {
		a = t.URLs[0]
	}
	if u, err := url.Parse(a); err == nil {
		return u.Scheme
	}
	return ""
}

// String names the target in reports.
func (t *Target) String() string {
	if t.Gate != "" {
		return "gate " + t.Gate
	}
	if len(t.URLs) == 1 {
		return t.URLs[0]
	}
	return fmt.Sprint(t.URLs)
}

// Error kinds of a run, the keys of Result.Errors.
const (
	ErrKindConnect   = "connect"   // the TCP or WebSocket connection failed
	ErrKindHandshake = "handshake" // the server refused the handshake
	ErrKindGate      = "gate"      // the gate gave no connector
	ErrKindEntry     = "entry"     // the entry request failed
	ErrKindTimeout   = "timeout"   // a request got no response in time
	ErrKindClosed    = "closed"    // the connection ended (lost, kicked, heartbeat timeout)
	ErrKindResponse  = "response"  // an error response, or a response that does not match
)

// SetupError reports clients that could not connect or enter.
type SetupError struct {
	// Kind is the error kind of the first failure (ErrKind...).
	Kind string
	// Failed and Total are the clients that failed and the clients tried.
	Failed, Total int
	// Addr is the address of the first failure; Err is its error.
	Addr string
	Err  error
}

// Error implements error.
func (e *SetupError) Error() string {
	what := map[string]string{
		ErrKindConnect:   "cannot connect to",
		ErrKindHandshake: "handshake refused by",
		ErrKindGate:      "no connector from the gate",
		ErrKindEntry:     "entry refused by",
		ErrKindTimeout:   "no answer in time from",
	}[e.Kind]
	if what == "" {
		what = "failed at"
	}
	return fmt.Sprintf("%s %s: %v (%d of %d clients failed before the run gave up)", what, e.Addr, e.Err, e.Failed, e.Total)
}

// Unwrap returns the first failure's error.
func (e *SetupError) Unwrap() error { return e.Err }

// classify returns the error kind of a failed call.
func classify(err error) string {
	var hs *client.HandshakeError
	var re *runtime.Error
	var ke *client.KickError
	switch {
	case errors.As(err, &hs):
		return ErrKindHandshake
	case errors.Is(err, context.DeadlineExceeded):
		return ErrKindTimeout
	case errors.As(err, &re):
		return ErrKindResponse
	case errors.Is(err, client.ErrConnectionLost), errors.Is(err, client.ErrClosed),
		errors.Is(err, client.ErrHeartbeatTimeout), errors.Is(err, client.ErrProtocol),
		errors.As(err, &ke):
		return ErrKindClosed
	}
	return ErrKindConnect
}

// conn is one connected client.
type conn struct {
	c    *client.Client
	addr string
	user string
}

// entryReply is the part of the gate's and the entry's replies read here.
type entryReply struct {
	Code int    `json:"code"`
	Host string `json:"host"`
	Port int    `json:"port"`
}

// dialOne connects client i as user and, when rid is not "", enters room rid.
func (t *Target) dialOne(ctx context.Context, i int, user, rid string) (*conn, string, error) {
	ctx, cancel := context.WithTimeout(ctx, t.DialTimeout)
	defer cancel()
	addr := ""
	if t.Gate != "" {
		g, err := client.Dial(ctx, t.Gate)
		if err != nil {
			return nil, t.Gate, dialError(err)
		}
		body, _ := json.Marshal(map[string]string{"uid": user})
		resp, isErr, err := g.RequestRaw(ctx, t.Routes.Gate, body)
		g.Close()
		if err != nil {
			return nil, t.Gate, &kindError{kind: ErrKindGate, err: err}
		}
		var r entryReply
		if isErr || json.Unmarshal(resp, &r) != nil || r.Code != 200 || r.Host == "" || r.Port == 0 {
			return nil, t.Gate, gateError(resp)
		}
		u, _ := url.Parse(t.Gate)
		u.Host = net.JoinHostPort(r.Host, strconv.Itoa(r.Port))
		if u.Scheme == "ws" || u.Scheme == "wss" {
			u.Path = "/"
		}
		addr = u.String()
	} else {
		addr = t.URLs[i%len(t.URLs)]
	}
	c, err := client.Dial(ctx, addr)
	if err != nil {
		return nil, addr, dialError(err)
	}
	if rid != "" {
		body, _ := json.Marshal(map[string]string{"username": user, "rid": rid})
		resp, isErr, err := c.RequestRaw(ctx, t.Routes.Entry, body)
		if err == nil {
			var r entryReply
			if isErr || json.Unmarshal(resp, &r) != nil || r.Code != 200 {
				err = fmt.Errorf("the entry answered %s", truncate(resp, 200))
			}
		}
		if err != nil {
			err = &kindError{kind: ErrKindEntry, err: err}
			c.Close()
			return nil, addr, err
		}
	}
	return &conn{c: c, addr: addr, user: user}, addr, nil
}

// kindError is an error of a known kind.
type kindError struct {
	kind string
	err  error
}

func (e *kindError) Error() string { return e.err.Error() }
func (e *kindError) Unwrap() error { return e.err }

func gateError(resp []byte) error {
	return &kindError{kind: ErrKindGate, err: fmt.Errorf("the gate answered %s", truncate(resp, 200))}
}

// dialError tags a failed Dial: a refused handshake, a timeout, or a
// connection that could not be made.
func dialError(err error) error {
	kind := ErrKindConnect
	var hs *client.HandshakeError
	if errors.As(err, &hs) {
		kind = ErrKindHandshake
	} else if errors.Is(err, context.DeadlineExceeded) {
		kind = ErrKindTimeout
	}
	return &kindError{kind: kind, err: err}
}

func truncate(b []byte, n int) []byte {
	if len(b) > n {
		return append(b[:n:n], "..."...)
	}
	return b
}

// dialAll connects n clients, at most parallel at a time; users are
// prefix-i and enter room(i) when room is not nil. On any failure it closes
// what it opened and returns a *SetupError.
func (t *Target) dialAll(ctx context.Context, n, parallel int, prefix string, room func(i int) string) ([]*conn, error) {
	conns := make([]*conn, n)
	var (
		mu     sync.Mutex
		failed int
		first  *SetupError
		wg     sync.WaitGroup
	)
	sem := make(chan struct{}, max(parallel, 1))
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	for i := 0; i < n; i++ {
		select {
		case sem <- struct{}{}:
		case <-ctx.Done():
		}
		if ctx.Err() != nil {
			break
		}
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			defer func() { <-sem }()
			rid := ""
			if room != nil {
				rid = room(i)
			}
			c, addr, err := t.dialOne(ctx, i, fmt.Sprintf("%s-%d", prefix, i), rid)
			if err != nil {
				kind := classify(err)
				var ke *kindError
				if errors.As(err, &ke) {
					kind = ke.kind
				}
				mu.Lock()
				if first == nil || !errors.Is(err, context.Canceled) {
					failed++
				}
				if first == nil && ctx.Err() == nil {
					first = &SetupError{Kind: kind, Addr: addr, Err: err}
				}
				mu.Unlock()
				cancel() // fail fast: do not wait for every client to time out
				return
			}
			conns[i] = c
		}(i)
	}
	wg.Wait()
	if first == nil && ctx.Err() != nil {
		// Stopped from outside (Ctrl-C).
		closeAll(conns, parallel)
		return nil, ctx.Err()
	}
	if first != nil {
		closeAll(conns, parallel)
		first.Failed, first.Total = failed, n
		return nil, first
	}
	return conns, nil
}

// closeAll closes every client, parallel at a time.
func closeAll(conns []*conn, parallel int) {
	var wg sync.WaitGroup
	sem := make(chan struct{}, max(parallel, 1))
	for _, c := range conns {
		if c == nil {
			continue
		}
		sem <- struct{}{}
		wg.Add(1)
		go func() {
			defer wg.Done()
			c.c.Close()
			<-sem
		}()
	}
	wg.Wait()
}
