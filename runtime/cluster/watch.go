package cluster

import (
	"context"
	"sync"
	"time"

	"connectrpc.com/connect"

	sysv1 "github.com/pomelo-go/pomelo/gen/pomelo/sys/v1"
	"github.com/pomelo-go/pomelo/gen/pomelo/sys/v1/sysv1connect"
	"github.com/pomelo-go/pomelo/runtime/session"
)

// SessionEvent reports that a watched session closed.
type SessionEvent struct {
	// Session is the session's last state. When its frontend could not be
	// reached any more, only ID and FrontendID are set: a session on a
	// frontend that is gone is gone too.
	Session session.Snapshot
}

// OnSessionClosed registers fn to run when a session this node watches
// (WatchSession) closes. Each watched session is reported once.
func (n *Node) OnSessionClosed(fn func(SessionEvent)) {
	n.mu.Lock()
	n.closeFns = append(n.closeFns, fn)
	n.mu.Unlock()
}

func (n *Node) fireClosed(ev SessionEvent) {
	n.mu.Lock()
	fns := n.closeFns
	n.mu.Unlock()
	for _, fn := range fns {
		fn(ev)
	}
}

// WatchSession asks the frontend holding session sid to report its close to
// this node's OnSessionClosed functions. A session that is already gone is
// reported at once; so are the watched sessions of a frontend that can no
// longer be reached.
func (n *Node) WatchSession(ctx context.Context, frontendID string, sid uint64) error {
	return n.watchers.watch(n, frontendID, []uint64{sid}, 0)
}

// maxWatchQueue bounds the close events queued for one watching server; a
// watcher that falls that far behind has its stream ended (it then
// resubscribes, and sessions closed meanwhile are reported as closed).
const maxWatchQueue = 4096

// watchHub keeps the WatchSessions streams: on a frontend, the watchers of
// its sessions; on any server, its own subscriptions to frontends.
type watchHub struct {
	mu sync.Mutex
	// frontend side: session id -> watching streams
	subs map[uint64]map[*watchStream]struct{}
	// watcher side: frontend id -> outgoing stream
	out map[string]*watchClient
	// frontend side: the last sessions that closed, so that a watch that
	// arrives just after its session closed is told what the session was
	// (its uid), not only its id
	recent     map[uint64]session.Snapshot
	recentRing [recentClosed]uint64
	recentNext int
}

// recentClosed is how many closed sessions a frontend remembers for late
// watches.
const recentClosed = 1024

func newWatchHub() *watchHub {
	return &watchHub{subs: map[uint64]map[*watchStream]struct{}{}, out: map[string]*watchClient{}, recent: map[uint64]session.Snapshot{}}
}

// rememberLocked records a closed session, forgetting the oldest.
func (h *watchHub) rememberLocked(snap session.Snapshot) {
	if old := h.recentRing[h.recentNext]; old != 0 {
		delete(h.recent, old)
	}
	h.recentRing[h.recentNext] = snap.ID
	h.recentNext = (h.recentNext + 1) % recentClosed
	h.recent[snap.ID] = snap
}

// watchStream is one watcher's stream on a frontend. Events are queued and
// written by the stream's own sender, which serve waits for before it
// returns: nothing writes to a stream whose handler has finished, and a
// slow watcher never blocks the goroutine that closes a session.
type watchStream struct {
	mu       sync.Mutex
	queue    []*sysv1.SessionEvent
	closed   bool
	wake     chan struct{}
	overflow chan struct{}
}

func newWatchStream() *watchStream {
	return &watchStream{wake: make(chan struct{}, 1), overflow: make(chan struct{})}
}

// enqueue queues ev; it never blocks.
func (ws *watchStream) enqueue(ev *sysv1.SessionEvent) {
	ws.mu.Lock()
	defer ws.mu.Unlock()
	if ws.closed {
		return
	}
	if len(ws.queue) >= maxWatchQueue {
		ws.closed = true
		close(ws.overflow)
		return
	}
	ws.queue = append(ws.queue, ev)
	select {
	case ws.wake <- struct{}{}:
	default:
	}
}

