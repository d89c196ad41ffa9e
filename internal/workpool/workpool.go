// Package workpool runs functions on reused goroutines.
package workpool

import (
	"context"
	"time"
)

// workerIdle is how long an idle worker waits for more work before it
// exits.
const workerIdle = time.Second

// Pool runs functions on goroutines that are reused: a goroutine that
// finished its work waits briefly for more, so request/response traffic
// does not start (and grow the stack of) a new goroutine per message.
type Pool struct {
	ctx  context.Context
	work chan func()
}

// New returns a pool whose idle goroutines exit when ctx is done.
func New(ctx context.Context) *Pool {
	return &Pool{ctx: ctx, work: make(chan func())}
}

// Go runs fn on an idle worker, or on a new one when none is idle.
func (w *Pool) Go(fn func()) {
	select {
	case w.work <- fn:
	default:
		go w.loop(fn)
	}
}

func (w *Pool) loop(fn func()) {
	var idle *time.Timer
	for {
		fn()
		if idle == nil {
			idle = time.NewTimer(workerIdle)
		} else {
			idle.Reset(workerIdle)
		}
		select {
		case fn = <-w.work:
			idle.Stop()
		case <-idle.C:
			return
		case <-w.ctx.Done():
			idle.Stop()
			return
		}
	}
}
