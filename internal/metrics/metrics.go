// Package metrics holds the Prometheus instruments of one server, in a
// registry of its own (several servers of one process do not collide; every
// series carries the label server = server id). The framework's hot paths
// call the methods of *Server; a nil *Server records nothing, so a server
// without metrics pays one nil check per call.
//
// Label values are bounded: routes are those of the generated route tables
// (runtime.RegisteredRoutesOf) and of the handlers registered on the server,
// anything else is counted under OtherRoute; codes are the stable error
// names, "ok", or AppErrorCode for application errors without a name; kick
// reasons are the framework's, anything else OtherReason.
package metrics

import (
	"context"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"connectrpc.com/connect"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/pomelo-go/pomelo/runtime"
)

// Label values used when the real value is not one of the bounded set.
const (
	// OtherRoute is the route label of requests whose route is in no route
	// table known to the server.
	OtherRoute = "other"
	// OtherReason is the reason label of kicks with a reason of the
	// application's own.
	OtherReason = "other"
	// OKCode is the code label of a success.
	OKCode = "ok"
	// AppErrorCode is the code label of an application error without a
	// stable name (runtime.NewError).
	AppErrorCode = "APPLICATION"
)

// KnownKickReasons are the kick reasons counted under their own label
// value; Options.KickReasons adds to them.
var KnownKickReasons = []string{"relogin", "slow consumer", "server shutdown"}

// Options configures a server's instruments.
type Options struct {
	// Server is the server id, the server label of every series.
	Server string
	// Routes reports whether a route outside the generated tables is one
	// of the server's own (handlers registered on it). May be nil.
	Routes func(route string) bool
	// KickReasons are counted under their own label value besides
	// KnownKickReasons.
	KickReasons []string
}

// Server is one server's instruments.
type Server struct {
	reg   *prometheus.Registry
	wrap  prometheus.Registerer
	local func(string) bool

	requests *prometheus.CounterVec
	duration *prometheus.HistogramVec

	routesMu sync.Mutex
	routes   atomic.Pointer[map[string]*routeStats]
	other    *routeStats

	forwardSent    prometheus.Counter
	forwardHandled prometheus.Counter
	batchSize      prometheus.Observer
	pushes         prometheus.Counter
	pushBatch      prometheus.Observer
	pushDropped    prometheus.Counter
	kicks          map[string]prometheus.Counter
	kickOther      prometheus.Counter
	rpc            *prometheus.CounterVec // handled
	rpcOK          sync.Map               // procedure -> prometheus.Counter
	calls          *prometheus.CounterVec // made
	callsOK        sync.Map
}

// routeStats holds the pre-resolved children of one route label value.
type routeStats struct {
	name       string
	ok         prometheus.Counter
	local, fwd prometheus.Observer
	codes      sync.Map // code -> prometheus.Counter
}

