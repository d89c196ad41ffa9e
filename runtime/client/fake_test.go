package client_test

import (
	"bytes"
	"compress/gzip"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/coder/websocket"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/pomelo-go/pomelo/runtime"
	"github.com/pomelo-go/pomelo/runtime/wire"
)

// This file holds a small fake Pomelo frontend, written against the protocol document, for
// testing the client without the real server. Requests are answered by the last segment of
// their route (the method), so that a route outside the dictionary behaves as one inside.

// handlerRoutes are the routes of the fake's dictionary; onPush is its one push route.
var handlerRoutes = []string{
	"test.h.appfail", "test.h.echo", "test.h.fail", "test.h.gzip", "test.h.kick", "test.h.late",
	"test.h.push", "test.h.pushmany", "test.h.route", "test.h.silent", "test.h.drop",
}

// fakeConfig tunes the fake server.
type fakeConfig struct {
	code             int             // handshake reply code; 0 means 200
	heartbeat        int             // sys.heartbeat; 0 means 30
	noHeartbeatReply bool            // do not answer client heartbeats
	serializer       string          // force sys.serializer in the reply
	user             json.RawMessage // reply's user
}

// fakeServer is a running fake frontend.
type fakeServer struct {
	addr string
	cfg  fakeConfig
	dict *wire.Dict

	handshakes chan *wire.HandshakeRequest // every client handshake
	received   chan wire.Message           // every DATA message, route decompressed
	heartbeats chan time.Time              // when each client heartbeat arrived

	mu     sync.Mutex
	conns  map[fakeConn]bool
	closed bool
	wg     sync.WaitGroup
	stop   func()
}

// fakeConn is one server-side connection.
type fakeConn interface {
	send(b []byte) error // one frame
	next() (wire.PackageType, []byte, error)
	drop()  // close at once
	close() // close gracefully
}

// startFakeServer starts a fake server; transport is "ws" or "tcp".
func startFakeServer(transport string, cfg fakeConfig) *fakeServer {
	if cfg.heartbeat == 0 {
		cfg.heartbeat = 30
	}
	dict, err := wire.NewDict(handlerRoutes, []string{"onPush"})
	if err != nil {
		panic(err)
	}
	s := &fakeServer{
		cfg:        cfg,
		dict:       dict,
		handshakes: make(chan *wire.HandshakeRequest, 100),
		received:   make(chan wire.Message, 10000),
		heartbeats: make(chan time.Time, 1000),
		conns:      make(map[fakeConn]bool),
	}
	switch transport {
	case "ws":
		hs := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			c, err := websocket.Accept(w, r, nil)
			if err != nil {
				return
			}
			c.SetReadLimit(1 << 20)
			s.serve(&wsConn{c: c})
		}))
		s.addr = "ws://" + strings.TrimPrefix(hs.URL, "http://") + "/any/path"
		s.stop = hs.Close
	case "tcp":
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			panic(err)
		}
		s.addr = "tcp://" + ln.Addr().String()
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			for {
				c, err := ln.Accept()
				if err != nil {
					return
				}
				s.wg.Add(1)
				go func() {
					defer s.wg.Done()
					s.serve(&tcpConn{c: c, r: wire.NewReader(c, 1<<20)})
				}()
			}
		}()
		s.stop = func() { ln.Close() }
	default:
		panic("unknown transport " + transport)
	}
	return s
}

// Close drops every connection and stops the server.
func (s *fakeServer) Close() {
	s.mu.Lock()
	s.closed = true
	for c := range s.conns {
		c.drop()
	}
	s.mu.Unlock()
	s.stop()
	s.wg.Wait()
}

func (s *fakeServer) track(c fakeConn) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return false
	}
	s.conns[c] = true
	return true
}

func (s *fakeServer) untrack(c fakeConn) {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.conns, c)
}

