package cutproxy

import (
	"bufio"
	"io"
	"net"
	"testing"
	"time"
)

// echoServer echoes lines until the test ends.
func echoServer(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				io.Copy(c, c)
			}()
		}
	}()
	t.Cleanup(func() { ln.Close(); <-done })
	return ln.Addr().String()
}

func roundTrip(t *testing.T, c net.Conn, line string) {
	t.Helper()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := io.WriteString(c, line+"\n"); err != nil {
		t.Fatal(err)
	}
	got, err := bufio.NewReader(c).ReadString('\n')
	if err != nil || got != line+"\n" {
		t.Fatalf("echo %q: %q, %v", line, got, err)
	}
}

// ended reports whether c's peer closed it (a read ends without data).
func ended(c net.Conn) bool {
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	n, err := c.Read(make([]byte, 1))
	return n == 0 && err != nil && !isTimeout(err)
}

func isTimeout(err error) bool {
	ne, ok := err.(net.Error)
	return ok && ne.Timeout()
}

// started returns p, failing the test on err; p closes when the test ends.
func started(t *testing.T, p *Proxy, err error) *Proxy {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Close() })
	return p
}

// dial connects to p; the connection closes when the test ends.
func dial(t *testing.T, p *Proxy) net.Conn {
	t.Helper()
	c, err := net.Dial("tcp", p.Addr())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func TestCutClosesTheCarriedConnectionsAndRefuseRefusesNewOnes(t *testing.T) {
	p, err := New(echoServer(t))
	p = started(t, p, err)
	c := dial(t, p)
	roundTrip(t, c, "hello")
	if n := p.Cut(); n != 1 {
		t.Errorf("Cut cut %d client connections, want 1", n)
	}
	if !ended(c) {
		t.Error("the connection still works after Cut")
	}
	p.Refuse(true)
	r, err := net.Dial("tcp", p.Addr())
	if err == nil {
		if !ended(r) {
			t.Error("a connection made while refusing works")
		}
		r.Close()
	}
	p.Refuse(false)
	roundTrip(t, dial(t, p), "again")
	if acc, ref := p.Counts(); acc != 2 || ref != 1 {
		t.Errorf("counts %d accepted, %d refused; want 2, 1", acc, ref)
	}
}

func TestSOCKS5ConnectsToTheAddressAsked(t *testing.T) {
	target := echoServer(t)
	p, err := NewSOCKS5()
	p = started(t, p, err)
	c := dial(t, p)
	c.SetDeadline(time.Now().Add(10 * time.Second))
	host, port, _ := net.SplitHostPort(target)
	var pn int
	for _, d := range port {
		pn = pn*10 + int(d-'0')
	}
	req := []byte{5, 1, 0, 5, 1, 0, 3, byte(len(host))}
	req = append(append(req, host...), byte(pn>>8), byte(pn))
	if _, err := c.Write(req); err != nil {
		t.Fatal(err)
	}
	reply := make([]byte, 12)
	if _, err := io.ReadFull(c, reply); err != nil || reply[0] != 5 || reply[1] != 0 || reply[3] != 0 {
		t.Fatalf("SOCKS5 replies %v, %v", reply, err)
	}
	roundTrip(t, c, "through socks")
	p.Cut()
	if !ended(c) {
		t.Error("the SOCKS5 connection still works after Cut")
	}
}
