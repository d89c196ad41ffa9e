package node

import (
	"context"
	"sync"
	"time"

	"connectrpc.com/connect"

	sysv1 "github.com/pomelo-go/pomelo/gen/pomelo/sys/v1"
	"github.com/pomelo-go/pomelo/internal/batchq"
	"github.com/pomelo-go/pomelo/runtime"
	"github.com/pomelo-go/pomelo/runtime/cluster"
	"github.com/pomelo-go/pomelo/runtime/session"
)

// OnSessionClosed registers fn to run when a session this node watches
// closes: every session a forwarded message of reached this node (it is
// watched with the first one), and those WatchSession names. Each watched
// session is reported once.
func (n *Node) OnSessionClosed(fn func(cluster.SessionEvent)) {
	n.mu.Lock()
	n.closeFns = append(n.closeFns, fn)
	n.mu.Unlock()
}

// OnSessionSuspended registers fn to run when a session this node watches
// (see OnSessionClosed) is suspended: its connection dropped and it waits
// within its resume window. A suspended session may be resumed, and is
// closed (OnSessionClosed) when its window ends.
func (n *Node) OnSessionSuspended(fn func(cluster.SessionEvent)) {
	n.mu.Lock()
	n.suspendFns = append(n.suspendFns, fn)
	n.mu.Unlock()
}

// OnSessionResumed registers fn to run when a suspended session this node
// watches continues on a new connection.
func (n *Node) OnSessionResumed(fn func(cluster.SessionEvent)) {
	n.mu.Lock()
	n.resumeFns = append(n.resumeFns, fn)
	n.mu.Unlock()
}

// fire runs the functions registered for an event of type t.
func (n *Node) fire(t sysv1.SessionEvent_EventType, ev cluster.SessionEvent) {
	n.mu.Lock()
	var fns []func(cluster.SessionEvent)
	switch t {
	case sysv1.SessionEvent_EVENT_TYPE_SUSPENDED:
		fns = n.suspendFns
	case sysv1.SessionEvent_EVENT_TYPE_RESUMED:
		fns = n.resumeFns
	}
	n.mu.Unlock()
	for _, fn := range fns {
		fn(ev)
	}
}

func (n *Node) fireClosed(ev cluster.SessionEvent) {
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
// longer be reached. The sessions whose forwarded messages this node
// handles are watched without it; watching a watched session again does
// nothing. The subscription is sent in the background: an error means
// only that the frontend is unknown or the node is closed.
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
	mu sync.RWMutex
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
	// q ends (Done) when the stream ends or overflows: serve returns.
	q *batchq.Queue[*sysv1.SessionEvent]
}

func newWatchStream() *watchStream {
	return &watchStream{q: batchq.New(batchq.Config[*sysv1.SessionEvent]{Limit: maxWatchQueue})}
}

// enqueue queues ev; it never blocks. A watcher maxWatchQueue events
// behind has its stream ended.
func (ws *watchStream) enqueue(ev *sysv1.SessionEvent) {
	if ws.q.Push(ev) == batchq.ErrFull {
		ws.q.Close()
	}
}

func (ws *watchStream) close() { ws.q.Close() }

// run writes queued events until ctx is done or the stream ends (nil) or
// a write fails (its error). What is queued when the stream ends is not
// written: the watcher resubscribes, and hears of sessions closed meanwhile
// then.
func (ws *watchStream) run(ctx context.Context, st *connect.BidiStream[sysv1.WatchSessionsRequest, sysv1.SessionEvent]) error {
	var evs []*sysv1.SessionEvent
	for {
		select {
		case <-ws.q.Ready():
		case <-ctx.Done():
			return nil
		}
		var closed bool
		evs, closed = ws.q.Take(evs)
		if closed {
			return nil
		}
		for _, ev := range evs {
			if err := st.Send(ev); err != nil {
				return err
			}
		}
		clear(evs)
	}
}

func closedEvent(snap session.Snapshot) *sysv1.SessionEvent {
	return &sysv1.SessionEvent{Type: sysv1.SessionEvent_EVENT_TYPE_CLOSED, Session: snapshotToProto(snap)}
}