// serve runs one connection through the handshake and then answers it until it ends.
func (s *fakeServer) serve(c fakeConn) {
	if !s.track(c) {
		c.drop()
		return
	}
	defer s.untrack(c)
	defer c.drop()

	t, body, err := c.next()
	if err != nil || t != wire.TypeHandshake {
		return
	}
	req, err := wire.ParseHandshake(body)
	if err != nil {
		c.send(pkg(wire.TypeHandshake, (&wire.HandshakeResponse{Code: wire.CodeBadHandshake}).Marshal()))
		return
	}
	s.handshakes <- req
	if s.cfg.code != 0 && s.cfg.code != wire.CodeOK {
		c.send(pkg(wire.TypeHandshake, (&wire.HandshakeResponse{Code: s.cfg.code}).Marshal()))
		c.close()
		return
	}
	ser, err := runtime.SerializerByName(req.Sys.Serializer)
	if err != nil {
		c.send(pkg(wire.TypeHandshake, (&wire.HandshakeResponse{Code: wire.CodeBadHandshake}).Marshal()))
		return
	}
	sys := &wire.HandshakeResponseSys{
		Heartbeat:   s.cfg.heartbeat,
		Dict:        s.dict.Map(),
		UseDict:     true,
		DictVersion: s.dict.Version(),
		Serializer:  ser.Name(),
	}
	if req.Sys.DictVersion == s.dict.Version() {
		sys.Dict = nil
	}
	if s.cfg.serializer != "" {
		sys.Serializer = s.cfg.serializer
	}
	reply := &wire.HandshakeResponse{Code: wire.CodeOK, Sys: sys, User: s.cfg.user}
	if c.send(pkg(wire.TypeHandshake, reply.Marshal())) != nil {
		return
	}
	if t, _, err := c.next(); err != nil || t != wire.TypeHandshakeAck {
		return
	}
	if c.send(wire.HeartbeatPackage) != nil {
		return
	}
	for {
		t, body, err := c.next()
		if err != nil {
			return
		}
		switch t {
		case wire.TypeHeartbeat:
			s.heartbeats <- time.Now()
			if !s.cfg.noHeartbeatReply {
				c.send(wire.HeartbeatPackage)
			}
		case wire.TypeData:
			m, err := wire.DecodeMessage(body)
			if err != nil {
				return
			}
			if m.Compressed {
				r, ok := s.dict.Route(m.RouteCode)
				if !ok {
					return
				}
				m.Route = r
			}
			m.Body = bytes.Clone(m.Body)
			s.received <- m
			if m.Type == wire.Request && !s.answer(c, ser, m) {
				return
			}
		default:
			return
		}
	}
}

// answer handles a request by its method; false ends the connection.
func (s *fakeServer) answer(c fakeConn, ser runtime.Serializer, m wire.Message) bool {
	resp := func(body []byte, isErr bool) []byte {
		return dataPkg(wire.Message{Type: wire.Response, ID: m.ID, Error: isErr, Body: body})
	}
	switch method := m.Route[strings.LastIndexByte(m.Route, '.')+1:]; method {
	case "echo":
		c.send(resp(m.Body, false))
	case "route":
		b, _ := ser.Marshal(nil, wrapperspb.String(fmt.Sprintf("%s compressed=%v", m.Route, m.Compressed)))
		c.send(resp(b, false))
	case "fail":
		c.send(resp(errorBody(ser, 500, runtime.ErrUnknownRoute.Name, "no handler for "+m.Route), true))
	case "appfail":
		c.send(resp(errorBody(ser, 1001, "", "not enough gold"), true))
	case "silent":
	case "late":
		go func() {
			time.Sleep(300 * time.Millisecond)
			c.send(resp(m.Body, false))
		}()
	case "push":
		// One frame: the response and two pushes, one with a compressed route.
		frame := resp(nil, false)
		frame = append(frame, s.pushPkg("onPush", m.Body)...)
		frame = append(frame, s.pushPkg("onOther", m.Body)...)
		c.send(frame)
	case "pushmany":
		for i := range 100 {
			c.send(s.pushPkg("onPush", []byte(strconv.Itoa(i))))
		}
		c.send(resp(nil, false))
	case "gzip":
		var buf bytes.Buffer
		zw := gzip.NewWriter(&buf)
		zw.Write(m.Body)
		zw.Close()
		c.send(dataPkg(wire.Message{Type: wire.Response, ID: m.ID, Gzip: true, Body: buf.Bytes()}))
	case "kick":
		c.send(pkg(wire.TypeKick, wire.KickBody("relogin")))
		c.close()
		return false
	case "drop":
		return false
	default:
		c.send(resp(errorBody(ser, 500, runtime.ErrUnknownRoute.Name, "no handler for "+m.Route), true))
	}
	return true
}

// pushPkg returns a PUSH package, its route compressed when the dictionary holds it.
func (s *fakeServer) pushPkg(route string, body []byte) []byte {
	m := wire.Message{Type: wire.Push, Route: route, Body: body}
	if code, ok := s.dict.Code(route); ok {
		m.Compressed, m.RouteCode = true, code
	}
	return dataPkg(m)
}

