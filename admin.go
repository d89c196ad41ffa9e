package pomelo

import (
	"errors"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pomelo-go/pomelo/internal/admin"
	"github.com/pomelo-go/pomelo/internal/metrics"
	"github.com/pomelo-go/pomelo/internal/server"
	"github.com/pomelo-go/pomelo/runtime/session"
)

// adminState is an App's admin listener (Config.AdminAddr) and the
// metrics it serves.
type adminState struct {
	metrics  *metrics.Server // nil without Config.AdminAddr
	draining atomic.Bool     // set once Serve's context ended

	mu  sync.Mutex
	ln  net.Listener
	srv *http.Server
}

// newMetrics makes the server's instruments when it has an admin listener.
// srv returns the server once made (routes registered on it are counted
// under their own label).
func newMetrics(cfg Config, srv func() *server.Server) *metrics.Server {
	if cfg.AdminAddr == "" {
		return nil
	}
	return metrics.New(metrics.Options{
		Server: cfg.ID,
		Routes: func(route string) bool {
			s := srv()
			if s == nil {
				return false
			}
			_, ok := s.Handlers().Lookup(route)
			return ok
		},
	})
}

// instrument registers the series read at scrape time.
func (a *App) instrument() {
	m := a.admin.metrics
	if m == nil {
		return
	}
	m.LabeledGauges("pomelo_cluster_members", "Servers in this server's view of the membership, by type.", "type", func() map[string]float64 {
		out := map[string]float64{}
		for t, n := range a.node.MemberCounts() {
			out[t] = float64(n)
		}
		return out
	})
	m.GaugeFunc("pomelo_forward_queue_depth", "Forwarded messages queued on this frontend's forward streams, not yet written.", func() float64 {
		q, _ := a.node.ForwardQueueDepth()
		return float64(q)
	})
	m.GaugeFunc("pomelo_forward_pending", "Forwarded requests of this frontend waiting for their response.", func() float64 {
		_, p := a.node.ForwardQueueDepth()
		return float64(p)
	})
	if !a.cfg.Frontend {
		return
	}
	m.LabeledGauges("pomelo_connections", "Open client connections, by transport.", "transport", func() map[string]float64 {
		c := a.srv.Connector()
		if c == nil {
			return map[string]float64{"ws": 0, "tcp": 0}
		}
		ws, tcp := c.CountByTransport()
		return map[string]float64{"ws": float64(ws), "tcp": float64(tcp)}
	})
	sessions := a.srv.Sessions()
	m.GaugeFunc("pomelo_sessions", "Sessions a frontend holds.", func() float64 { return float64(sessions.Count()) })
	m.GaugeFunc("pomelo_sessions_bound", "Sessions a frontend holds that are bound to a uid.", func() float64 { return float64(sessions.BoundCount()) })
	m.GaugeFunc("pomelo_sessions_suspended", "Sessions a frontend holds whose connection dropped, waiting within their resume window.", func() float64 { return float64(sessions.SuspendedCount()) })
	m.CounterFunc("pomelo_push_deliveries_total", "Pushes a frontend queued to client connections (one per receiving session).", func() float64 {
		return float64(sessions.Pushed())
	})
	sessions.OnClosed(func(_ *session.Session, reason string) {
		if reason != "" { // a close with a reason is a kick
			m.Kicked(reason)
		}
	})
}

// listenAdmin opens and serves the admin listener, when there is one.
func (a *App) listenAdmin() error {
	if a.cfg.AdminAddr == "" {
		return nil
	}
	ln, err := net.Listen("tcp", a.cfg.AdminAddr)
	if err != nil {
		return err
	}
	h := admin.Handler(admin.Config{Gatherer: a.admin.metrics.Registry(), Ready: a.isReady, Pprof: a.cfg.Pprof})
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second}
	a.admin.mu.Lock()
	a.admin.ln, a.admin.srv = ln, srv
	a.admin.mu.Unlock()
	go func() {
		if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			a.log.Error("pomelo: admin listener stopped", "server", a.cfg.ID, "err", err)
		}
	}()
	return nil
}

// closeAdmin closes the admin listener.
func (a *App) closeAdmin() {
	a.admin.mu.Lock()
	srv := a.admin.srv
	a.admin.mu.Unlock()
	if srv != nil {
		srv.Close()
	}
}

// isReady reports whether the server listens, has joined the cluster and is
// not draining.
func (a *App) isReady() bool {
	select {
	case <-a.ready:
		return !a.admin.draining.Load()
	default:
		return false
	}
}

// AdminAddr returns the bound address of the admin listener once serving
// (Config.AdminAddr), or nil.
func (a *App) AdminAddr() net.Addr {
	a.admin.mu.Lock()
	defer a.admin.mu.Unlock()
	if a.admin.ln == nil {
		return nil
	}
	return a.admin.ln.Addr()
}