// New makes the instruments of one server in a new registry, with the Go
// runtime and process collectors.
func New(o Options) *Server {
	reg := prometheus.NewRegistry()
	wrap := prometheus.WrapRegistererWith(prometheus.Labels{"server": o.Server}, reg)
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	m := &Server{reg: reg, wrap: wrap, local: o.Routes}
	m.requests = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "pomelo_requests_total",
		Help: "Client requests and notifies a frontend answered (or ran), by route and code.",
	}, []string{"route", "code"})
	m.duration = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name:    "pomelo_request_duration_seconds",
		Help:    "Time from a client message's dispatch to its answer on the frontend, by route and whether it was forwarded to a backend.",
		Buckets: []float64{.0001, .00025, .0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10},
	}, []string{"route", "forwarded"})
	fwd := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "pomelo_forwarded_messages_total",
		Help: "Client messages forwarded between servers: sent by a frontend, handled by a backend.",
	}, []string{"direction"})
	m.forwardSent = fwd.WithLabelValues("sent")
	m.forwardHandled = fwd.WithLabelValues("handled")
	batch := prometheus.NewHistogram(prometheus.HistogramOpts{
		Name:    "pomelo_forward_batch_size",
		Help:    "Forwarded messages written as one message of a forward stream.",
		Buckets: []float64{1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024},
	})
	m.batchSize = batch
	m.pushes = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "pomelo_pushes_total",
		Help: "Push deliveries a server made to frontends (one per frontend per push, broadcasts included).",
	})
	pushBatch := prometheus.NewHistogram(prometheus.HistogramOpts{
		Name:    "pomelo_push_batch_size",
		Help:    "Pushes written as one message of a push stream to a frontend.",
		Buckets: []float64{1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024},
	})
	m.pushBatch = pushBatch
	m.pushDropped = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "pomelo_push_stream_dropped_total",
		Help: "Pushes to frontends that failed on a push stream: refused because too many were queued, or unanswered when the stream broke (those may have been delivered).",
	})
	kicks := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "pomelo_kicks_total",
		Help: "Sessions a frontend kicked, by reason.",
	}, []string{"reason"})
	m.kicks = map[string]prometheus.Counter{}
	for _, r := range append(append([]string(nil), KnownKickReasons...), o.KickReasons...) {
		m.kicks[r] = kicks.WithLabelValues(r)
	}
	m.kickOther = kicks.WithLabelValues(OtherReason)
	m.rpc = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "pomelo_rpc_handled_total",
		Help: "Server-to-server unary calls a server handled, by kind (sys: the framework's sys services; user: remotes), procedure and code.",
	}, []string{"kind", "procedure", "code"})
	m.calls = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "pomelo_rpc_calls_total",
		Help: "Server-to-server unary calls a server made, by kind (sys, user), procedure and code (UNAVAILABLE when the callee could not be reached).",
	}, []string{"kind", "procedure", "code"})
	m.other = m.newRoute(OtherRoute)
	routes := map[string]*routeStats{}
	for _, r := range runtime.RegisteredRoutesOf(runtime.RouteHandler) {
		routes[r] = m.newRoute(r)
	}
	m.routes.Store(&routes)
	m.wrap.MustRegister(m.requests, m.duration, fwd, batch, m.pushes, pushBatch, m.pushDropped, kicks, m.rpc, m.calls)
	return m
}

func (m *Server) newRoute(name string) *routeStats {
	return &routeStats{
		name:  name,
		ok:    m.requests.WithLabelValues(name, OKCode),
		local: m.duration.WithLabelValues(name, "false"),
		fwd:   m.duration.WithLabelValues(name, "true"),
	}
}

// Registry returns the server's registry, the one /metrics serves.
func (m *Server) Registry() *prometheus.Registry { return m.reg }

// route returns the stats of a route, OtherRoute's when it is unknown.
func (m *Server) route(route string) *routeStats {
	if rs, ok := (*m.routes.Load())[route]; ok {
		return rs
	}
	if m.local == nil || !m.local(route) {
		return m.other
	}
	m.routesMu.Lock()
	defer m.routesMu.Unlock()
	old := *m.routes.Load()
	if rs, ok := old[route]; ok {
		return rs
	}
	routes := make(map[string]*routeStats, len(old)+1)
	for k, v := range old {
		routes[k] = v
	}
	rs := m.newRoute(route)
	routes[route] = rs
	m.routes.Store(&routes)
	return rs
}

// Code returns the code label of an error: OKCode for nil, the stable
// name, or AppErrorCode.
func Code(err error) string {
	if err == nil {
		return OKCode
	}
	e := runtime.AsError(err)
	if e.Name == "" {
		return AppErrorCode
	}
	return e.Name
}

// Request records a client message a frontend answered: its route,
// whether it was forwarded, its error and how long it took.
func (m *Server) Request(route string, forwarded bool, err error, d time.Duration) {
	if m == nil {
		return
	}
	rs := m.route(route)
	if err == nil {
		rs.ok.Inc()
	} else {
		code := Code(err)
		c, ok := rs.codes.Load(code)
		if !ok {
			c, _ = rs.codes.LoadOrStore(code, m.requests.WithLabelValues(rs.name, code))
		}
		c.(prometheus.Counter).Inc()
	}
	if forwarded {
		rs.fwd.Observe(d.Seconds())
	} else {
		rs.local.Observe(d.Seconds())
	}
}

