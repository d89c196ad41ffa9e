// Package bench is the load tool behind `pomelo bench`: scenarios that
// drive a Pomelo frontend (this project's or any server of the chat demo's
// contract, such as a real Pomelo) with many Go clients over WebSocket or raw
// TCP, and measure throughput, latency, errors, and the CPU time and memory
// of the server processes.
//
//   - Echo: N clients, K requests in flight per client, each waiting for its
//     response before sending the next: round trips per second and their
//     latency.
//   - Fanout: N clients in one room, M messages in flight in all, each
//     message pushed by the server to every member: deliveries per second
//     and the latency from send to delivery.
//   - Idle: N connections that only handshake and heartbeat: the resident
//     memory of the server processes per connection.
//
// Every run warms up, measures for a fixed duration, then stops by itself:
// every request has a timeout, setup fails fast with a *SetupError naming
// the first failure, and the clients are closed before a scenario returns.
package bench

import (
	"context"
	"errors"
	"fmt"
	"os"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// Config is one run of a scenario.
type Config struct {
	// Target is the application under load.
	Target Target
	// Clients is the number of clients (connections).
	Clients int
	// InFlight is, for Echo, the requests in flight per client; for Fanout,
	// the messages in flight in all (default 1).
	InFlight int
	// Warmup is run before measuring; Duration is the measured window.
	Warmup, Duration time.Duration
	// PIDs are the server processes whose CPU time and RSS are reported.
	PIDs []int
	// Size is the padding in bytes of each echo request body.
	Size int
	// Enter makes Idle's clients enter a room (Routes.Entry) after the
	// handshake, so each holds a bound session; 50 clients a room.
	Enter bool
	// Drain bounds the wait, after the window, for the deliveries of the
	// messages already accepted (Fanout; default 5 s).
	Drain time.Duration
	// Parallel is how many clients connect at once (default 64).
	Parallel int
	// Name prefixes the user names and rooms (default bench-PID-TIME), so
	// that runs do not meet in one room.
	Name string
	// Logf, when set, receives progress lines.
	Logf func(format string, args ...any)
}

func (c *Config) defaults() error {
	c.Target.defaults()
	if err := c.Target.check(); err != nil {
		return err
	}
	if c.Clients <= 0 {
		return errors.New("clients must be at least 1")
	}
	if c.InFlight <= 0 {
		c.InFlight = 1
	}
	if c.Duration <= 0 {
		return errors.New("duration must be positive")
	}
	if c.Warmup < 0 {
		c.Warmup = 0
	}
	if c.Drain <= 0 {
		c.Drain = 5 * time.Second
	}
	if c.Parallel <= 0 {
		c.Parallel = 64
	}
	if c.Name == "" {
		c.Name = fmt.Sprintf("bench-%d-%d", os.Getpid(), time.Now().Unix()%100000)
	}
	if c.Logf == nil {
		c.Logf = func(string, ...any) {}
	}
	for _, pid := range c.PIDs {
		if _, err := readProc(pid); err != nil {
			return err
		}
	}
	return checkFDs(c.Clients + c.Parallel + 32)
}

// checkFDs raises the soft file descriptor limit to the hard one if need
// be, and fails when need descriptors do not fit.
func checkFDs(need int) error {
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		return nil
	}
	if uint64(need) <= lim.Cur {
		return nil
	}
	if uint64(need) <= lim.Max {
		raised := lim
		raised.Cur = lim.Max
		if syscall.Setrlimit(syscall.RLIMIT_NOFILE, &raised) == nil {
			return nil
		}
	}
	return fmt.Errorf("%d clients need about %d file descriptors; the limit is %d (ulimit -n)", need-32, need, lim.Max)
}

