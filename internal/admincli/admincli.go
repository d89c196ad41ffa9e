// Package admincli holds the mechanics of the `pomelo` admin commands
// (cmd/pomelo): `servers`, `kick` and `broadcast`, which reach every server
// of a cluster over its own server-to-server Connect transport with the
// cluster secret, and `client`, a REPL of the client protocol.
//
// The servers of a cluster come from its cluster file or from etcd (the
// members registered under a prefix). Each is asked AdminRemote.Status; a
// server answers (up), refuses the connection (down: nothing listens on its
// RPC address), or fails otherwise (unreachable: a timeout, a refused
// secret, a TLS listener). kick calls SessionRemote.KickByUid and broadcast
// AdminRemote.BroadcastAll on every frontend.
package admincli

import (
	"cmp"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"slices"
	"strconv"
	"sync"
	"syscall"
	"time"

	"connectrpc.com/connect"

	sysv1 "github.com/pomelo-go/pomelo/gen/pomelo/sys/v1"
	"github.com/pomelo-go/pomelo/gen/pomelo/sys/v1/sysv1connect"
	"github.com/pomelo-go/pomelo/runtime"
	"github.com/pomelo-go/pomelo/runtime/cluster"
	"github.com/pomelo-go/pomelo/runtime/etcdmember"
)

// Target names a cluster and how to authenticate to it.
type Target struct {
	// File is the path of a cluster file; its servers are the cluster's.
	File string
	// Etcd are etcd endpoints; the servers registered under Prefix are the
	// cluster's. Exactly one of File and Etcd is set.
	Etcd []string
	// Prefix is the etcd key prefix (default etcdmember.DefaultPrefix).
	Prefix string
	// Secret is the cluster secret; when empty, the cluster file's.
	Secret string
	// Timeout bounds each call to a server (default DefaultTimeout).
	Timeout time.Duration
}

// DefaultTimeout bounds each call to a server of a Target without one.
const DefaultTimeout = 3 * time.Second

// Resolve returns the servers of the cluster, sorted by id, and the secret
// to call them with.
func (t Target) Resolve(ctx context.Context) ([]cluster.ServerInfo, string, error) {
	var servers []cluster.ServerInfo
	secret := t.Secret
	switch {
	case t.File != "" && len(t.Etcd) > 0:
		return nil, "", errors.New("give --cluster or --etcd, not both")
	case t.File != "":
		f, err := cluster.LoadFile(t.File)
		if err != nil {
			return nil, "", err
		}
		servers = f.Servers
		if secret == "" {
			secret = f.Secret
		}
	case len(t.Etcd) > 0:
		m, err := etcdmember.New(ctx, etcdmember.Config{Endpoints: t.Etcd, Prefix: t.Prefix, ResyncInterval: -1, Logger: slog.New(slog.DiscardHandler)})
		if err != nil {
			return nil, "", fmt.Errorf("etcd: %w", err)
		}
		servers = m.Servers()
		m.Close()
	default:
		return nil, "", errors.New("no cluster: give --cluster FILE or --etcd URL")
	}
	servers = slices.Clone(servers)
	slices.SortFunc(servers, func(a, b cluster.ServerInfo) int { return cmp.Compare(a.ID, b.ID) })
	return servers, secret, nil
}

// Conn calls the sys services of a cluster's servers.
type Conn struct {
	http    *http.Client
	timeout time.Duration
	opts    []connect.ClientOption
}

// NewConn returns a Conn that authenticates with secret (none when empty)
// and bounds each call by timeout (DefaultTimeout when not positive).
// Servers are dialled over cleartext HTTP/2, the cluster's default
// transport.
func NewConn(secret string, timeout time.Duration) *Conn {
	if timeout <= 0 {
		timeout = DefaultTimeout
	}
	var protocols http.Protocols
	protocols.SetUnencryptedHTTP2(true)
	tr := &http.Transport{
		Protocols:       &protocols,
		DialContext:     (&net.Dialer{Timeout: timeout}).DialContext,
		TLSClientConfig: &tls.Config{},
	}
	return &Conn{
		http:    &http.Client{Transport: bearer{base: tr, secret: secret}},
		timeout: timeout,
	}
}

// Close releases the Conn's idle connections.
func (c *Conn) Close() { c.http.CloseIdleConnections() }

// bearer adds the cluster secret to every request, as servers do.
type bearer struct {
	base   http.RoundTripper
	secret string
}

func (b bearer) RoundTrip(r *http.Request) (*http.Response, error) {
	if b.secret != "" {
		r = r.Clone(r.Context())
		r.Header.Set("Authorization", "Bearer "+b.secret)
	}
	return b.base.RoundTrip(r)
}

func baseURL(s cluster.ServerInfo) string { return "http://" + s.RPCAddr() }

func (c *Conn) admin(s cluster.ServerInfo) sysv1connect.AdminRemoteClient {
	return sysv1connect.NewAdminRemoteClient(c.http, baseURL(s), c.opts...)
}

func (c *Conn) sessions(s cluster.ServerInfo) sysv1connect.SessionRemoteClient {
	return sysv1connect.NewSessionRemoteClient(c.http, baseURL(s), c.opts...)
}

