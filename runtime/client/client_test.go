package client_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/structpb"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/pomelo-go/pomelo/runtime"
	"github.com/pomelo-go/pomelo/runtime/client"
	"github.com/pomelo-go/pomelo/runtime/wire"
)

var transports = []string{"ws", "tcp"}

var serializers = []runtime.Serializer{runtime.JSON, runtime.Protobuf}

// setup starts a fake server and dials it.
func setup(t *testing.T, transport string, cfg fakeConfig, ccfg client.Config) (*fakeServer, *client.Client) {
	t.Helper()
	srv := startFakeServer(transport, cfg)
	t.Cleanup(srv.Close)
	c := dial(t, srv, ccfg)
	return srv, c
}

func dial(t *testing.T, srv *fakeServer, cfg client.Config) *client.Client {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	c, err := cfg.Dial(ctx, srv.addr)
	if err != nil {
		t.Fatalf("Dial: %v", err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func testCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// forEach runs f for every transport and serializer.
func forEach(t *testing.T, f func(t *testing.T, transport string, ser runtime.Serializer)) {
	for _, tr := range transports {
		for _, ser := range serializers {
			t.Run(tr+"/"+ser.Name(), func(t *testing.T) {
				t.Parallel()
				f(t, tr, ser)
			})
		}
	}
}

func TestRequestResponse(t *testing.T) {
	forEach(t, func(t *testing.T, tr string, ser runtime.Serializer) {
		_, c := setup(t, tr, fakeConfig{}, client.Config{Serializer: ser})
		ctx := testCtx(t)
		var resp wrapperspb.StringValue
		if err := c.Request(ctx, "test.h.echo", wrapperspb.String("hello"), &resp); err != nil {
			t.Fatal(err)
		}
		if resp.GetValue() != "hello" {
			t.Fatalf("got %q", resp.GetValue())
		}
		// A nil request sends an empty body; a nil response is ignored.
		if err := c.Request(ctx, "test.h.echo", nil, nil); err != nil {
			t.Fatal(err)
		}
		// Gzip-flagged responses are inflated.
		if err := c.Request(ctx, "test.h.gzip", wrapperspb.String("zipped"), &resp); err != nil || resp.GetValue() != "zipped" {
			t.Fatalf("gzip: %v %q", err, resp.GetValue())
		}
	})
}

func TestRequestIDsAndWireFormat(t *testing.T) {
	srv, c := setup(t, "ws", fakeConfig{}, client.Config{})
	ctx := testCtx(t)
	for i := 1; i <= 3; i++ {
		if err := c.Request(ctx, "test.h.echo", wrapperspb.String("x"), nil); err != nil {
			t.Fatal(err)
		}
		m := <-srv.received
		if m.Type != wire.Request || m.ID != uint64(i) || !m.Compressed || m.Route != "test.h.echo" || string(m.Body) != `"x"` {
			t.Fatalf("request %d: got %+v (body %s)", i, m, m.Body)
		}
	}
}

func TestErrorResponse(t *testing.T) {
	forEach(t, func(t *testing.T, tr string, ser runtime.Serializer) {
		_, c := setup(t, tr, fakeConfig{}, client.Config{Serializer: ser})
		ctx := testCtx(t)
		var resp wrapperspb.StringValue
		err := c.Request(ctx, "test.h.fail", wrapperspb.String("x"), &resp)
		var re *runtime.Error
		if !errors.As(err, &re) {
			t.Fatalf("want *runtime.Error, got %T %v", err, err)
		}
		if re.Code != 500 || re.Name != runtime.ErrUnknownRoute.Name || re.Message != "no handler for test.h.fail" {
			t.Fatalf("got %+v", re)
		}
		if !errors.Is(err, runtime.ErrUnknownRoute) {
			t.Fatalf("errors.Is(%v, ErrUnknownRoute) = false", err)
		}
		err = c.Request(ctx, "test.h.appfail", nil, &resp)
		if !errors.As(err, &re) || re.Code != 1001 || re.Name != "" || re.Message != "not enough gold" {
			t.Fatalf("application error: got %v", err)
		}
		// The connection is still fine.
		if err := c.Request(ctx, "test.h.echo", wrapperspb.String("ok"), &resp); err != nil || resp.GetValue() != "ok" {
			t.Fatalf("after errors: %v %q", err, resp.GetValue())
		}
	})
}

func TestRequestRaw(t *testing.T) {
	for _, tr := range transports {
		t.Run(tr, func(t *testing.T) {
			t.Parallel()
			_, c := setup(t, tr, fakeConfig{}, client.Config{})
			ctx := testCtx(t)
			body, isErr, err := c.RequestRaw(ctx, "test.h.echo", []byte("not json \x00\xff"))
			if err != nil || isErr || string(body) != "not json \x00\xff" {
				t.Fatalf("got %q %v %v", body, isErr, err)
			}
			body, isErr, err = c.RequestRaw(ctx, "test.h.fail", nil)
			if err != nil || !isErr || !strings.Contains(string(body), "UNKNOWN_ROUTE") {
				t.Fatalf("got %q %v %v", body, isErr, err)
			}
			// An undecodable response body is an error of Request, not of the connection.
			var resp wrapperspb.StringValue
			if err := c.Request(ctx, "test.h.echo", &structpb.Struct{}, &resp); err == nil {
				t.Fatal("decoding {} into a StringValue succeeded")
			}
			if _, _, err := c.RequestRaw(ctx, strings.Repeat("r", 256), nil); !errors.Is(err, wire.ErrTooLarge) {
				t.Fatalf("long route: %v", err)
			}
			if c.Err() != nil {
				t.Fatalf("connection ended: %v", c.Err())
			}
		})
	}
}

func TestCompressedRoutes(t *testing.T) {
	forEach(t, func(t *testing.T, tr string, ser runtime.Serializer) {
		srv, c := setup(t, tr, fakeConfig{}, client.Config{Serializer: ser})
		ctx := testCtx(t)
		if got := c.Dict()["test.h.route"]; got == 0 {
			t.Fatalf("dictionary lacks test.h.route: %v", c.Dict())
		}
		for route, want := range map[string]string{
			"test.h.route":  "test.h.route compressed=true",
			"other.h.route": "other.h.route compressed=false",
		} {
			var resp wrapperspb.StringValue
			if err := c.Request(ctx, route, nil, &resp); err != nil {
				t.Fatal(err)
			}
			if resp.GetValue() != want {
				t.Errorf("%s: got %q, want %q", route, resp.GetValue(), want)
			}
		}
		if err := c.Notify(ctx, "test.h.silent", wrapperspb.String("n")); err != nil {
			t.Fatal(err)
		}
		for {
			m := <-srv.received
			if m.Type == wire.Notify {
				if !m.Compressed || m.Route != "test.h.silent" {
					t.Fatalf("notify: %+v", m)
				}
				break
			}
		}
	})
}

func TestCachedDictionary(t *testing.T) {
	t.Parallel()
	srv := startFakeServer("ws", fakeConfig{})
	t.Cleanup(srv.Close)
	ctx := testCtx(t)

	// The same version without the dictionary: the server leaves it out, routes go plain.
	c := dial(t, srv, client.Config{DictVersion: srv.dict.Version()})
	if c.Handshake().Sys.Dict != nil || c.Dict() != nil {
		t.Fatalf("dictionary sent although the version matched")
	}
	var resp wrapperspb.StringValue
	if err := c.Request(ctx, "test.h.route", nil, &resp); err != nil || resp.GetValue() != "test.h.route compressed=false" {
		t.Fatalf("got %v %q", err, resp.GetValue())
	}

	// With the cached dictionary the routes are compressed again, and so is a push.
	c = dial(t, srv, client.Config{DictVersion: srv.dict.Version(), Dict: srv.dict.Map()})
	if err := c.Request(ctx, "test.h.route", nil, &resp); err != nil || resp.GetValue() != "test.h.route compressed=true" {
		t.Fatalf("got %v %q", err, resp.GetValue())
	}
	pushes := c.Pushes("onPush", 1)
	if err := c.Request(ctx, "test.h.push", wrapperspb.String("p"), nil); err != nil {
		t.Fatal(err)
	}
	if got := string(<-pushes); got != `"p"` {
		t.Fatalf("push: %q", got)
	}
}

func TestNotify(t *testing.T) {
	forEach(t, func(t *testing.T, tr string, ser runtime.Serializer) {
		srv, c := setup(t, tr, fakeConfig{}, client.Config{Serializer: ser})
		ctx := testCtx(t)
		if err := c.Notify(ctx, "chat.h.send", wrapperspb.String("hi")); err != nil {
			t.Fatal(err)
		}
		if err := c.NotifyRaw(ctx, "chat.h.raw", []byte("raw")); err != nil {
			t.Fatal(err)
		}
		m := <-srv.received
		var got wrapperspb.StringValue
		if m.Type != wire.Notify || m.Route != "chat.h.send" || m.Compressed || m.ID != 0 {
			t.Fatalf("got %+v", m)
		}
		if err := ser.Unmarshal(m.Body, &got); err != nil || got.GetValue() != "hi" {
			t.Fatalf("body %q: %v", m.Body, err)
		}
		m = <-srv.received
		if m.Type != wire.Notify || m.Route != "chat.h.raw" || string(m.Body) != "raw" {
			t.Fatalf("got %+v", m)
		}
	})
}

func TestPushes(t *testing.T) {
	forEach(t, func(t *testing.T, tr string, ser runtime.Serializer) {
		_, c := setup(t, tr, fakeConfig{}, client.Config{Serializer: ser})
		ctx := testCtx(t)

		raw := make(chan []byte, 10)
		c.OnPush("onPush", func(body []byte) { raw <- body })
		typed := make(chan string, 10)
		client.Subscribe(c, runtime.NewPushRoute[*wrapperspb.StringValue]("onPush"), func(m *wrapperspb.StringValue) {
			typed <- m.GetValue()
		})
		other := c.Pushes("onOther", 10)
		removed := make(chan []byte, 10)
		unsubscribe := c.OnPush("onPush", func(body []byte) { removed <- body })
		unsubscribe()

		if err := c.Request(ctx, "test.h.push", wrapperspb.String("news"), nil); err != nil {
			t.Fatal(err)
		}
		want, _ := ser.Marshal(nil, wrapperspb.String("news"))
		if got := <-raw; string(got) != string(want) {
			t.Errorf("raw push: %q, want %q", got, want)
		}
		if got := <-typed; got != "news" {
			t.Errorf("typed push: %q", got)
		}
		if got := <-other; string(got) != string(want) {
			t.Errorf("uncompressed push: %q", got)
		}

		// A typed subscription of another message type, on the uncompressed route.
		st, _ := structpb.NewStruct(map[string]any{"msg": "hi", "n": 42})
		structs := make(chan *structpb.Struct, 1)
		client.Subscribe(c, runtime.NewPushRoute[*structpb.Struct]("onOther"), func(m *structpb.Struct) { structs <- m })
		if err := c.Request(ctx, "test.h.push", st, nil); err != nil {
			t.Fatal(err)
		}
		if got := <-structs; !proto.Equal(got, st) {
			t.Errorf("struct push: %v", got)
		}
		if len(removed) != 0 {
			t.Errorf("an unsubscribed callback ran")
		}
	})
}

func TestPushOrder(t *testing.T) {
	for _, tr := range transports {
		t.Run(tr, func(t *testing.T) {
			t.Parallel()
			_, c := setup(t, tr, fakeConfig{}, client.Config{})
			ctx := testCtx(t)
			var (
				mu  sync.Mutex
				got []string
			)
			all := make(chan struct{})
			c.OnPush("onPush", func(body []byte) {
				time.Sleep(time.Millisecond) // a slow subscriber must not stall responses
				mu.Lock()
				defer mu.Unlock()
				got = append(got, string(body))
				if len(got) == 100 {
					close(all)
				}
			})
			if err := c.Request(ctx, "test.h.pushmany", nil, nil); err != nil {
				t.Fatal(err)
			}
			select {
			case <-all:
			case <-ctx.Done():
				t.Fatal("pushes did not all arrive")
			}
			mu.Lock()
			defer mu.Unlock()
			for i, s := range got {
				if s != strconv.Itoa(i) {
					t.Fatalf("push %d is %q", i, s)
				}
			}
		})
	}
}

func TestKick(t *testing.T) {
	for _, tr := range transports {
		t.Run(tr, func(t *testing.T) {
			t.Parallel()
			srv, c := setup(t, tr, fakeConfig{}, client.Config{})
			ctx := testCtx(t)
			pending := make(chan error, 1)
			go func() { pending <- c.Request(ctx, "test.h.silent", nil, nil) }()
			<-srv.received

			err := c.Request(ctx, "test.h.kick", nil, nil)
			var ke *client.KickError
			if !errors.As(err, &ke) || ke.Reason != "relogin" {
				t.Fatalf("kick request: %v", err)
			}
			if err := <-pending; !errors.As(err, &ke) || !strings.Contains(err.Error(), "relogin") {
				t.Fatalf("pending request: %v", err)
			}
			<-c.Done()
			if reason, ok := c.KickReason(); !ok || reason != "relogin" {
				t.Fatalf("KickReason = %q, %v", reason, ok)
			}
			if !errors.As(c.Err(), &ke) {
				t.Fatalf("Err = %v", c.Err())
			}
			if err := c.Request(ctx, "test.h.echo", nil, nil); !errors.As(err, &ke) {
				t.Fatalf("request after kick: %v", err)
			}
		})
	}
}

func TestDropFailsPending(t *testing.T) {
	for _, tr := range transports {
		t.Run(tr, func(t *testing.T) {
			t.Parallel()
			srv, c := setup(t, tr, fakeConfig{}, client.Config{})
			ctx := testCtx(t)
			const n = 10
			errs := make(chan error, n)
			for range n {
				go func() { errs <- c.Request(ctx, "test.h.silent", nil, nil) }()
			}
			for range n {
				<-srv.received
			}
			closed := c.Pushes("onPush", 0)
			start := time.Now()
			if err := c.Request(ctx, "test.h.drop", nil, nil); !errors.Is(err, client.ErrConnectionLost) {
				t.Fatalf("drop: %v", err)
			}
			for range n {
				if err := <-errs; !errors.Is(err, client.ErrConnectionLost) {
					t.Fatalf("pending: %v", err)
				}
			}
			if d := time.Since(start); d > time.Second {
				t.Fatalf("pending requests took %v to fail", d)
			}
			<-c.Done()
			if _, ok := <-closed; ok {
				t.Fatal("Pushes channel not closed")
			}
			if _, kicked := c.KickReason(); kicked {
				t.Fatal("KickReason reports a kick")
			}
			if err := c.Notify(ctx, "test.h.echo", nil); !errors.Is(err, client.ErrConnectionLost) {
				t.Fatalf("notify after drop: %v", err)
			}
		})
	}
}

func TestClose(t *testing.T) {
	for _, tr := range transports {
		t.Run(tr, func(t *testing.T) {
			t.Parallel()
			srv, c := setup(t, tr, fakeConfig{}, client.Config{})
			ctx := testCtx(t)
			pending := make(chan error, 1)
			go func() { pending <- c.Request(ctx, "test.h.silent", nil, nil) }()
			<-srv.received
			pushes := c.Pushes("onPush", 0)
			if err := c.Close(); err != nil {
				t.Fatal(err)
			}
			if err := <-pending; !errors.Is(err, client.ErrClosed) {
				t.Fatalf("pending: %v", err)
			}
			if !errors.Is(c.Err(), client.ErrClosed) {
				t.Fatalf("Err = %v", c.Err())
			}
			if err := c.Request(ctx, "test.h.echo", nil, nil); !errors.Is(err, client.ErrClosed) {
				t.Fatalf("after close: %v", err)
			}
			if err := c.Close(); err != nil {
				t.Fatal(err)
			}
			select {
			case _, ok := <-pushes:
				if ok {
					t.Fatal("push after close")
				}
			case <-ctx.Done():
				t.Fatal("Pushes channel not closed")
			}
		})
	}
}

func TestContextCancel(t *testing.T) {
	for _, tr := range transports {
		t.Run(tr, func(t *testing.T) {
			t.Parallel()
			_, c := setup(t, tr, fakeConfig{}, client.Config{})
			ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
			defer cancel()
			var resp wrapperspb.StringValue
			if err := c.Request(ctx, "test.h.late", wrapperspb.String("late"), &resp); !errors.Is(err, context.DeadlineExceeded) {
				t.Fatalf("got %v", err)
			}
			canceled, cancel2 := context.WithCancel(context.Background())
			cancel2()
			if err := c.Request(canceled, "test.h.echo", nil, nil); !errors.Is(err, context.Canceled) {
				t.Fatalf("canceled context: %v", err)
			}
			// The late response arrives while this request waits, and is dropped.
			ctx = testCtx(t)
			time.Sleep(100 * time.Millisecond)
			if err := c.Request(ctx, "test.h.late", wrapperspb.String("second"), &resp); err != nil || resp.GetValue() != "second" {
				t.Fatalf("got %v %q", err, resp.GetValue())
			}
			if c.Err() != nil {
				t.Fatal(c.Err())
			}
		})
	}
}

func TestConcurrentRequests(t *testing.T) {
	forEach(t, func(t *testing.T, tr string, ser runtime.Serializer) {
		_, c := setup(t, tr, fakeConfig{}, client.Config{Serializer: ser})
		ctx := testCtx(t)
		var wg sync.WaitGroup
		errs := make(chan error, 1000)
		for g := range 20 {
			wg.Go(func() {
				for i := range 50 {
					want := fmt.Sprintf("%d-%d", g, i)
					var resp wrapperspb.StringValue
					route := "test.h.echo"
					if i%2 == 1 {
						route = "x.y.echo" // not in the dictionary
					}
					if err := c.Request(ctx, route, wrapperspb.String(want), &resp); err != nil {
						errs <- err
						return
					}
					if resp.GetValue() != want {
						errs <- fmt.Errorf("got %q, want %q", resp.GetValue(), want)
						return
					}
					if i%10 == 0 {
						if err := c.Notify(ctx, "test.h.silent", nil); err != nil {
							errs <- err
							return
						}
					}
				}
			})
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			t.Error(err)
		}
	})
}

func TestHandshake(t *testing.T) {
	t.Parallel()
	user := json.RawMessage(`{"uid":"ann","level":3}`)
	srv, c := setup(t, "tcp", fakeConfig{user: user},
		client.Config{
			Serializer:    runtime.Protobuf,
			ClientType:    "bot",
			ClientVersion: "1.2.3",
			HandshakeUser: json.RawMessage(`{"token":"abc"}`),
			DictVersion:   "old",
		})
	req := <-srv.handshakes
	if req.Sys.Type != "bot" || req.Sys.Version != "1.2.3" || req.Sys.Serializer != "protobuf" || req.Sys.DictVersion != "old" {
		t.Fatalf("sys = %+v", req.Sys)
	}
	if string(req.User) != `{"token":"abc"}` {
		t.Fatalf("user = %s", req.User)
	}
	hs := c.Handshake()
	if hs.Code != 200 || hs.Sys.Heartbeat != 30 || string(hs.User) != string(user) || len(hs.Sys.Dict) != srv.dict.Len() {
		t.Fatalf("handshake reply = %+v", hs)
	}
	if c.Serializer() != runtime.Protobuf {
		t.Fatalf("serializer %v", c.Serializer().Name())
	}

	// Defaults, as the JS client sends them.
	c2 := dial(t, srv, client.Config{})
	req = <-srv.handshakes
	if req.Sys.Type != client.DefaultClientType || req.Sys.Version != client.DefaultClientVersion ||
		req.Sys.Serializer != "json" || string(req.Sys.RSA) != "{}" || string(req.Sys.ProtoVersion) != "0" || string(req.User) != "{}" {
		t.Fatalf("default handshake: %+v user %s", req.Sys, req.User)
	}
	c2.Close()
}

func TestHandshakeRefused(t *testing.T) {
	for _, code := range []int{500, 501} {
		for _, tr := range transports {
			t.Run(fmt.Sprint(tr, code), func(t *testing.T) {
				t.Parallel()
				srv := startFakeServer(tr, fakeConfig{code: code})
				t.Cleanup(srv.Close)
				c, err := client.Dial(testCtx(t), srv.addr)
				var he *client.HandshakeError
				if !errors.As(err, &he) || he.Code != code || c != nil {
					t.Fatalf("got %v, %v", c, err)
				}
			})
		}
	}
}

// TestHandshakeRefusedAndClosedAtOnceIsHandshakeError shows that a refusal the server
// follows at once with closing the connection (the reply and the close arriving together)
// is reported as the *HandshakeError with the reply's code, never as a lost connection.
func TestHandshakeRefusedAndClosedAtOnceIsHandshakeError(t *testing.T) {
	for _, code := range []int{wire.CodeBadHandshake, wire.CodeOldClient} {
		reply := pkg(wire.TypeHandshake, (&wire.HandshakeResponse{Code: code}).Marshal())
		for _, tr := range transports {
			t.Run(fmt.Sprint(tr, code), func(t *testing.T) {
				t.Parallel()
				addr := startRefuser(t, tr, reply)
				for i := range 200 {
					c, err := client.Dial(testCtx(t), addr)
					var he *client.HandshakeError
					if !errors.As(err, &he) || he.Code != code || c != nil {
						t.Fatalf("dial %d: got %v, %v; want a handshake error %d", i, c, err, code)
					}
				}
			})
		}
	}
}

func TestDialErrors(t *testing.T) {
	t.Parallel()
	srv := startFakeServer("ws", fakeConfig{serializer: "json"})
	t.Cleanup(srv.Close)
	ctx := testCtx(t)
	if _, err := (client.Config{Serializer: runtime.Protobuf}).Dial(ctx, srv.addr); err == nil || !strings.Contains(err.Error(), "serializer") {
		t.Fatalf("serializer mismatch: %v", err)
	}
	for _, addr := range []string{"http://x", "tcp://", "::"} {
		if _, err := client.Dial(ctx, addr); err == nil {
			t.Errorf("Dial(%q) succeeded", addr)
		}
	}
	if _, err := (client.Config{HandshakeUser: json.RawMessage("{")}).Dial(ctx, srv.addr); err == nil {
		t.Error("bad user JSON accepted")
	}
	short, cancel := context.WithTimeout(ctx, 10*time.Millisecond)
	defer cancel()
	// A server that never answers the handshake.
	if _, err := client.Dial(short, "tcp://"+strings.TrimPrefix(listenSilent(t), "tcp://")); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("silent server: %v", err)
	}
}

func TestSendRaw(t *testing.T) {
	for _, tr := range transports {
		t.Run(tr, func(t *testing.T) {
			t.Parallel()
			srv, c := setup(t, tr, fakeConfig{}, client.Config{})
			// Two packages in one frame.
			frame := dataPkg(wire.Message{Type: wire.Notify, Route: "a.b.one", Body: []byte("1")})
			frame = append(frame, dataPkg(wire.Message{Type: wire.Notify, Route: "a.b.two", Body: []byte("2")})...)
			if err := c.SendRaw(frame); err != nil {
				t.Fatal(err)
			}
			for _, want := range []string{"a.b.one", "a.b.two"} {
				if m := <-srv.received; m.Route != want {
					t.Fatalf("got %+v", m)
				}
			}
			// Garbage makes the fake server hang up.
			if err := c.SendRaw([]byte{9, 0, 0, 0}); err != nil {
				t.Fatal(err)
			}
			select {
			case <-c.Done():
			case <-time.After(5 * time.Second):
				t.Fatal("connection still open")
			}
			if !errors.Is(c.Err(), client.ErrConnectionLost) {
				t.Fatalf("Err = %v", c.Err())
			}
		})
	}
}

func TestHeartbeatCadence(t *testing.T) {
	for _, tr := range transports {
		t.Run(tr, func(t *testing.T) {
			t.Parallel()
			srv, c := setup(t, tr, fakeConfig{heartbeat: 1}, client.Config{})
			start := time.Now()
			prev := start
			for i := range 3 {
				select {
				case at := <-srv.heartbeats:
					if d := at.Sub(prev); d < 900*time.Millisecond || d > 1600*time.Millisecond {
						t.Fatalf("heartbeat %d came %v after the previous one", i, d)
					}
					prev = at
				case <-time.After(3 * time.Second):
					t.Fatalf("heartbeat %d missing", i)
				}
			}
			if c.Err() != nil {
				t.Fatal(c.Err())
			}
		})
	}
}

func TestHeartbeatTimeout(t *testing.T) {
	t.Parallel()
	srv, c := setup(t, "ws", fakeConfig{heartbeat: 1, noHeartbeatReply: true}, client.Config{})
	start := time.Now()
	select {
	case <-c.Done():
	case <-time.After(6 * time.Second):
		t.Fatal("no timeout")
	}
	// Heartbeat sent after 1 s, timeout 2 s after that.
	if d := time.Since(start); d < 2500*time.Millisecond {
		t.Fatalf("timed out after %v", d)
	}
	if !errors.Is(c.Err(), client.ErrHeartbeatTimeout) {
		t.Fatalf("Err = %v", c.Err())
	}
	if n := len(srv.heartbeats); n != 1 {
		t.Fatalf("%d heartbeats sent", n)
	}
}

func TestHeartbeatDisabled(t *testing.T) {
	t.Parallel()
	srv, c := setup(t, "ws", fakeConfig{heartbeat: 1, noHeartbeatReply: true}, client.Config{NoHeartbeat: true})
	select {
	case <-srv.heartbeats:
		t.Fatal("heartbeat sent")
	case <-c.Done():
		t.Fatalf("connection ended: %v", c.Err())
	case <-time.After(3500 * time.Millisecond):
	}
}