func (ws *watchStream) close() {
	ws.mu.Lock()
	if !ws.closed {
		ws.closed = true
		close(ws.overflow)
	}
	ws.mu.Unlock()
}

// run writes queued events until ctx is done or a write fails.
func (ws *watchStream) run(ctx context.Context, st *connect.BidiStream[sysv1.WatchSessionsRequest, sysv1.SessionEvent]) {
	for {
		select {
		case <-ws.wake:
		case <-ctx.Done():
			return
		}
		ws.mu.Lock()
		evs := ws.queue
		ws.queue = nil
		ws.mu.Unlock()
		for _, ev := range evs {
			if st.Send(ev) != nil {
				return
			}
		}
	}
}

func closedEvent(snap session.Snapshot) *sysv1.SessionEvent {
	return &sysv1.SessionEvent{Type: sysv1.SessionEvent_EVENT_TYPE_CLOSED, Session: snapshotToProto(snap)}
}

// serve runs one watcher's stream on a frontend.
func (h *watchHub) serve(ctx context.Context, n *Node, st *connect.BidiStream[sysv1.WatchSessionsRequest, sysv1.SessionEvent]) error {
	ctx, cancel := context.WithCancel(ctx)
	ws := newWatchStream()
	senderDone := make(chan struct{})
	go func() {
		defer close(senderDone)
		ws.run(ctx, st)
		cancel()
	}()
	mine := map[uint64]struct{}{}
	defer func() {
		ws.close()
		h.mu.Lock()
		for sid := range mine {
			h.unsubscribeLocked(sid, ws)
		}
		h.mu.Unlock()
		cancel()
		<-senderDone // no Send after the handler returns
	}()
	reqs := make(chan *sysv1.WatchSessionsRequest)
	go func() {
		defer close(reqs)
		for {
			req, err := st.Receive()
			if err != nil {
				return
			}
			select {
			case reqs <- req:
			case <-ctx.Done():
				return
			}
		}
	}()
	svc := n.srv.Sessions()
	for {
		var req *sysv1.WatchSessionsRequest
		select {
		case r, ok := <-reqs:
			if !ok {
				return nil
			}
			req = r
		case <-n.closeCh:
			return nil
		case <-ws.overflow:
			return nil
		case <-ctx.Done():
			return nil
		}
		for _, sid := range req.Subscribe {
			h.mu.Lock()
			set := h.subs[sid]
			if set == nil {
				set = map[*watchStream]struct{}{}
				h.subs[sid] = set
			}
			set[ws] = struct{}{}
			mine[sid] = struct{}{}
			h.mu.Unlock()
			// A session that is already gone is reported now. Whichever of
			// this and onSessionClosed removes the subscription reports it,
			// so it is reported once.
			if _, alive := svc.Get(sid); !alive {
				h.mu.Lock()
				_, still := h.subs[sid][ws]
				h.unsubscribeLocked(sid, ws)
				delete(mine, sid)
				snap, known := h.recent[sid]
				h.mu.Unlock()
				if !known {
					snap = session.Snapshot{ID: sid, FrontendID: n.cfg.Self.ID}
				}
				if still {
					ws.enqueue(closedEvent(snap))
				}
			}
		}
		h.mu.Lock()
		for _, sid := range req.Unsubscribe {
			h.unsubscribeLocked(sid, ws)
			delete(mine, sid)
		}
		h.mu.Unlock()
	}
}

func (h *watchHub) unsubscribeLocked(sid uint64, ws *watchStream) {
	if set := h.subs[sid]; set != nil {
		delete(set, ws)
		if len(set) == 0 {
			delete(h.subs, sid)
		}
	}
}

// onSessionClosed tells a closing session's watchers, without blocking.
func (n *Node) onSessionClosed(s *session.Session, _ string) {
	h := n.watchers
	snap := s.Snapshot()
	h.mu.Lock()
	set := h.subs[s.ID()]
	delete(h.subs, s.ID())
	h.rememberLocked(snap)
	h.mu.Unlock()
	if len(set) == 0 {
		return
	}
	ev := closedEvent(snap)
	for ws := range set {
		ws.enqueue(ev)
	}
}

