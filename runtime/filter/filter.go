// Package filter holds the built-in filters of the handling chain: a real
// timeout, Pomelo's slow-request timer pattern, a per-session rate limit and
// overload protection. Add them to an App (github.com/pomelo-go/pomelo)
// with App.GlobalFilter or Config.GlobalFilters (on frontends, for every
// client message, before forwarding) or App.Filter or Config.Filters
// (around the handlers a server runs).
package filter

import (
	"context"
	"errors"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pomelo-go/pomelo/runtime"
)

// Timeout gives every request d to finish: the handler's context is
// cancelled at the deadline and the client is answered TIMEOUT at once, even
// if the handler ignores its context (its late result is dropped).
func Timeout(d time.Duration) runtime.Filter {
	return timeoutFilter{d: d}
}

type timeoutFilter struct{ d time.Duration }

type cancelKey struct{}

func (f timeoutFilter) Before(ctx context.Context, _ *runtime.Request) (context.Context, error) {
	ctx, cancel := context.WithTimeout(ctx, f.d)
	return context.WithValue(ctx, cancelKey{}, cancel), nil
}

func (timeoutFilter) After(ctx context.Context, _ *runtime.Request, res *runtime.Result) {
	if cancel, ok := ctx.Value(cancelKey{}).(context.CancelFunc); ok {
		cancel()
	}
	if res.Err != nil && ctx.Err() == context.DeadlineExceeded {
		if errors.Is(runtime.AsError(res.Err), runtime.ErrInternal) {
			res.Err = runtime.Errorf(runtime.ErrTimeout, "%v", res.Err)
		}
	}
}

// SlowLog is Pomelo's timeout filter: its Before sets a timer for the
// request and its After clears it; a request still running when the timer
// fires is logged as slow. It changes nothing about the request.
func SlowLog(threshold time.Duration, log *slog.Logger) runtime.Filter {
	if log == nil {
		log = slog.Default()
	}
	return slowLog{threshold: threshold, log: log}
}

type slowLog struct {
	threshold time.Duration
	log       *slog.Logger
}

type timerKey struct{}

func (f slowLog) Before(ctx context.Context, r *runtime.Request) (context.Context, error) {
	route, sid := r.Route, r.Session.ID()
	t := time.AfterFunc(f.threshold, func() {
		f.log.Warn("pomelo: slow request", "route", route, "session", sid, "threshold", f.threshold)
	})
	return context.WithValue(ctx, timerKey{}, t), nil
}

func (slowLog) After(ctx context.Context, _ *runtime.Request, _ *runtime.Result) {
	if t, ok := ctx.Value(timerKey{}).(*time.Timer); ok {
		t.Stop()
	}
}

// Overload answers OVERLOADED once more than max requests are being handled
// at once by the filter's chain.
func Overload(max int) runtime.Filter {
	return &overload{max: int64(max)}
}

type overload struct {
	max    int64
	active atomic.Int64
}

type admittedKey struct{}

func (f *overload) Before(ctx context.Context, _ *runtime.Request) (context.Context, error) {
	if f.active.Add(1) > f.max {
		f.active.Add(-1)
		return ctx, runtime.Errorf(runtime.ErrOverloaded, "server is busy, try again")
	}
	return context.WithValue(ctx, admittedKey{}, f), nil
}

func (f *overload) After(ctx context.Context, _ *runtime.Request, _ *runtime.Result) {
	if ctx.Value(admittedKey{}) == f {
		f.active.Add(-1)
	}
}

// RateLimit allows each session burst messages at once and rate messages
// per second after that (a token bucket per session); beyond it requests
// are answered RATE_LIMITED. Idle sessions' buckets are dropped. It panics
// unless rate and burst are positive.
func RateLimit(rate float64, burst int) runtime.Filter {
	if !(rate > 0) || burst <= 0 {
		panic("filter: RateLimit needs a positive rate and burst")
	}
	return &rateLimit{rate: rate, burst: float64(burst), buckets: make(map[string]*bucket)}
}

type bucket struct {
	tokens float64
	last   time.Time
}

type rateLimit struct {
	rate, burst float64
	mu          sync.Mutex
	buckets     map[string]*bucket
	lastSweep   time.Time
}

func (f *rateLimit) Before(ctx context.Context, r *runtime.Request) (context.Context, error) {
	key := runtime.GlobalSessionID(r.Session.FrontendID(), r.Session.ID())
	now := time.Now()
	f.mu.Lock()
	defer f.mu.Unlock()
	f.sweep(now)
	b := f.buckets[key]
	if b == nil {
		b = &bucket{tokens: f.burst, last: now}
		f.buckets[key] = b
	}
	b.tokens = min(f.burst, b.tokens+now.Sub(b.last).Seconds()*f.rate)
	b.last = now
	if b.tokens < 1 {
		return ctx, runtime.Errorf(runtime.ErrRateLimited, "too many messages: at most %g per second", f.rate)
	}
	b.tokens--
	return ctx, nil
}

func (f *rateLimit) After(context.Context, *runtime.Request, *runtime.Result) {}

// sweep drops buckets that have refilled completely: they hold no state.
func (f *rateLimit) sweep(now time.Time) {
	full := time.Duration(f.burst / f.rate * float64(time.Second))
	if now.Sub(f.lastSweep) < max(full, time.Second) {
		return
	}
	f.lastSweep = now
	for k, b := range f.buckets {
		if now.Sub(b.last) > full {
			delete(f.buckets, k)
		}
	}
}
