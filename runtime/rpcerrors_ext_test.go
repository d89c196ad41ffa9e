package runtime_test

import (
	"context"
	"errors"
	"net"
	"net/http"
	"net/http/httptest"
	"testing"

	"connectrpc.com/connect"

	testingv1 "github.com/pomelo-go/pomelo/gen/pomelo/testing/v1"
	"github.com/pomelo-go/pomelo/runtime"
)

// failingRemote answers every call with the error it holds.
type failingRemote struct {
	testingv1.UnimplementedEchoRemoteServer
	err error
}

func (f failingRemote) Whoami(context.Context, *testingv1.WhoamiRequest) (*testingv1.WhoamiResponse, error) {
	return nil, f.err
}

// oneServer is a RemoteInvoker with a single server.
type oneServer struct{ conn *runtime.RemoteConn }

func (o oneServer) RouteServer(context.Context, string) (string, error) { return "s", nil }
func (o oneServer) ServerIDs(string) []string                           { return []string{"s"} }
func (o oneServer) RemoteConn(string) (*runtime.RemoteConn, error)      { return o.conn, nil }

func TestErrorInterceptorCarriesErrors(t *testing.T) {
	cases := []struct {
		name    string
		handler error
		want    *runtime.Error
	}{
		{"application error", runtime.NewError(403, "not your room"), &runtime.Error{Code: 403, Message: "not your room"}},
		{"framework error", runtime.Errorf(runtime.ErrBadRequest, "bad rid"), &runtime.Error{Code: 500, Name: runtime.ErrBadRequest.Name, Message: "bad rid"}},
		{"plain error", errors.New("disk full"), &runtime.Error{Code: 500, Name: runtime.ErrInternal.Name, Message: "disk full"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			mux := http.NewServeMux()
			reg := &genMuxRegistrar{mux: mux, opts: []connect.HandlerOption{connect.WithInterceptors(runtime.ErrorInterceptor())}}
			if err := testingv1.RegisterEchoRemoteServer(reg, failingRemote{err: c.handler}); err != nil {
				t.Fatal(err)
			}
			srv := httptest.NewServer(mux)
			defer srv.Close()
			inv := oneServer{conn: &runtime.RemoteConn{ServerID: "s", HTTPClient: srv.Client(), BaseURL: srv.URL,
				Options: []connect.ClientOption{connect.WithInterceptors(runtime.ErrorInterceptor())}}}
			_, err := testingv1.NewEchoRemoteClient(inv).WhoamiTo(context.Background(), "s", &testingv1.WhoamiRequest{})
			var got *runtime.Error
			if !errors.As(err, &got) || *got != *c.want {
				t.Fatalf("caller got %#v, want %#v", err, c.want)
			}
		})
	}
	t.Run("unreachable server", func(t *testing.T) {
		ln, _ := net.Listen("tcp", "127.0.0.1:0")
		addr := ln.Addr().String()
		ln.Close()
		inv := oneServer{conn: &runtime.RemoteConn{ServerID: "s", HTTPClient: http.DefaultClient, BaseURL: "http://" + addr,
			Options: []connect.ClientOption{connect.WithInterceptors(runtime.ErrorInterceptor())}}}
		_, err := testingv1.NewEchoRemoteClient(inv).WhoamiTo(context.Background(), "s", &testingv1.WhoamiRequest{})
		if !errors.Is(err, runtime.ErrUnavailable) {
			t.Fatalf("err = %v, want UNAVAILABLE", err)
		}
	})
}

func TestConnectErrorsWithoutPomeloErrorAreInternalFailures(t *testing.T) {
	mux := http.NewServeMux()
	reg := &genMuxRegistrar{mux: mux, opts: []connect.HandlerOption{connect.WithInterceptors(runtime.ErrorInterceptor())}}
	if err := testingv1.RegisterEchoRemoteServer(reg, struct {
		testingv1.UnimplementedEchoRemoteServer
	}{}); err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(mux)
	defer srv.Close()
	inv := oneServer{conn: &runtime.RemoteConn{ServerID: "s", HTTPClient: srv.Client(), BaseURL: srv.URL,
		Options: []connect.ClientOption{connect.WithInterceptors(runtime.ErrorInterceptor())}}}
	// The Unimplemented stub answers a bare Connect error.
	_, err := testingv1.NewEchoRemoteClient(inv).WhoamiTo(context.Background(), "s", &testingv1.WhoamiRequest{})
	var e *runtime.Error
	if !errors.As(err, &e) || e.Name != runtime.ErrInternal.Name {
		t.Fatalf("caller got %v, want INTERNAL", err)
	}
	if red := e.Redacted(); red.Message != "internal error" {
		t.Errorf("a client would see %q", red.Message)
	}
}