// Result is what a run measured.
type Result struct {
	// Scenario is "echo", "fanout" or "idle".
	Scenario string `json:"scenario"`
	// Target and Transport say what was measured.
	Target    string `json:"target"`
	Transport string `json:"transport"`
	// Clients and InFlight are those of the Config.
	Clients  int `json:"clients"`
	InFlight int `json:"inFlight"`
	// Start is when the measured window began.
	Start time.Time `json:"start"`
	// WarmupSeconds is the warm-up; Seconds the measured window, shorter
	// than asked when Interrupted.
	WarmupSeconds float64 `json:"warmupSeconds"`
	Seconds       float64 `json:"seconds"`
	Interrupted   bool    `json:"interrupted,omitempty"`
	// Ops are the operations completed in the window: echo round trips,
	// fan-out deliveries, idle connections held; OpsPerSecond their rate.
	// Unit names them, Op names one.
	Unit         string  `json:"unit"`
	Op           string  `json:"op"`
	Ops          int64   `json:"ops"`
	OpsPerSecond float64 `json:"opsPerSecond"`
	// Messages is, for Fanout, the messages accepted in the window.
	Messages          int64   `json:"messages,omitempty"`
	MessagesPerSecond float64 `json:"messagesPerSecond,omitempty"`
	// Latency is the echo round trip or the fan-out delivery latency
	// (send to push) of the operations of the window; SendLatency the
	// fan-out's send request round trip.
	Latency     *Summary `json:"latency,omitempty"`
	SendLatency *Summary `json:"sendLatency,omitempty"`
	// Totals counts the whole run, warm-up and drain included.
	Totals Totals `json:"totals"`
	// Errors counts the failed operations of the whole run by kind
	// (ErrKind...).
	Errors map[string]int64 `json:"errors,omitempty"`
	// ErrorSamples gives the first error of each kind.
	ErrorSamples map[string]string `json:"errorSamples,omitempty"`
	// Servers are the processes of Config.PIDs.
	Servers []ServerStats `json:"servers,omitempty"`
	// ToolCPUSeconds is the CPU time of this process (the load) during
	// the window: on a shared machine it competes with the servers.
	ToolCPUSeconds float64 `json:"toolCpuSeconds"`
	// CPUPerOpUS is the CPU time of all Servers during the window per
	// operation of the window, in microseconds.
	CPUPerOpUS float64 `json:"cpuPerOpUs,omitempty"`
	// RSSPerConnKB is, for Idle, the growth of the Servers' RSS (summed)
	// from before the first connection to the end of the window, per
	// connection open at the end.
	RSSPerConnKB float64 `json:"rssPerConnKB,omitempty"`
}

// Totals are the counts of a whole run, by which it checks itself.
type Totals struct {
	// Sent requests (echo round trips, fan-out sends); Received are their
	// successful responses. After a run, Sent == Received + the errors of
	// requests.
	Sent     int64 `json:"sent"`
	Received int64 `json:"received"`
	// Deliveries are the pushes received (Fanout); Expected is Received x
	// Clients: every member gets every accepted message, the sender too.
	Deliveries int64 `json:"deliveries,omitempty"`
	Expected   int64 `json:"expectedDeliveries,omitempty"`
	// Dropped are connections that ended before the run closed them.
	Dropped int64 `json:"dropped,omitempty"`
}

// Phases of a run.
const (
	phaseWarmup int32 = iota
	phaseMeasure
	phaseStopped
)

// window runs the warm-up and the measured window, and samples the
// server processes at its edges.
type window struct {
	phase      atomic.Int32
	start, end time.Time
	before     []procSample
	atStart    []procSample
	atEnd      []procSample
	selfStart  procSample
	selfEnd    procSample
	stopped    bool
}

// measuring reports whether the window is open.
func (w *window) measuring() bool { return w.phase.Load() == phaseMeasure }

// done reports whether the window is over.
func (w *window) done() bool { return w.phase.Load() == phaseStopped }

