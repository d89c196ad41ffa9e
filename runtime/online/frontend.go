package online

import (
	"context"
	"strconv"
	"sync"
	"time"

	"github.com/pomelo-go/pomelo/internal/batchq"
	"github.com/pomelo-go/pomelo/runtime/session"
)

// frontend records one frontend's bound sessions in Redis and keeps its
// liveness key alive.
//
// The session hooks only note which sessions changed; one goroutine writes
// the changes, batched, in order. What it writes for a session is read
// from the session itself at the time (closed, bound to a uid, or not), so
// hooks that run out of order (a close racing a bind) still leave the
// record right.
type frontend struct {
	s   *Service
	fid string

	mu      sync.Mutex
	want    map[uint64]string // bound, open sessions -> uid
	dirty   map[uint64]struct{}
	gen     uint64        // counts changes
	done    uint64        // the changes up to gen done are in Redis
	doneCh  chan struct{} // closed, and replaced, when done advances
	stopped bool
	healthy bool // the last write succeeded: binds wait for theirs
	stopCh  chan struct{}
	exited  chan struct{}

	synced map[uint64]string // what Redis holds; owned by run

	// noted has the sessions changed noted, pushed under mu; flush takes
	// them into dirty (taken is its last batch).
	noted *batchq.Queue[uint64]
	taken []uint64
}

func newFrontend(s *Service, fid string) *frontend {
	return &frontend{
		healthy: true,
		s:       s,
		fid:     fid,
		want:    map[uint64]string{},
		dirty:   map[uint64]struct{}{},
		doneCh:  make(chan struct{}),
		noted:   batchq.New(batchq.Config[uint64]{}),
		stopCh:  make(chan struct{}),
		exited:  make(chan struct{}),
		synced:  map[uint64]string{},
	}
}

// start deletes what an earlier run of this frontend id left and makes the
// frontend alive.
func (f *frontend) start(ctx context.Context) error {
	if err := f.s.reap(ctx, f.fid, true); err != nil {
		return err
	}
	return f.heartbeat(ctx)
}

// heartbeat refreshes the liveness key. When it had expired, the reaper
// may have deleted some of this frontend's entries: it deletes the rest
// and writes every session again.
func (f *frontend) heartbeat(ctx context.Context) error {
	s := f.s
	hctx, cancel := context.WithTimeout(ctx, s.cfg.Timeout)
	res, err := heartbeatScript.Run(hctx, s.rdb, []string{s.AliveKey(f.fid), s.frontsKey()},
		s.inc, s.cfg.TTL.Milliseconds(), f.fid).Int()
	cancel()
	if err != nil {
		return err
	}
	switch res {
	case -1:
		s.log.Error("another process uses this frontend id in online status", "frontend", f.fid)
	case 0:
		if len(f.synced) == 0 {
			return nil
		}
		s.log.Warn("online status: liveness had expired; writing every session again", "frontend", f.fid)
		// Keep the global channels (force reap of online entries only):
		// the reaper of another server may have deleted them already, but
		// those still there are right.
		if err := f.s.reapOnline(ctx, f.fid, true); err != nil {
			return err
		}
		f.mu.Lock()
		for sid := range f.want {
			f.dirty[sid] = struct{}{}
		}
		f.mu.Unlock()
		clear(f.synced)
	}
	return nil
}

// changed notes that session ss may have changed, and on a bind waits
// until the change is in Redis (so that the user can be reached once the
// bind returns), unless Redis is failing.
func (f *frontend) changed(ss *session.Session, wait bool) {
	f.mu.Lock()
	if f.stopped {
		f.mu.Unlock()
		return
	}
	sid := ss.ID()
	uid := ss.UID()
	if ss.Closed() || uid == "" {
		delete(f.want, sid)
	} else {
		f.want[sid] = uid
	}
	f.noted.Push(sid)
	f.gen++
	gen := f.gen
	wait = wait && f.healthy
	f.mu.Unlock()
	if !wait {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), f.s.cfg.Timeout)
	defer cancel()
	if err := f.wait(ctx, gen); err != nil {
		f.s.log.Warn("online status: bind not recorded in time", "frontend", f.fid, "session", sid, "uid", uid, "error", err)
	}
}

// wait waits until the changes up to gen are in Redis.
func (f *frontend) wait(ctx context.Context, gen uint64) error {
	for {
		f.mu.Lock()
		if f.done >= gen {
			f.mu.Unlock()
			return nil
		}
		ch := f.doneCh
		f.mu.Unlock()
		select {
		case <-ch:
		case <-ctx.Done():
			return ctx.Err()
		case <-f.exited:
			return context.Canceled
		}
	}
}