// Forwarded records a client message a frontend forwards to a backend.
func (m *Server) Forwarded() {
	if m != nil {
		m.forwardSent.Inc()
	}
}

// ForwardHandled records a forwarded message a backend handled.
func (m *Server) ForwardHandled() {
	if m != nil {
		m.forwardHandled.Inc()
	}
}

// ForwardBatch records n forwarded messages written as one stream message.
func (m *Server) ForwardBatch(n int) {
	if m != nil {
		m.batchSize.Observe(float64(n))
	}
}

// Pushed records one push delivery to a frontend.
func (m *Server) Pushed() {
	if m != nil {
		m.pushes.Inc()
	}
}

// PushBatch records n pushes written as one push stream message.
func (m *Server) PushBatch(n int) {
	if m != nil {
		m.pushBatch.Observe(float64(n))
	}
}

// PushStreamDropped records n pushes that failed on a push stream.
func (m *Server) PushStreamDropped(n int) {
	if m != nil {
		m.pushDropped.Add(float64(n))
	}
}

// Kicked records a kick with reason.
func (m *Server) Kicked(reason string) {
	if m == nil {
		return
	}
	if c, ok := m.kicks[reason]; ok {
		c.Inc()
		return
	}
	m.kickOther.Inc()
}

// SysPrefix starts the procedures of the framework's sys services.
const SysPrefix = "/pomelo.sys.v1."

// RPCInterceptor counts the unary calls the server's Connect handlers
// handle (pomelo_rpc_handled_total) and those its clients make
// (pomelo_rpc_calls_total). Put it where it sees the framework's errors:
// inside the error interceptor on handlers, outside it on clients. It is
// nil-safe: a nil *Server's interceptor passes calls through.
func (m *Server) RPCInterceptor() connect.Interceptor {
	return connect.UnaryInterceptorFunc(func(next connect.UnaryFunc) connect.UnaryFunc {
		if m == nil {
			return next
		}
		return func(ctx context.Context, req connect.AnyRequest) (connect.AnyResponse, error) {
			res, err := next(ctx, req)
			vec, oks := m.rpc, &m.rpcOK
			if req.Spec().IsClient {
				vec, oks = m.calls, &m.callsOK
			}
			proc := req.Spec().Procedure
			if err == nil {
				c, ok := oks.Load(proc)
				if !ok {
					c, _ = oks.LoadOrStore(proc, vec.WithLabelValues(kindOf(proc), proc, OKCode))
				}
				c.(prometheus.Counter).Inc()
				return res, err
			}
			vec.WithLabelValues(kindOf(proc), proc, Code(err)).Inc()
			return res, err
		}
	})
}

func kindOf(procedure string) string {
	if strings.HasPrefix(procedure, SysPrefix) {
		return "sys"
	}
	return "user"
}

// GaugeFunc registers a gauge read at scrape time.
func (m *Server) GaugeFunc(name, help string, fn func() float64) {
	m.wrap.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: name, Help: help}, fn))
}

// CounterFunc registers a counter read at scrape time.
func (m *Server) CounterFunc(name, help string, fn func() float64) {
	m.wrap.MustRegister(prometheus.NewCounterFunc(prometheus.CounterOpts{Name: name, Help: help}, fn))
}

// LabeledGauges registers a gauge with one variable label whose values
// and their numbers fn returns at scrape time.
func (m *Server) LabeledGauges(name, help, label string, fn func() map[string]float64) {
	m.wrap.MustRegister(&labeledGauges{desc: prometheus.NewDesc(name, help, []string{label}, nil), fn: fn})
}

type labeledGauges struct {
	desc *prometheus.Desc
	fn   func() map[string]float64
}

func (g *labeledGauges) Describe(ch chan<- *prometheus.Desc) { ch <- g.desc }

func (g *labeledGauges) Collect(ch chan<- prometheus.Metric) {
	for v, n := range g.fn() {
		ch <- prometheus.MustNewConstMetric(g.desc, prometheus.GaugeValue, n, v)
	}
}