// errorBody encodes an error response body with the connection's serializer.
func errorBody(ser runtime.Serializer, code int32, name, message string) []byte {
	if ser.Name() == runtime.SerializerProtobuf {
		// pomelo.sys.v1.Error: code = 1, name = 2, message = 3.
		var b []byte
		b = protowire.AppendTag(b, 1, protowire.VarintType)
		b = protowire.AppendVarint(b, uint64(int64(code)))
		if name != "" {
			b = protowire.AppendTag(b, 2, protowire.BytesType)
			b = protowire.AppendString(b, name)
		}
		b = protowire.AppendTag(b, 3, protowire.BytesType)
		return protowire.AppendString(b, message)
	}
	v := map[string]any{"code": code, "message": message}
	if name != "" {
		v["error"] = name
	}
	b, _ := json.Marshal(v)
	return b
}

func pkg(t wire.PackageType, body []byte) []byte {
	b, err := wire.AppendPackage(nil, t, body)
	if err != nil {
		panic(err)
	}
	return b
}

func dataPkg(m wire.Message) []byte {
	b, err := wire.AppendMessagePackage(nil, &m)
	if err != nil {
		panic(err)
	}
	return b
}

// wsConn is the server side of a WebSocket connection.
type wsConn struct {
	c     *websocket.Conn
	mu    sync.Mutex
	queue []rawPkg
}

type rawPkg struct {
	t    wire.PackageType
	body []byte
}

func (w *wsConn) send(b []byte) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.c.Write(context.Background(), websocket.MessageBinary, b)
}

func (w *wsConn) next() (wire.PackageType, []byte, error) {
	for len(w.queue) == 0 {
		_, data, err := w.c.Read(context.Background())
		if err != nil {
			return 0, nil, err
		}
		err = wire.SplitPackages(data, 0, func(t wire.PackageType, b []byte) error {
			w.queue = append(w.queue, rawPkg{t, bytes.Clone(b)})
			return nil
		})
		if err != nil {
			return 0, nil, err
		}
	}
	p := w.queue[0]
	w.queue = w.queue[1:]
	return p.t, p.body, nil
}

func (w *wsConn) drop() { w.c.CloseNow() }

func (w *wsConn) close() {
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	// Let the client read what was sent and close first; give up after a second.
	<-w.c.CloseRead(ctx).Done()
	w.c.CloseNow()
}

// tcpConn is the server side of a TCP connection.
type tcpConn struct {
	c  net.Conn
	r  *wire.Reader
	mu sync.Mutex
}

func (t *tcpConn) send(b []byte) error {
	t.mu.Lock()
	defer t.mu.Unlock()
	_, err := t.c.Write(b)
	return err
}

func (t *tcpConn) next() (wire.PackageType, []byte, error) {
	typ, body, err := t.r.Next()
	return typ, bytes.Clone(body), err
}

func (t *tcpConn) drop() { t.c.Close() }

func (t *tcpConn) close() {
	// Let the client read what was sent and close first; give up after a second.
	t.c.SetReadDeadline(time.Now().Add(time.Second))
	var buf [512]byte
	for {
		if _, err := t.c.Read(buf[:]); err != nil {
			break
		}
	}
	t.c.Close()
}

// listenSilent starts a TCP listener that accepts connections and never answers; it returns
// its "tcp://" address.
func listenSilent(t interface{ Cleanup(func()) }) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		panic(err)
	}
	var (
		mu    sync.Mutex
		conns []net.Conn
	)
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, c)
			mu.Unlock()
		}
	}()
	t.Cleanup(func() {
		ln.Close()
		mu.Lock()
		defer mu.Unlock()
		for _, c := range conns {
			c.Close()
		}
	})
	return "tcp://" + ln.Addr().String()
}

// startRefuser starts a server that reads each client's handshake, writes reply and closes the
// connection at once, without a close handshake; transport is "ws" or "tcp". It returns the
// address to dial.
func startRefuser(t interface{ Cleanup(func()) }, transport string, reply []byte) string {
	if transport == "ws" {
		hs := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			c, err := websocket.Accept(w, r, nil)
			if err != nil {
				return
			}
			defer c.CloseNow()
			if _, _, err := c.Read(r.Context()); err == nil {
				c.Write(r.Context(), websocket.MessageBinary, reply)
			}
		}))
		t.Cleanup(hs.Close)
		return "ws://" + strings.TrimPrefix(hs.URL, "http://") + "/"
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		panic(err)
	}
	var wg sync.WaitGroup
	t.Cleanup(func() {
		ln.Close()
		wg.Wait()
	})
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer c.Close()
				c.SetDeadline(time.Now().Add(5 * time.Second))
				if _, _, err := wire.NewReader(c, 1<<20).Next(); err == nil {
					c.Write(reply)
				}
			}()
		}
	}()
	return "tcp://" + ln.Addr().String()
}