// run waits the warm-up, opens the window, waits the duration and closes
// it; ctx ending closes it early.
func (w *window) run(ctx context.Context, cfg *Config) error {
	defer w.phase.Store(phaseStopped)
	sleep := func(d time.Duration) bool {
		t := time.NewTimer(d)
		defer t.Stop()
		select {
		case <-t.C:
			return true
		case <-ctx.Done():
			return false
		}
	}
	if cfg.Warmup > 0 {
		cfg.Logf("warming up for %v", cfg.Warmup)
		if !sleep(cfg.Warmup) {
			w.stopped = true
		}
	}
	var err error
	if w.atStart, err = readProcs(cfg.PIDs); err != nil {
		return err
	}
	w.selfStart, _ = readProc(os.Getpid())
	w.start = time.Now()
	w.phase.Store(phaseMeasure)
	if !w.stopped {
		cfg.Logf("measuring for %v", cfg.Duration)
		w.stopped = !sleep(cfg.Duration)
	}
	w.phase.Store(phaseStopped)
	w.end = time.Now()
	w.selfEnd, _ = readProc(os.Getpid())
	w.atEnd, err = readProcs(cfg.PIDs)
	return err
}

// result fills the common fields.
func (w *window) result(cfg *Config, scenario, unit, opName string, ops int64) *Result {
	secs := w.end.Sub(w.start).Seconds()
	r := &Result{
		Scenario:       scenario,
		Target:         cfg.Target.String(),
		Transport:      cfg.Target.Transport(),
		Clients:        cfg.Clients,
		InFlight:       cfg.InFlight,
		Start:          w.start,
		WarmupSeconds:  cfg.Warmup.Seconds(),
		Seconds:        secs,
		Interrupted:    w.stopped,
		Unit:           unit,
		Op:             opName,
		ToolCPUSeconds: (w.selfEnd.cpu - w.selfStart.cpu).Seconds(),
		Ops:            ops,
	}
	if secs > 0 {
		r.OpsPerSecond = float64(ops) / secs
	}
	if len(cfg.PIDs) > 0 {
		r.Servers = serverStats(w.before, w.atStart, w.atEnd, w.end.Sub(w.start))
		var cpu float64
		for _, s := range r.Servers {
			cpu += s.CPUSeconds
		}
		if ops > 0 {
			r.CPUPerOpUS = cpu * 1e6 / float64(ops)
		}
	}
	return r
}

// errCounter counts errors by kind.
type errCounter struct {
	mu     sync.Mutex
	counts map[string]int64
	first  map[string]string
}

func (e *errCounter) add(kind string, err error) { e.addN(kind, 1, err) }

func (e *errCounter) addN(kind string, n int64, err error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.counts == nil {
		e.counts, e.first = map[string]int64{}, map[string]string{}
	}
	e.counts[kind] += n
	if _, ok := e.first[kind]; !ok && err != nil {
		e.first[kind] = err.Error()
	}
}

func (e *errCounter) snapshot() map[string]int64 {
	e.mu.Lock()
	defer e.mu.Unlock()
	if len(e.counts) == 0 {
		return nil
	}
	out := make(map[string]int64, len(e.counts))
	for k, v := range e.counts {
		out[k] = v
	}
	return out
}

func (e *errCounter) samples() map[string]string {
	e.mu.Lock()
	defer e.mu.Unlock()
	if len(e.first) == 0 {
		return nil
	}
	out := make(map[string]string, len(e.first))
	for k, v := range e.first {
		out[k] = v
	}
	return out
}

func (e *errCounter) total() int64 {
	e.mu.Lock()
	defer e.mu.Unlock()
	var n int64
	for _, v := range e.counts {
		n += v
	}
	return n
}

// lockedHist is a histogram shared by a few goroutines.
type lockedHist struct {
	mu sync.Mutex
	h  *Histogram
}

func newLockedHist() *lockedHist { return &lockedHist{h: NewHistogram()} }

func (l *lockedHist) record(d time.Duration) {
	l.mu.Lock()
	l.h.Record(d)
	l.mu.Unlock()
}

func mergeAll(hs []*lockedHist) *Histogram {
	out := NewHistogram()
	for _, l := range hs {
		l.mu.Lock()
		out.Merge(l.h)
		l.mu.Unlock()
	}
	return out
}