// watchClient is this node's stream to one frontend, with the sessions it
// watches there.
type watchClient struct {
	addr    string
	started time.Time

	mu     sync.Mutex // serializes Send; guards sids
	stream *connect.BidiStreamForClient[sysv1.WatchSessionsRequest, sysv1.SessionEvent]
	sids   map[uint64]struct{}
	cancel context.CancelFunc
}

// watch subscribes this node to the close of sessions on a frontend. A new
// stream starts with failures counting the streams to that frontend that
// failed just before it.
func (h *watchHub) watch(n *Node, frontendID string, sids []uint64, failures int) error {
	c, err := n.conn(frontendID)
	if err != nil {
		return err
	}
	h.mu.Lock()
	wc := h.out[frontendID]
	if wc == nil || wc.addr != c.BaseURL {
		if wc != nil {
			wc.cancel()
		}
		sctx, cancel := context.WithCancel(context.Background())
		cl := sysv1connect.NewSessionRemoteClient(c.HTTPClient, c.BaseURL, c.Options...)
		wc = &watchClient{addr: c.BaseURL, started: time.Now(), stream: cl.WatchSessions(sctx), sids: map[uint64]struct{}{}, cancel: cancel}
		h.out[frontendID] = wc
		go h.receive(n, frontendID, wc, failures)
	}
	h.mu.Unlock()
	wc.mu.Lock()
	for _, sid := range sids {
		wc.sids[sid] = struct{}{}
	}
	err = wc.stream.Send(&sysv1.WatchSessionsRequest{Subscribe: sids})
	wc.mu.Unlock()
	// A failed Send also ends the stream's receive loop, which resubscribes
	// or reports the sessions: the subscription is not lost.
	return nil
}

// receive reports close events until the stream ends; then it resubscribes
// on a new stream, or, when the frontend is gone (left the membership, or
// its streams keep failing at once), reports every watched session closed.
func (h *watchHub) receive(n *Node, frontendID string, wc *watchClient, failures int) {
	for {
		ev, err := wc.stream.Receive()
		if err != nil {
			break
		}
		if ev.Type != sysv1.SessionEvent_EVENT_TYPE_CLOSED {
			continue
		}
		snap := snapshotFromProto(ev.Session)
		wc.mu.Lock()
		_, watched := wc.sids[snap.ID]
		delete(wc.sids, snap.ID)
		wc.mu.Unlock()
		if watched {
			n.fireClosed(SessionEvent{Session: snap})
		}
	}
	h.mu.Lock()
	if h.out[frontendID] == wc {
		delete(h.out, frontendID)
	}
	h.mu.Unlock()
	wc.cancel()
	wc.mu.Lock()
	sids := make([]uint64, 0, len(wc.sids))
	for sid := range wc.sids {
		sids = append(sids, sid)
	}
	wc.sids = nil
	wc.mu.Unlock()
	select {
	case <-n.closeCh:
		return
	default:
	}
	if len(sids) == 0 {
		return
	}
	if time.Since(wc.started) > 5*time.Second {
		failures = 0
	}
	_, member := n.Member(frontendID)
	if !member || failures >= 2 {
		for _, sid := range sids {
			n.fireClosed(SessionEvent{Session: session.Snapshot{ID: sid, FrontendID: frontendID}})
		}
		return
	}
	time.Sleep(time.Duration(failures+1) * 100 * time.Millisecond)
	if err := h.watch(n, frontendID, sids, failures+1); err != nil {
		for _, sid := range sids {
			n.fireClosed(SessionEvent{Session: session.Snapshot{ID: sid, FrontendID: frontendID}})
		}
	}
}

func (h *watchHub) closeAll() {
	h.mu.Lock()
	out := h.out
	h.out = map[string]*watchClient{}
	h.mu.Unlock()
	for _, wc := range out {
		wc.cancel()
	}
}
