package node_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"io"
	"math/big"
	"net"
	"net/http"
	goruntime "runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/protobuf/types/known/structpb"

	"github.com/pomelo-go/pomelo/internal/clustertest"
	"github.com/pomelo-go/pomelo/internal/node"
	"github.com/pomelo-go/pomelo/internal/server"
	"github.com/pomelo-go/pomelo/runtime"
	"github.com/pomelo-go/pomelo/runtime/cluster"
	"github.com/pomelo-go/pomelo/runtime/testkit"
)

// echoChat starts a connector and a chat server whose chat.h.echo answers
// at once and chat.h.slow after wait; configure adjusts every node.
func echoChat(t *testing.T, wait time.Duration, configure func(*node.Config)) *clustertest.Cluster {
	t.Helper()
	return clustertest.Start(t, clustertest.Options{
		Servers:       []clustertest.Spec{{Type: "connector", Frontend: true}, {Type: "chat"}},
		ConfigureNode: configure,
		Setup: func(m *clustertest.Member) error {
			if m.Info.Type != "chat" {
				return nil
			}
			testkit.HandleStruct(t, m.Server, "chat.h.echo", func(ctx context.Context, s runtime.Session, in *structpb.Struct) (*structpb.Struct, error) {
				return obj(map[string]any{"code": 200}), nil
			})
			testkit.HandleStruct(t, m.Server, "chat.h.slow", func(ctx context.Context, s runtime.Session, in *structpb.Struct) (*structpb.Struct, error) {
				time.Sleep(wait)
				return obj(map[string]any{"code": 200}), nil
			})
			return nil
		},
	})
}

// settledGoroutines returns the goroutine count once it has stayed the same
// for 100ms (or after 3s).
func settledGoroutines() int {
	n, same := goruntime.NumGoroutine(), 0
	for deadline := time.Now().Add(3 * time.Second); same < 5 && time.Now().Before(deadline); {
		time.Sleep(20 * time.Millisecond)
		if m := goruntime.NumGoroutine(); m == n {
			same++
		} else {
			n, same = m, 0
		}
	}
	return n
}

// closedByPeer reads c until it fails and reports whether the peer closed
// it (rather than the safety deadline passing).
func closedByPeer(c net.Conn) bool {
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	_, err := io.Copy(io.Discard, c)
	var ne net.Error
	return !(errors.As(err, &ne) && ne.Timeout())
}

// Connections to the RPC listener that send nothing, only the HTTP/2
// preface, or only requests without the secret are closed once the auth
// window passes (or after MaxAuthFailures), and their goroutines end; a
// forwarded request in flight on the authenticated forward stream across
// several windows is answered.
func TestRPCListenerClosesUnauthenticatedConnections(t *testing.T) {
	const window = 300 * time.Millisecond
	cc := echoChat(t, 4*window, func(cfg *node.Config) {
		cfg.AuthTimeout = window
		cfg.MaxAuthFailures = 2
	})
	c := dial(t, cc.Members("connector")[0])
	call(t, c, "chat.h.echo", nil)
	addr := cc.Members("chat")[0].Node.RPCAddr().String()
	// The backend watches the session's close on a stream it opens after
	// the first request, so the baseline is taken once that has settled.
	baseline := settledGoroutines()

	slow := make(chan error, 1)
	go func() { _, err := tryCall(c, "chat.h.slow", nil); slow <- err }()

	const unauthRequest = "POST /pomelo.sys.v1.MsgRemote/Forward HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n"
	kinds := map[string]string{
		"silent":        "",
		"preface":       "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n",
		"one request":   unauthRequest,
		"many requests": strings.Repeat(unauthRequest, 5),
	}
	var wg sync.WaitGroup
	var mu sync.Mutex
	var open []string
	for kind, send := range kinds {
		for range 25 {
			conn, err := net.Dial("tcp", addr)
			if err != nil {
				t.Fatal(err)
			}
			defer conn.Close()
			if send != "" {
				if _, err := conn.Write([]byte(send)); err != nil {
					t.Fatal(err)
				}
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				if !closedByPeer(conn) {
					mu.Lock()
					open = append(open, kind)
					mu.Unlock()
				}
			}()
		}
	}
	wg.Wait()
	if len(open) > 0 {
		t.Fatalf("%d unauthenticated connections still open after 10s: %v", len(open), open[0])
	}
	if err := <-slow; err != nil {
		t.Fatalf("forwarded request across the auth window: %v", err)
	}
	call(t, c, "chat.h.echo", nil)
	waitFor(t, func() bool { return goruntime.NumGoroutine() <= baseline+2 })
}

// An empty secret is refused unless Insecure is set.
func TestJoinRefusesEmptySecretUnlessInsecure(t *testing.T) {
	info := cluster.ServerInfo{ID: "chat-1", Type: "chat", Host: "127.0.0.1", RPCPort: 1}
	for _, insecure := range []bool{false, true} {
		srv, err := server.New(server.Config{ID: info.ID, Type: info.Type})
		if err != nil {
			t.Fatal(err)
		}
		_, err = node.Join(srv, node.Config{Self: info, Insecure: insecure})
		if insecure && err != nil {
			t.Fatalf("Insecure with an empty secret: %v", err)
		}
		if !insecure && (err == nil || !strings.Contains(err.Error(), "Secret")) {
			t.Fatalf("empty secret: err = %v, want a refusal naming Secret", err)
		}
	}
}

// testPKI is a CA and the certificates it signed for the tests.
type testPKI struct {
	pool   *x509.CertPool
	server tls.Certificate
	client tls.Certificate
}