// run writes changes and heartbeats until stop.
func (f *frontend) run() {
	defer f.s.wg.Done()
	defer close(f.exited)
	s := f.s
	beat := time.NewTicker(s.cfg.TTL / 3)
	defer beat.Stop()
	retry := time.NewTimer(time.Hour)
	retry.Stop()
	backoff := 50 * time.Millisecond
	for {
		select {
		case <-f.noted.Ready():
		case <-retry.C:
		case <-beat.C:
			if err := f.heartbeat(s.ctx); err != nil {
				s.log.Warn("online status: heartbeat", "frontend", f.fid, "error", err)
			}
		case <-f.stopCh:
			return
		}
		if err := f.flush(s.ctx); err != nil {
			s.log.Warn("online status: writing sessions", "frontend", f.fid, "error", err)
			retry.Reset(backoff)
			backoff = min(2*backoff, time.Second)
		} else {
			backoff = 50 * time.Millisecond
		}
	}
}

// syncBatch is how many session changes one script call carries.
const syncBatch = 256

// flush writes the noted changes. On an error the changes stay noted.
func (f *frontend) flush(ctx context.Context) error {
	f.mu.Lock()
	gen := f.gen
	f.taken, _ = f.noted.Take(f.taken)
	for _, sid := range f.taken {
		f.dirty[sid] = struct{}{}
	}
	if len(f.dirty) == 0 {
		f.advance(gen)
		f.mu.Unlock()
		return nil
	}
	type change struct {
		sid      uint64
		have     string
		want     string
		wantSome bool
	}
	changes := make([]change, 0, len(f.dirty))
	for sid := range f.dirty {
		uid, ok := f.want[sid]
		changes = append(changes, change{sid: sid, want: uid, wantSome: ok})
	}
	clear(f.dirty)
	f.mu.Unlock()

	s := f.s
	args := []any{s.cfg.Prefix, f.fid, s.inc}
	var pending []change
	var err error
	send := func() {
		if len(pending) == 0 || err != nil {
			return
		}
		cctx, cancel := context.WithTimeout(ctx, s.cfg.Timeout)
		err = syncScript.Run(cctx, s.rdb, nil, args...).Err()
		cancel()
		if err == nil {
			for _, c := range pending {
				if c.wantSome {
					f.synced[c.sid] = c.want
				} else {
					delete(f.synced, c.sid)
				}
			}
		}
		args, pending = args[:3], pending[:0]
	}
	for i := range changes {
		c := &changes[i]
		have, had := f.synced[c.sid]
		if had == c.wantSome && have == c.want {
			continue
		}
		sid := strconv.FormatUint(c.sid, 10)
		if had {
			args = append(args, "d", sid, have)
		}
		if c.wantSome {
			args = append(args, "a", sid, c.want)
		}
		pending = append(pending, *c)
		if len(args) >= 3+3*syncBatch {
			send()
		}
	}
	send()
	f.mu.Lock()
	defer f.mu.Unlock()
	f.healthy = err == nil
	if err != nil {
		// Note again what is not in Redis (the batches sent are
		// idempotent, so sending them again is harmless).
		for _, c := range changes {
			if have, had := f.synced[c.sid]; had != c.wantSome || have != c.want {
				f.dirty[c.sid] = struct{}{}
			}
		}
		return err
	}
	f.advance(gen)
	return nil
}

// advance records that the changes up to gen are in Redis. f.mu is held.
func (f *frontend) advance(gen uint64) {
	if gen > f.done {
		f.done = gen
		close(f.doneCh)
		f.doneCh = make(chan struct{})
	}
}

// stop writes the last changes, deletes the frontend's entries and its
// liveness key, and stops run.
func (f *frontend) stop() error {
	f.mu.Lock()
	f.stopped = true
	f.mu.Unlock()
	close(f.stopCh)
	<-f.exited
	s := f.s
	ctx, cancel := context.WithTimeout(context.Background(), 4*s.cfg.Timeout)
	defer cancel()
	err := f.flush(ctx)
	if err == nil {
		err = s.reap(ctx, f.fid, true)
	}
	if err == nil {
		err = s.rdb.Del(ctx, s.AliveKey(f.fid)).Err()
	}
	return err
}
