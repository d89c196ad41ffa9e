package server_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"errors"
	"math/big"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"

	testingv1 "github.com/pomelo-go/pomelo/gen/pomelo/testing/v1"
	"github.com/pomelo-go/pomelo/internal/server"
	"github.com/pomelo-go/pomelo/runtime"
	"github.com/pomelo-go/pomelo/runtime/client"
	"github.com/pomelo-go/pomelo/runtime/session"
)

// selfSigned returns a server TLS config for 127.0.0.1 and a client config
// that trusts it.
func selfSigned(t *testing.T) (srv, cli *tls.Config) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1),
		Subject:      pkix.Name{CommonName: "pomelo-go test"},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
		IPAddresses:  []net.IP{net.IPv4(127, 0, 0, 1)},
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, _ := x509.ParseCertificate(der)
	pool := x509.NewCertPool()
	pool.AddCert(cert)
	return &tls.Config{Certificates: []tls.Certificate{{Certificate: [][]byte{der}, PrivateKey: key}}},
		&tls.Config{RootCAs: pool}
}

func TestTLSForWebSocketAndTCP(t *testing.T) {
	srvTLS, cliTLS := selfSigned(t)
	s, _ := startEcho(t, func(c *server.Config) { c.Connector.TLSConfig = srvTLS })
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	for _, url := range []string{"wss://" + s.WSAddr().String() + "/", "tls://" + s.TCPAddr().String()} {
		c, err := client.Config{TLSConfig: cliTLS}.Dial(ctx, url)
		if err != nil {
			t.Fatalf("%s: %v", url, err)
		}
		res, err := testingv1.NewEchoHandlerClient(c).Echo(ctx, &testingv1.EchoRequest{Text: "secure"})
		c.Close()
		if err != nil || res.Text != "secure" {
			t.Fatalf("%s: %v %v", url, res, err)
		}
	}
	// A plain client cannot talk to the TLS port.
	if c, err := client.Dial(ctx, "ws://"+s.WSAddr().String()+"/"); err == nil {
		c.Close()
		t.Fatal("plain WebSocket accepted on the TLS port")
	}
}

func TestOriginPolicy(t *testing.T) {
	s, _ := startEcho(t, func(c *server.Config) { c.Connector.OriginPatterns = []string{"game.example"} })
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	url := "ws://" + s.WSAddr().String() + "/"
	dial := func(origin string) error {
		h := http.Header{}
		if origin != "" {
			h.Set("Origin", origin)
		}
		c, _, err := websocket.Dial(ctx, url, &websocket.DialOptions{HTTPHeader: h})
		if err == nil {
			c.CloseNow()
		}
		return err
	}
	if err := dial("https://evil.example"); err == nil {
		t.Fatal("a page from another origin was accepted")
	}
	if err := dial("https://game.example"); err != nil {
		t.Fatalf("allowed origin refused: %v", err)
	}
	if err := dial(""); err != nil {
		t.Fatalf("a native client (no Origin) refused: %v", err)
	}
}

func TestMaxConnections(t *testing.T) {
	s, _ := startEcho(t, func(c *server.Config) { c.Connector.MaxConnections = 2 })
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	var open []*client.Client
	defer func() {
		for _, c := range open {
			c.Close()
		}
	}()
	for i := 0; i < 2; i++ {
		c, err := client.Dial(ctx, "tcp://"+s.TCPAddr().String())
		if err != nil {
			t.Fatal(err)
		}
		open = append(open, c)
	}
	if c, err := client.Dial(ctx, "ws://"+s.WSAddr().String()+"/"); err == nil {
		c.Close()
		t.Fatal("third WebSocket connection accepted over the limit")
	}
	nc, err := net.Dial("tcp", s.TCPAddr().String())
	if err != nil {
		t.Fatal(err)
	}
	nc.SetReadDeadline(time.Now().Add(3 * time.Second))
	if _, err := nc.Read(make([]byte, 1)); err == nil || errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("third TCP connection not closed: %v", err)
	}
	nc.Close()
	// A slot frees when a client leaves.
	open[0].Close()
	open = open[1:]
	waitUntil(t, func() bool { return s.Connector().Count() < 2 })
	c, err := client.Dial(ctx, "tcp://"+s.TCPAddr().String())
	if err != nil {
		t.Fatalf("after a client left: %v", err)
	}
	open = append(open, c)
}

func TestPanickingHooksAnswerErrors(t *testing.T) {
	s, _ := startEcho(t, func(c *server.Config) {
		c.HandshakeHook = func(ctx context.Context, _ *session.Session, user json.RawMessage) (json.RawMessage, error) {
			if string(user) == `{"boom":true}` {
				panic("hook")
			}
			return nil, nil
		}
	})
	s.SetErrorHandler(func(ctx context.Context, r *runtime.Request, err error) error { panic("error handler") })
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	url := "ws://" + s.WSAddr().String() + "/"
	_, err := client.Config{HandshakeUser: json.RawMessage(`{"boom":true}`)}.Dial(ctx, url)
	var he *client.HandshakeError
	if !errors.As(err, &he) || he.Code != 500 {
		t.Fatalf("panicking handshake hook: %v, want handshake 500", err)
	}
	c, err := client.Dial(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	body, isErr, err := c.RequestRaw(ctx, "echo.echoHandler.nope", []byte(`{}`))
	if err != nil || !isErr || !strings.Contains(string(body), `"error":"INTERNAL"`) {
		t.Fatalf("panicking error handler: %s %v %v, want an INTERNAL error response", body, isErr, err)
	}
	// The server is still up.
	if _, err := testingv1.NewEchoHandlerClient(c).Echo(ctx, &testingv1.EchoRequest{Text: "x"}); err != nil {
		t.Fatalf("after: %v", err)
	}
}
