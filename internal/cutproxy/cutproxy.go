// Package cutproxy is a TCP proxy for tests that cuts connections, as a
// network that goes away does: it forwards each connection to one address
// (New) or, as a SOCKS5 server (NewSOCKS5, no authentication, CONNECT
// only), to the address the client asks for. Cut closes every connection
// it carries, on both sides, without a word to either end; Refuse makes it
// refuse new connections until it is told otherwise.
package cutproxy

import (
	"encoding/binary"
	"errors"
	"io"
	"net"
	"strconv"
	"sync"
	"time"
)

// Proxy is a listening proxy. Its methods are safe for concurrent use.
type Proxy struct {
	ln     net.Listener
	target string // "" for SOCKS5

	mu       sync.Mutex
	conns    map[net.Conn]struct{}
	refusing bool
	closed   bool
	accepted int
	refused  int
	wg       sync.WaitGroup
}

// New starts a proxy on a free loopback port that forwards every
// connection to target ("host:port").
func New(target string) (*Proxy, error) { return start(target) }

// NewSOCKS5 starts a SOCKS5 proxy on a free loopback port.
func NewSOCKS5() (*Proxy, error) { return start("") }

func start(target string) (*Proxy, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	p := &Proxy{ln: ln, target: target, conns: map[net.Conn]struct{}{}}
	p.wg.Add(1)
	go p.accept()
	return p, nil
}

// Addr is the proxy's "host:port".
func (p *Proxy) Addr() string { return p.ln.Addr().String() }

// Cut closes every connection the proxy carries, and returns how many
// client connections it cut.
func (p *Proxy) Cut() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	n := 0
	for c := range p.conns {
		if c.LocalAddr().String() == p.Addr() {
			n++
		}
		c.Close()
		delete(p.conns, c)
	}
	return n
}

// Refuse makes the proxy refuse new connections (on) or accept them again.
func (p *Proxy) Refuse(on bool) {
	p.mu.Lock()
	p.refusing = on
	p.mu.Unlock()
}

// Counts returns how many connections the proxy has accepted and how many
// it refused.
func (p *Proxy) Counts() (accepted, refused int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.accepted, p.refused
}

// Close stops the proxy, closes its connections and waits for its
// goroutines.
func (p *Proxy) Close() error {
	p.mu.Lock()
	p.closed = true
	p.mu.Unlock()
	err := p.ln.Close()
	p.Cut()
	p.wg.Wait()
	return err
}

func (p *Proxy) accept() {
	defer p.wg.Done()
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return
		}
		p.mu.Lock()
		if p.refusing || p.closed {
			p.refused++
			p.mu.Unlock()
			if tc, ok := c.(*net.TCPConn); ok {
				tc.SetLinger(0) // a reset, as from a closed port
			}
			c.Close()
			continue
		}
		p.accepted++
		p.conns[c] = struct{}{}
		p.wg.Add(1)
		p.mu.Unlock()
		go p.serve(c)
	}
}

// track adds c to the connections Cut closes; false when the proxy cut or
// closed meanwhile (c is closed then).
func (p *Proxy) track(c net.Conn, client net.Conn) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if _, ok := p.conns[client]; !ok || p.closed {
		c.Close()
		return false
	}
	p.conns[c] = struct{}{}
	return true
}

func (p *Proxy) forget(cs ...net.Conn) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, c := range cs {
		c.Close()
		delete(p.conns, c)
	}
}

func (p *Proxy) serve(client net.Conn) {
	defer p.wg.Done()
	target := p.target
	if target == "" {
		var err error
		if target, err = socksRequest(client); err != nil {
			p.forget(client)
			return
		}
	}
	up, err := net.DialTimeout("tcp", target, 10*time.Second)
	if p.target == "" {
		reply := []byte{5, 0, 0, 1, 0, 0, 0, 0, 0, 0}
		if err != nil {
			reply[1] = 5 // connection refused
		}
		if _, werr := client.Write(reply); werr != nil && err == nil {
			up.Close()
			err = werr
		}
	}
	if err != nil {
		p.forget(client)
		return
	}
	if !p.track(up, client) {
		p.forget(client)
		return
	}
	done := make(chan struct{})
	go func() {
		io.Copy(up, client)
		p.forget(up, client)
		close(done)
	}()
	io.Copy(client, up)
	p.forget(up, client)
	<-done
}

// socksRequest reads a SOCKS5 greeting and CONNECT request from c and
// returns the address asked for.
func socksRequest(c net.Conn) (string, error) {
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	defer c.SetReadDeadline(time.Time{})
	head := make([]byte, 2)
	if _, err := io.ReadFull(c, head); err != nil {
		return "", err
	}
	if head[0] != 5 {
		return "", errors.New("not SOCKS5")
	}
	if _, err := io.ReadFull(c, make([]byte, head[1])); err != nil {
		return "", err
	}
	if _, err := c.Write([]byte{5, 0}); err != nil { // no authentication
		return "", err
	}
	req := make([]byte, 4)
	if _, err := io.ReadFull(c, req); err != nil {
		return "", err
	}
	if req[0] != 5 || req[1] != 1 {
		c.Write([]byte{5, 7, 0, 1, 0, 0, 0, 0, 0, 0}) // command not supported
		return "", errors.New("not a SOCKS5 CONNECT")
	}
	var host string
	switch req[3] {
	case 1, 4:
		ip := make([]byte, 4)
		if req[3] == 4 {
			ip = make([]byte, 16)
		}
		if _, err := io.ReadFull(c, ip); err != nil {
			return "", err
		}
		host = net.IP(ip).String()
	case 3:
		n := make([]byte, 1)
		if _, err := io.ReadFull(c, n); err != nil {
			return "", err
		}
		name := make([]byte, n[0])
		if _, err := io.ReadFull(c, name); err != nil {
			return "", err
		}
		host = string(name)
	default:
		return "", errors.New("unknown SOCKS5 address type")
	}
	port := make([]byte, 2)
	if _, err := io.ReadFull(c, port); err != nil {
		return "", err
	}
	return net.JoinHostPort(host, strconv.Itoa(int(binary.BigEndian.Uint16(port)))), nil
}