func newTestPKI(t *testing.T) *testPKI {
	t.Helper()
	key := func() *ecdsa.PrivateKey {
		k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		return k
	}
	caKey := key()
	caTmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "test ca"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	ca, err := x509.ParseCertificate(caDER)
	if err != nil {
		t.Fatal(err)
	}
	leaf := func(serial int64, usage x509.ExtKeyUsage) tls.Certificate {
		k := key()
		tmpl := &x509.Certificate{
			SerialNumber: big.NewInt(serial), Subject: pkix.Name{CommonName: "server"},
			NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
			KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{usage},
			IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)},
		}
		der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &k.PublicKey, caKey)
		if err != nil {
			t.Fatal(err)
		}
		return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: k}
	}
	p := &testPKI{pool: x509.NewCertPool()}
	p.pool.AddCert(ca)
	p.server = leaf(2, x509.ExtKeyUsageServerAuth)
	p.client = leaf(3, x509.ExtKeyUsageClientAuth)
	return p
}

// serverTLS is a mutual-TLS serving configuration.
func (p *testPKI) serverTLS() *tls.Config {
	return &tls.Config{Certificates: []tls.Certificate{p.server}, ClientCAs: p.pool, ClientAuth: tls.RequireAndVerifyClientCert}
}

// clientTLS is a dialing configuration, with a client certificate if withCert.
func (p *testPKI) clientTLS(withCert bool) *tls.Config {
	c := &tls.Config{RootCAs: p.pool}
	if withCert {
		c.Certificates = []tls.Certificate{p.client}
	}
	return c
}

// A cluster whose servers talk mutual TLS forwards requests, including one
// in flight across several auth windows (the window is lifted on the
// connection under the TLS layer); a connection to its RPC listener that
// never starts the TLS handshake is closed.
func TestMutualTLSClusterForwardsRequests(t *testing.T) {
	const window = 300 * time.Millisecond
	pki := newTestPKI(t)
	cc := echoChat(t, 4*window, func(cfg *node.Config) {
		cfg.ServerTLS, cfg.ClientTLS = pki.serverTLS(), pki.clientTLS(true)
		cfg.AuthTimeout = window
	})
	c := dial(t, cc.Members("connector")[0])
	for range 3 {
		call(t, c, "chat.h.echo", nil)
	}
	silent, err := net.Dial("tcp", cc.Members("chat")[0].Node.RPCAddr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer silent.Close()
	call(t, c, "chat.h.slow", nil)
	if !closedByPeer(silent) {
		t.Fatal("a connection that never started TLS is still open")
	}
}

// Under mutual TLS a server dialing without a valid certificate, or in
// cleartext, is refused: the request fails UNAVAILABLE, and nothing hangs.
func TestMutualTLSRefusesPeersWithoutCertificateOrTLS(t *testing.T) {
	pki := newTestPKI(t)
	for name, client := range map[string]*tls.Config{"no certificate": pki.clientTLS(false), "cleartext": nil} {
		t.Run(name, func(t *testing.T) {
			cc := echoChat(t, 0, func(cfg *node.Config) {
				cfg.ServerTLS, cfg.ClientTLS = pki.serverTLS(), pki.clientTLS(true)
				if cfg.Self.Type == "connector" {
					cfg.ClientTLS = client
				}
			})
			c := dial(t, cc.Members("connector")[0])
			if _, err := tryCall(c, "chat.h.echo", nil); !errors.Is(err, runtime.ErrUnavailable) {
				t.Fatalf("err = %v, want UNAVAILABLE", err)
			}
		})
	}
}

// peerClosedConn records that the peer closed the connection.
type peerClosedConn struct {
	net.Conn
	once   sync.Once
	closed chan struct{}
}

func (c *peerClosedConn) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	if err != nil {
		c.once.Do(func() { close(c.closed) })
	}
	return n, err
}

// An HTTP/2 connection whose requests lack the secret is answered 401 and
// closed by the server after MaxAuthFailures of them.
func TestRPCListenerClosesHTTP2ConnectionAfterFailedAuth(t *testing.T) {
	cc := echoChat(t, 0, func(cfg *node.Config) { cfg.MaxAuthFailures = 2 })
	addr := cc.Members("chat")[0].Node.RPCAddr().String()
	var mu sync.Mutex
	var conns []*peerClosedConn
	var protocols http.Protocols
	protocols.SetUnencryptedHTTP2(true)
	tr := &http.Transport{Protocols: &protocols, DialContext: func(ctx context.Context, network, a string) (net.Conn, error) {
		c, err := (&net.Dialer{}).DialContext(ctx, network, a)
		if err != nil {
			return nil, err
		}
		pc := &peerClosedConn{Conn: c, closed: make(chan struct{})}
		mu.Lock()
		conns = append(conns, pc)
		mu.Unlock()
		return pc, nil
	}}
	defer tr.CloseIdleConnections()
	hc := &http.Client{Transport: tr, Timeout: 5 * time.Second}
	for range 2 {
		resp, err := hc.Post("http://"+addr+"/pomelo.sys.v1.MsgRemote/Forward", "application/connect+proto", nil)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusUnauthorized || resp.ProtoMajor != 2 {
			t.Fatalf("unauthenticated request: %s %s, want HTTP/2 401", resp.Proto, resp.Status)
		}
	}
	mu.Lock()
	first := conns[0]
	mu.Unlock()
	select {
	case <-first.closed:
	case <-time.After(5 * time.Second):
		t.Fatal("connection still open after 2 unauthenticated requests")
	}
}