// serve runs one watcher's stream on a frontend. It returns the error of a
// failed write of an event, if one ended the stream.
func (h *watchHub) serve(ctx context.Context, n *Node, st *connect.BidiStream[sysv1.WatchSessionsRequest, sysv1.SessionEvent]) (err error) {
	ctx, cancel := context.WithCancel(ctx)
	ws := newWatchStream()
	senderDone := make(chan struct{})
	var sendErr error // written by the sender before senderDone closes
	go func() {
		defer close(senderDone)
		sendErr = ws.run(ctx, st)
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
		if err == nil {
			err = sendErr
		}
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
		case <-ws.q.Done():
			return nil // overflowed
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
			// A session suspended already is reported suspended now; under
			// h.mu, so that a resume after it is reported after it.
			if s, ok := svc.Get(sid); ok && s.Suspended() {
				ws.enqueue(&sysv1.SessionEvent{Type: sysv1.SessionEvent_EVENT_TYPE_SUSPENDED, Session: snapshotToProto(s.Snapshot())})
			}
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
	n.fwd.sessionClosed(sessionKey{s.FrontendID(), s.ID()})
	h := n.watchers
	snap := s.Snapshot()
	h.mu.Lock()
	defer h.mu.Unlock()
	set := h.subs[s.ID()]
	delete(h.subs, s.ID())
	h.rememberLocked(snap)
	if len(set) == 0 {
		return
	}
	// Queued under h.mu (enqueue never blocks): a subscription that serve
	// adds after this finds the session gone and reports it after this
	// event, which the watcher takes (it reports each session once).
	ev := closedEvent(snap)
	for ws := range set {
		ws.enqueue(ev)
	}
}

func (n *Node) onSessionSuspended(s *session.Session) {
	n.onSessionChanged(s, sysv1.SessionEvent_EVENT_TYPE_SUSPENDED)
}

func (n *Node) onSessionResumed(s *session.Session) {
	n.onSessionChanged(s, sysv1.SessionEvent_EVENT_TYPE_RESUMED)
}

// onSessionChanged tells the watchers of a session that it was suspended
// or resumed (t), without blocking; the watch stays.
func (n *Node) onSessionChanged(s *session.Session, t sysv1.SessionEvent_EventType) {
	h := n.watchers
	h.mu.Lock()
	defer h.mu.Unlock()
	set := h.subs[s.ID()]
	if len(set) == 0 {
		return
	}
	ev := &sysv1.SessionEvent{Type: t, Session: snapshotToProto(s.Snapshot())}
	for ws := range set {
		ws.enqueue(ev)
	}
}

// watchClient is this node's stream to one frontend, with the sessions it
// watches there.
type watchClient struct {
	addr    string
	started time.Time
	stream  *connect.BidiStreamForClient[sysv1.WatchSessionsRequest, sysv1.SessionEvent]
	cancel  context.CancelFunc

	mu   sync.RWMutex
	sids map[uint64]struct{} // watched; nil once the stream ended
	// suspended holds the watched sessions reported suspended.
	suspended map[uint64]struct{}
	gone      [2]map[uint64]struct{}
	pending   *batchq.Queue[uint64] // subscriptions not sent yet, pushed under mu
}

// maxGoneGeneration bounds one generation of a watchClient's reported
// sessions: it remembers the last one to two such many.
const maxGoneGeneration = 4096

// reported records that sid's close was reported, so that a request of it
// arriving late does not watch it again (autoWatch). Locked.
func (wc *watchClient) reportedLocked(sid uint64) {
	if wc.gone[0] == nil || len(wc.gone[0]) >= maxGoneGeneration {
		wc.gone[1] = wc.gone[0]
		wc.gone[0] = map[uint64]struct{}{}
	}
	wc.gone[0][sid] = struct{}{}
}

func (wc *watchClient) knownLocked(sid uint64) bool {
	if _, ok := wc.sids[sid]; ok {
		return true
	}
	_, ok0 := wc.gone[0][sid]
	_, ok1 := wc.gone[1][sid]
	return ok0 || ok1
}

// subscribeLocked queues subscriptions to sids for send: subscriptions
// made while a Send is under way share the next one.
func (wc *watchClient) subscribeLocked(sids []uint64) {
	for _, sid := range sids {
		wc.sids[sid] = struct{}{}
		wc.pending.Push(sid)
	}
}

// send sends the pending subscriptions until the stream ends (ctx) or a
// Send fails. A failed Send also ends the stream's receive loop, which
// resubscribes or reports the sessions: the subscription is not lost.
func (wc *watchClient) send(ctx context.Context) {
	defer wc.pending.Discard()
	var sids []uint64
	for {
		select {
		case <-wc.pending.Ready():
		case <-ctx.Done():
			return
		}
		sids, _ = wc.pending.Take(sids)
		if len(sids) == 0 {
			continue
		}
		if wc.stream.Send(&sysv1.WatchSessionsRequest{Subscribe: sids}) != nil {
			return
		}
	}
}

// client returns this node's stream to frontendID, starting one when there
// is none (or its frontend moved); failures counts the streams to that
// frontend that failed just before it.
func (h *watchHub) client(n *Node, frontendID string, failures int) (*watchClient, error) {
	p, err := n.peer(frontendID)
	if err != nil {
		return nil, err
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	select {
	case <-n.closeCh:
		return nil, runtime.Errorf(runtime.ErrClosed, "node %s is closed", n.cfg.Self.ID)
	default:
	}
	wc := h.out[frontendID]
	if wc == nil || wc.addr != p.conn.BaseURL {
		if wc != nil {
			wc.cancel()
		}
		sctx, cancel := context.WithCancel(context.Background())
		wc = &watchClient{addr: p.conn.BaseURL, started: time.Now(), stream: p.session.WatchSessions(sctx), sids: map[uint64]struct{}{}, cancel: cancel,
			pending: batchq.New(batchq.Config[uint64]{})}
		h.out[frontendID] = wc
		go wc.send(sctx)
		go h.receive(n, frontendID, wc, failures)
	}
	return wc, nil
}

// watch subscribes this node to the close of sessions on a frontend. A new
// stream starts with failures counting the streams to that frontend that
// failed just before it.
func (h *watchHub) watch(n *Node, frontendID string, sids []uint64, failures int) error {
	for {
		wc, err := h.client(n, frontendID, failures)
		if err != nil {
			return err
		}
		wc.mu.Lock()
		if wc.sids == nil {
			// Ended meanwhile, and left h.out: the next client is new.
			wc.mu.Unlock()
			continue
		}
		var add []uint64
		for _, sid := range sids {
			if _, ok := wc.sids[sid]; !ok {
				add = append(add, sid) // the others are subscribed already
			}
		}
		if len(add) > 0 {
			wc.subscribeLocked(add)
		}
		wc.mu.Unlock()
		return nil
	}
}

// autoWatch watches session sid of frontendID unless this node watches it
// already or has reported its close: a backend calls it for every
// forwarded message, so OnSessionClosed hears of every session it handled
// a message of. Its fast path, a session it watches, takes two read locks
// and allocates nothing.
func (h *watchHub) autoWatch(n *Node, frontendID string, sid uint64) {
	if frontendID == "" || sid == 0 {
		return
	}
	h.mu.RLock()
	wc := h.out[frontendID]
	h.mu.RUnlock()
	if wc != nil {
		wc.mu.RLock()
		known := wc.sids != nil && wc.knownLocked(sid)
		wc.mu.RUnlock()
		if known {
			return
		}
	}
	for {
		wc, err := h.client(n, frontendID, 0)
		if err != nil {
			return // closing, or no such frontend: nothing to watch
		}
		wc.mu.Lock()
		if wc.sids == nil {
			wc.mu.Unlock()
			continue
		}
		if !wc.knownLocked(sid) {
			wc.subscribeLocked([]uint64{sid})
		}
		wc.mu.Unlock()
		return
	}
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
		switch ev.Type {
		case sysv1.SessionEvent_EVENT_TYPE_CLOSED:
		case sysv1.SessionEvent_EVENT_TYPE_SUSPENDED, sysv1.SessionEvent_EVENT_TYPE_RESUMED:
			// Reported on a change only: a subscription to a suspended
			// session hears of it, and may hear of it twice.
			snap := snapshotFromProto(ev.Session)
			suspend := ev.Type == sysv1.SessionEvent_EVENT_TYPE_SUSPENDED
			wc.mu.Lock()
			_, watched := wc.sids[snap.ID]
			_, was := wc.suspended[snap.ID]
			change := watched && was != suspend
			if change && suspend {
				if wc.suspended == nil {
					wc.suspended = map[uint64]struct{}{}
				}
				wc.suspended[snap.ID] = struct{}{}
			} else if change {
				delete(wc.suspended, snap.ID)
			}
			wc.mu.Unlock()
			if change {
				n.fire(ev.Type, cluster.SessionEvent{Session: snap})
			}
			continue
		default:
			continue
		}
		snap := snapshotFromProto(ev.Session)
		wc.mu.Lock()
		_, watched := wc.sids[snap.ID]
		if watched {
			delete(wc.sids, snap.ID)
			delete(wc.suspended, snap.ID)
			wc.reportedLocked(snap.ID)
		}
		wc.mu.Unlock()
		if watched {
			n.fireClosed(cluster.SessionEvent{Session: snap})
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
			n.fireClosed(cluster.SessionEvent{Session: session.Snapshot{ID: sid, FrontendID: frontendID}})
		}
		return
	}
	time.Sleep(time.Duration(failures+1) * 100 * time.Millisecond)
	if err := h.watch(n, frontendID, sids, failures+1); err != nil {
		for _, sid := range sids {
			n.fireClosed(cluster.SessionEvent{Session: session.Snapshot{ID: sid, FrontendID: frontendID}})
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
