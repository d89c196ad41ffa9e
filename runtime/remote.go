package runtime

import (
	"context"
	"fmt"
	"net/http"
	"sync"

	"connectrpc.com/connect"
)

// RPCRegistrar mounts Connect handlers on a server's RPC listener. Generated
// Register...RemoteServer functions call it and return its error; the App
// implements it.
type RPCRegistrar interface {
	// MountRPC serves h under path (a Connect service path such as
	// "/chat.v1.ChatRemote/"). It returns an error, and serves nothing new,
	// when path is empty or does not start with "/", when h is nil, when
	// path is mounted already, or when the registrar cannot mount at all
	// (a zero value, say).
	MountRPC(path string, h http.Handler) error
	// RPCHandlerOptions are the options every Connect handler of the server
	// is built with (interceptors, authentication, limits).
	RPCHandlerOptions() []connect.HandlerOption
}

// RemoteInvoker finds servers for remote calls. The cluster implements it;
// generated remote clients are built on it.
type RemoteInvoker interface {
	// RouteServer picks the server of serverType that a call made with ctx
	// goes to, by the server type's route function and the route key of ctx
	// (see RouteKeyFromContext).
	RouteServer(ctx context.Context, serverType string) (serverID string, err error)
	// ServerIDs returns the ids of all servers of serverType, sorted.
	ServerIDs(serverType string) []string
	// RemoteConn returns the connection to a server.
	RemoteConn(serverID string) (*RemoteConn, error)
}

// RemoteConn is what a Connect client needs to reach one server. It caches
// one typed Connect client per procedure.
type RemoteConn struct {
	// ServerID is the server's id.
	ServerID string
	// HTTPClient carries the calls; it should reuse connections.
	HTTPClient connect.HTTPClient
	// BaseURL is the server's RPC base URL, such as "http://127.0.0.1:4001".
	BaseURL string
	// Options are applied to every client built on this connection.
	Options []connect.ClientOption

	clients sync.Map // procedure -> *connect.Client[Req, Res]
}

func remoteClient[Req, Res any](c *RemoteConn, procedure string) *connect.Client[Req, Res] {
	if v, ok := c.clients.Load(procedure); ok {
		return v.(*connect.Client[Req, Res])
	}
	cl := connect.NewClient[Req, Res](c.HTTPClient, c.BaseURL+procedure, c.Options...)
	v, _ := c.clients.LoadOrStore(procedure, cl)
	return v.(*connect.Client[Req, Res])
}

// CallRemoteTo calls procedure on the server serverID. Generated remote
// clients use it.
func CallRemoteTo[Req, Res any](ctx context.Context, inv RemoteInvoker, serverID, procedure string, req *Req) (*Res, error) {
	conn, err := inv.RemoteConn(serverID)
	if err != nil {
		return nil, err
	}
	res, err := remoteClient[Req, Res](conn, procedure).CallUnary(ctx, connect.NewRequest(req))
	if err != nil {
		return nil, err
	}
	return res.Msg, nil
}

// CallRemote calls procedure on the server of serverType chosen by the
// route function from ctx.
func CallRemote[Req, Res any](ctx context.Context, inv RemoteInvoker, serverType, procedure string, req *Req) (*Res, error) {
	id, err := inv.RouteServer(ctx, serverType)
	if err != nil {
		return nil, err
	}
	return CallRemoteTo[Req, Res](ctx, inv, id, procedure, req)
}

// RemoteResult is one server's answer to a call made to every server of a
// type.
type RemoteResult[Res any] struct {
	// ServerID is the server that answered.
	ServerID string
	// Response is its response when Err is nil.
	Response *Res
	// Err is its error.
	Err error
}

// CallRemoteAll calls procedure on every server of serverType concurrently
// and returns each server's result, in server id order. With no server of
// the type it returns an UNAVAILABLE error.
func CallRemoteAll[Req, Res any](ctx context.Context, inv RemoteInvoker, serverType, procedure string, req *Req) ([]RemoteResult[Res], error) {
	ids := inv.ServerIDs(serverType)
	if len(ids) == 0 {
		return nil, Errorf(ErrUnavailable, "no server of type %q", serverType)
	}
	out := make([]RemoteResult[Res], len(ids))
	var wg sync.WaitGroup
	for i, id := range ids {
		wg.Add(1)
		go func() {
			defer wg.Done()
			res, err := CallRemoteTo[Req, Res](ctx, inv, id, procedure, req)
			out[i] = RemoteResult[Res]{ServerID: id, Response: res, Err: err}
		}()
	}
	wg.Wait()
	return out, nil
}

// ErrNoRouteKey is returned by session-routed remote calls made with a
// context that carries neither a session nor a route key.
var ErrNoRouteKey = fmt.Errorf("pomelo: no session or route key in context; use WithRouteKey or call a server by id")