// The states of a server.
const (
	// StateUp is a server that answered.
	StateUp = "up"
	// StateDown is a server whose RPC address refused the connection:
	// nothing listens there.
	StateDown = "down"
	// StateUnreachable is a server that could not be asked for another
	// reason (a timeout, a refused secret, ...): see ServerStatus.Err.
	StateUnreachable = "unreachable"
)

// ServerStatus is what Servers learnt of one server.
type ServerStatus struct {
	// Info is the server's entry in the cluster file or etcd.
	Info cluster.ServerInfo
	// State is StateUp, StateDown or StateUnreachable.
	State string
	// Err is why the server is not up.
	Err error
	// Status is the server's answer when it is up.
	Status *sysv1.StatusResponse
}

// Servers asks every server for its status, concurrently, and returns the
// answers in the order of servers.
func (c *Conn) Servers(ctx context.Context, servers []cluster.ServerInfo) []ServerStatus {
	out := make([]ServerStatus, len(servers))
	each(servers, func(i int, s cluster.ServerInfo) {
		ctx, cancel := context.WithTimeout(ctx, c.timeout)
		defer cancel()
		out[i].Info = s
		res, err := c.admin(s).Status(ctx, connect.NewRequest(&sysv1.StatusRequest{}))
		if err != nil {
			out[i].State, out[i].Err = classify(err)
			return
		}
		out[i].State, out[i].Status = StateUp, res.Msg
	})
	return out
}

// classify tells a server that is not running (down) from one that could
// not be asked (unreachable) and from one that answered with an error (up,
// the error a *runtime.Error).
func classify(err error) (string, error) {
	if errors.Is(err, syscall.ECONNREFUSED) {
		return StateDown, errors.New("connection refused")
	}
	var ce *connect.Error
	if !errors.As(err, &ce) {
		return StateUnreachable, err
	}
	for _, d := range ce.Details() {
		if v, derr := d.Value(); derr == nil {
			if pe, ok := v.(*sysv1.Error); ok {
				return StateUp, runtime.ErrorFromProto(pe)
			}
		}
	}
	switch ce.Code() {
	case connect.CodeUnauthenticated:
		return StateUnreachable, errors.New("the cluster secret was refused")
	case connect.CodeUnimplemented:
		return StateUnreachable, errors.New("the server has no AdminRemote (an older version?)")
	}
	return StateUnreachable, err
}

// each runs fn for every server at once and waits.
func each(servers []cluster.ServerInfo, fn func(int, cluster.ServerInfo)) {
	var wg sync.WaitGroup
	for i, s := range servers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			fn(i, s)
		}()
	}
	wg.Wait()
}

// Result is the outcome of an action on one frontend.
type Result struct {
	// Server is the frontend.
	Server cluster.ServerInfo
	// N is how many sessions were acted on.
	N int
	// State is StateUp when the frontend answered, otherwise why not.
	State string
	// Err is set when the frontend did not do it.
	Err error
}

// frontends returns the frontends among servers.
func frontends(servers []cluster.ServerInfo) []cluster.ServerInfo {
	var out []cluster.ServerInfo
	for _, s := range servers {
		if s.Frontend {
			out = append(out, s)
		}
	}
	return out
}

// Kick kicks every session of uid on every frontend among servers with
// reason, and returns one result per frontend.
func (c *Conn) Kick(ctx context.Context, servers []cluster.ServerInfo, uid, reason string) []Result {
	fs := frontends(servers)
	out := make([]Result, len(fs))
	each(fs, func(i int, s cluster.ServerInfo) {
		ctx, cancel := context.WithTimeout(ctx, c.timeout)
		defer cancel()
		out[i] = Result{Server: s, State: StateUp}
		res, err := c.sessions(s).KickByUid(ctx, connect.NewRequest(&sysv1.KickByUidRequest{Uid: uid, Reason: reason}))
		if err != nil {
			out[i].State, out[i].Err = classify(err)
			return
		}
		out[i].N = int(res.Msg.Kicked)
	})
	return out
}

// Broadcast pushes payload under route to every session of every frontend
// among servers, and returns one result per frontend.
func (c *Conn) Broadcast(ctx context.Context, servers []cluster.ServerInfo, route string, payload *sysv1.Payload, boundOnly bool) []Result {
	fs := frontends(servers)
	out := make([]Result, len(fs))
	each(fs, func(i int, s cluster.ServerInfo) {
		ctx, cancel := context.WithTimeout(ctx, c.timeout)
		defer cancel()
		out[i] = Result{Server: s, State: StateUp}
		res, err := c.admin(s).BroadcastAll(ctx, connect.NewRequest(&sysv1.BroadcastAllRequest{Route: route, Payload: payload, BoundOnly: boundOnly}))
		if err != nil {
			out[i].State, out[i].Err = classify(err)
			return
		}
		out[i].N = int(res.Msg.Sent)
	})
	return out
}

// port renders a port, "-" for none.
func port(host string, p int) string {
	if p == 0 {
		return "-"
	}
	return net.JoinHostPort(host, strconv.Itoa(p))
}
