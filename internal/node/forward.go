package node

import (
	"context"
	"errors"
	"io"
	goruntime "runtime"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"connectrpc.com/connect"

	sysv1 "github.com/pomelo-go/pomelo/gen/pomelo/sys/v1"
	"github.com/pomelo-go/pomelo/internal/tracing"
	"github.com/pomelo-go/pomelo/runtime"
	"github.com/pomelo-go/pomelo/runtime/cluster"
	"github.com/pomelo-go/pomelo/runtime/session"
)

func timeFromUnixNano(ns int64) time.Time { return time.Unix(0, ns) }

// ForwardMode selects how a frontend forwards messages to backends.
type ForwardMode int

const (
	// ForwardStream keeps one long-lived bidirectional stream per backend
	// and multiplexes every forwarded message on it (the default).
	ForwardStream ForwardMode = iota
	// ForwardUnary makes one unary call per message (for comparison).
	ForwardUnary
)

// SetForwardMode selects how this frontend forwards messages.
func (n *Node) SetForwardMode(m ForwardMode) {
	n.fwd.mu.Lock()
	n.fwd.mode = m
	n.fwd.mu.Unlock()
}

// forwarder implements server.Forwarder over MsgRemote.
type forwarder struct {
	n       *Node
	mu      sync.Mutex
	mode    ForwardMode
	streams map[string]*fwdStream
}

func newForwarder(n *Node) *forwarder {
	return &forwarder{n: n, streams: map[string]*fwdStream{}}
}

// Forward implements server.Forwarder.
func (f *forwarder) Forward(ctx context.Context, serverType string, snap session.Snapshot, r *runtime.Request) ([]byte, error) {
	if !utf8.ValidString(r.Route) {
		// Protobuf strings are UTF-8: this route could not travel, and must
		// not take other sessions' requests on the stream down with it.
		return nil, runtime.Errorf(runtime.ErrBadRequest, "malformed route")
	}
	target, err := f.n.RouteBy(serverType, cluster.RouteContext{Session: r.Session})
	if err != nil {
		return nil, err
	}
	out := fwdOut{
		route:    r.Route,
		notify:   r.Notify(),
		protobuf: r.Serializer.Name() == runtime.SerializerProtobuf,
		body:     r.Body,
	}
	// Every forwarded request has a deadline: the context's, or
	// ForwardTimeout from now. Streams enforce it by a periodic sweep rather
	// than a timer per message.
	if d, ok := ctx.Deadline(); ok {
		out.deadline = d.UnixNano()
	} else if !out.notify {
		out.deadline = time.Now().Add(f.n.cfg.ForwardTimeout).UnixNano()
	}
	ctx, span, carried := f.n.tracer.StartForward(ctx, r.Route, target.ID)
	out.trace = carried
	body, err := f.send(ctx, target.ID, snap, &out)
	tracing.End(span, err)
	return body, err
}

// send forwards a request to the backend serverID, in the forward mode.
func (f *forwarder) send(ctx context.Context, serverID string, snap session.Snapshot, out *fwdOut) ([]byte, error) {
	f.mu.Lock()
	mode := f.mode
	f.mu.Unlock()
	f.n.metrics.Forwarded()
	if mode == ForwardUnary {
		return f.unary(ctx, serverID, snap, out)
	}
	st, err := f.get(serverID)
	if err != nil {
		return nil, err
	}
	return st.call(ctx, snap, out)
}

func (f *forwarder) unary(ctx context.Context, serverID string, snap session.Snapshot, out *fwdOut) ([]byte, error) {
	p, err := f.n.peer(serverID)
	if err != nil {
		return nil, err
	}
	req := &sysv1.ForwardRequest{
		Session:          snapshotToProto(snap),
		Route:            out.route,
		Notify:           out.notify,
		Body:             out.body,
		DeadlineUnixNano: out.deadline,
		TraceContext:     out.trace,
	}
	if out.protobuf {
		req.Serializer = sysv1.Serializer_SERIALIZER_PROTOBUF
	}
	if _, ok := ctx.Deadline(); !ok && req.DeadlineUnixNano > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithDeadline(ctx, timeFromUnixNano(req.DeadlineUnixNano))
		defer cancel()
	}
	validSession(req.Session)
	res, err := p.msg.ForwardMessage(ctx, connect.NewRequest(req))
	if err != nil {
		return nil, asUnavailable(serverID, err)
	}
	if req.Notify {
		return nil, nil
	}
	if res.Msg.Error != nil {
		return nil, runtime.ErrorFromProto(res.Msg.Error)
	}
	return res.Msg.Body, nil
}

func (f *forwarder) get(serverID string) (*fwdStream, error) {
	info, ok := f.n.Member(serverID)
	f.mu.Lock()
	defer f.mu.Unlock()
	// The fast path, a live stream to the member's address, allocates
	// nothing.
	if st, live := f.streams[serverID]; ok && live && st.host == info.Host && st.port == info.RPCPort && !st.isDead() {
		return st, nil
	}
	p, err := f.n.peer(serverID)
	if err != nil {
		return nil, err
	}
	if st, ok := f.streams[serverID]; ok && !st.isDead() && st.baseURL == p.conn.BaseURL {
		return st, nil
	}
	st := newFwdStream(f, serverID, p)
	st.host, st.port = info.Host, info.RPCPort
	f.streams[serverID] = st
	return st, nil
}

func (f *forwarder) drop(st *fwdStream) {
	f.mu.Lock()
	if f.streams[st.serverID] == st {
		delete(f.streams, st.serverID)
	}
	f.mu.Unlock()
}

// prune closes streams to servers that left the cluster.
func (f *forwarder) prune(v *view) {
	f.mu.Lock()
	var gone []*fwdStream
	for id, st := range f.streams {
		// A server that left, or came back under the same id at another
		// address, gets no new work on this stream.
		if info, ok := v.byID[id]; !ok || st.baseURL != baseURL(info) {
			gone = append(gone, st)
			delete(f.streams, id)
		}
	}
	f.mu.Unlock()
	for _, st := range gone {
		st.drain()
	}
}

// sessionClosed makes every stream that sent the session's snapshot tell
// its backend to forget it.
func (f *forwarder) sessionClosed(key sessionKey) {
	f.mu.Lock()
	streams := make([]*fwdStream, 0, len(f.streams))
	for _, st := range f.streams {
		streams = append(streams, st)
	}
	f.mu.Unlock()
	for _, st := range streams {
		st.forget(key)
	}
}

func (f *forwarder) closeAll() {
	f.mu.Lock()
	all := f.streams
	f.streams = map[string]*fwdStream{}
	f.mu.Unlock()
	for _, st := range all {
		st.fail(runtime.Errorf(runtime.ErrUnavailable, "forwarding stopped"))
	}
}

// fwdStream is one long-lived Forward stream to a backend. Requests from
// any session are multiplexed on it and answered by seq.
//
// There is no sender goroutine: the caller that queues a request while no
// write is under way writes it, and keeps writing until nothing is queued;
// requests queued meanwhile (by other sessions' goroutines, which do not
// wait) share its next write. One message in flight costs no hand-off, and
// under load many messages share a write.
type fwdStream struct {
	f        *forwarder
	serverID string
	baseURL  string
	host     string // the member's address the stream was opened to
	port     int
	ctx      context.Context
	cancel   context.CancelFunc
	stream   *connect.BidiStreamForClient[sysv1.ForwardBatch, sysv1.ForwardResponseBatch]
	batch    sysv1.ForwardBatch // the writer's
	received chan struct{}      // closed when the receiver returned

	mu         sync.Mutex
	seq        uint64
	pending    map[uint64]*fwdCall
	enc        fwdEncoder
	out        batches // encoded, not yet written
	writing    bool    // a caller is writing (or the stream is closed for writes)
	writeStart int64   // unix nanos the write under way began
	lastBatch  int     // messages in the last write
	dead       error
	started    bool
	draining   bool // the server left: finish pending calls, then close
}

func newFwdStream(f *forwarder, serverID string, p *peer) *fwdStream {
	ctx, cancel := context.WithCancel(context.Background())
	return &fwdStream{
		f:        f,
		serverID: serverID,
		baseURL:  p.conn.BaseURL,
		ctx:      ctx,
		cancel:   cancel,
		stream:   p.msg.Forward(ctx),
		pending:  map[uint64]*fwdCall{},
		received: make(chan struct{}),
	}
}

// Stream messages are read with a limit of maxStreamMessage bytes (the
// RPC clients' and handlers' WithReadMaxBytes). The writers split what
// they have queued into batches of about maxBatchBytes, so no batch
// reaches the limit and breaks the stream for everyone; a single response
// body over maxForwardedBody fails alone. A request body is bounded by the
// connector's package size (at most 16 MiB).
const (
	maxStreamMessage = 32 << 20
	maxBatchBytes    = 4 << 20
	maxForwardedBody = 16 << 20
)

// maxSpareBatch is the largest batch array kept for reuse.
const maxSpareBatch = 64 << 10

// batches is a writer's queue of encoded batches: appended to by many
// producers under their lock, taken whole by the writer, whose arrays come
// back for reuse.
type batches struct {
	queued [][]byte // not yet written; the last is appended to
	msgs   int      // messages in queued
	outer  [][]byte // the last taken queued, for the next
	free   [][]byte // written batch arrays
}

// open returns the batch to append about n more bytes to: the last one, or
// a new one when that would take it past maxBatchBytes.
func (q *batches) open(n int) *[]byte {
	if k := len(q.queued); k > 0 && (len(q.queued[k-1]) == 0 || len(q.queued[k-1])+n <= maxBatchBytes) {
		return &q.queued[k-1]
	}
	if q.queued == nil {
		q.queued, q.outer = q.outer[:0], nil
	}
	var b []byte
	if k := len(q.free); k > 0 {
		b, q.free = q.free[k-1][:0], q.free[:k-1]
	}
	q.queued = append(q.queued, b)
	return &q.queued[len(q.queued)-1]
}

// take returns the queued batches and how many messages they hold.
func (q *batches) take() ([][]byte, int) {
	b, n := q.queued, q.msgs
	q.queued, q.msgs = nil, 0
	return b, n
}

// done hands back batches that take returned, once written.
func (q *batches) done(b [][]byte) {
	for i, a := range b {
		if cap(a) <= maxSpareBatch && len(q.free) < 4 {
			q.free = append(q.free, a[:0])
		}
		b[i] = nil
	}
	q.outer = b[:0]
}

// fwdCall is a forwarded request waiting for its response. Calls are
// reused: each is answered exactly once, by whoever removes it from
// pending.
type fwdCall struct {
	ch       chan fwdResult // buffered: answering never blocks
	deadline int64          // unix nanos; 0 for none
}

// fwdResult is the answer to a forwarded request.
type fwdResult struct {
	body []byte
	err  error
}

var callPool = sync.Pool{New: func() any { return &fwdCall{ch: make(chan fwdResult, 1)} }}

// validUTF8 returns s with each run of invalid UTF-8 replaced by U+FFFD.
func validUTF8(s string) string {
	if utf8.ValidString(s) {
		return s
	}
	return strings.ToValidUTF8(s, "\uFFFD")
}

// validSession replaces invalid UTF-8 in a unary forward's session strings
// (a uid or a setting can come from client input: protobuf strings must be
// UTF-8), copying the settings only when one needs it.
func validSession(s *sysv1.Session) {
	s.FrontendId, s.Uid = validUTF8(s.FrontendId), validUTF8(s.Uid)
	for k, v := range s.Settings {
		if !utf8.ValidString(k) || !utf8.ValidString(v) {
			settings := make(map[string]string, len(s.Settings))
			for k, v := range s.Settings {
				settings[validUTF8(k)] = validUTF8(v)
			}
			s.Settings = settings
			return
		}
	}
}

// answerLocked removes pending call seq, if it still waits, and answers it.
func (st *fwdStream) answerLocked(seq uint64, res fwdResult) {
	if c, ok := st.pending[seq]; ok {
		delete(st.pending, seq)
		c.ch <- res
	}
}

// sweepInterval is how often a stream answers the requests whose deadline
// passed: the precision of forwarded request timeouts.
const sweepInterval = 20 * time.Millisecond

// sweep answers TIMEOUT to pending calls past their deadline, until the
// stream dies. A write that has not finished in ForwardTimeout breaks the
// stream: the backend stopped reading it.
func (st *fwdStream) sweep(ctx context.Context) {
	t := time.NewTicker(sweepInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case now := <-t.C:
			ns := now.UnixNano()
			st.mu.Lock()
			for seq, c := range st.pending {
				if c.deadline > 0 && c.deadline <= ns {
					delete(st.pending, seq)
					c.ch <- fwdResult{err: runtime.Errorf(runtime.ErrTimeout, "%s did not answer in time", st.serverID)}
				}
			}
			stuck := st.dead == nil && st.writeStart > 0 && ns-st.writeStart > int64(st.f.n.cfg.ForwardTimeout)
			st.mu.Unlock()
			if stuck {
				st.fail(runtime.Errorf(runtime.ErrUnavailable, "%s: forward stream stalled", st.serverID))
			}
		}
	}
}

func (st *fwdStream) isDead() bool {
	st.mu.Lock()
	defer st.mu.Unlock()
	return st.dead != nil
}

// queueDepth returns the messages queued and not written, and the requests
// waiting for their response.
func (st *fwdStream) queueDepth() (queued, waiting int) {
	st.mu.Lock()
	defer st.mu.Unlock()
	return st.out.msgs, len(st.pending)
}

func (st *fwdStream) call(ctx context.Context, snap session.Snapshot, out *fwdOut) ([]byte, error) {
	var c *fwdCall
	st.mu.Lock()
	if st.dead != nil {
		err := st.dead
		st.mu.Unlock()
		return nil, err
	}
	st.seq++
	seq := st.seq
	if !out.notify {
		c = callPool.Get().(*fwdCall)
		c.deadline = out.deadline
		st.pending[seq] = c
	}
	// Encoded under st.mu: the stream's messages are in seq order, and each
	// session's snapshot is sent before the messages that refer to it.
	b := st.out.open(len(out.body) + len(out.route) + 64)
	*b = st.enc.appendMessage(*b, seq, snap, out)
	st.out.msgs++
	write := !st.writing
	st.writing = true
	start := !st.started
	st.started = true
	st.mu.Unlock()
	if start {
		go st.receive()
		go st.sweep(st.ctx)
	}
	if write {
		st.write()
	}
	if c == nil {
		return nil, nil
	}
	select {
	case res := <-c.ch:
		callPool.Put(c)
		return res.body, res.err
	case <-ctx.Done():
		st.mu.Lock()
		_, waiting := st.pending[seq]
		delete(st.pending, seq)
		st.mu.Unlock()
		if waiting {
			callPool.Put(c) // nobody answers it now
		}
		return nil, runtime.AsError(ctx.Err())
	}
}

// write writes everything queued, one stream message per batch, until
// nothing is queued; the caller set st.writing. When the last write took
// several messages, it first yields once, so that the goroutines about to
// queue theirs (under load) share the next write rather than each paying
// for one; an idle stream's single message is written at once.
func (st *fwdStream) write() {
	batch := &st.batch
	for {
		st.mu.Lock()
		if st.dead == nil && st.out.msgs > 0 && st.out.msgs < st.lastBatch {
			st.mu.Unlock()
			goruntime.Gosched()
			st.mu.Lock()
		}
		if st.dead != nil {
			st.mu.Unlock()
			// However the stream ends, close the request side (the writer
			// does: not concurrently with a Send). Cancelling the stream's
			// context alone does not end an HTTP/2 request whose response
			// has begun: the transport keeps waiting to read more request
			// body, so the stream stayed open on both ends, and the
			// backend's handlers with it.
			st.stream.CloseRequest()
			return
		}
		if st.out.msgs == 0 {
			st.writing, st.writeStart = false, 0
			st.mu.Unlock()
			return
		}
		bs, n := st.out.take()
		st.lastBatch = n
		st.writeStart = time.Now().UnixNano()
		st.mu.Unlock()
		st.f.n.metrics.ForwardBatch(n)
		var err error
		for _, b := range bs {
			batch.Frames = b
			if err = st.stream.Send(batch); err != nil {
				break
			}
		}
		batch.Frames = nil
		if err != nil {
			// A write fails with a bare EOF when the stream broke: the
			// cause (the backend refused the connection, went away) comes
			// from Receive, so let the receiver fail the stream with it
			// first. Either way the backend is unavailable.
			if errors.Is(err, io.EOF) {
				select {
				case <-st.received:
				case <-time.After(time.Second):
				}
			}
			st.fail(runtime.Errorf(runtime.ErrUnavailable, "%s: forward stream broke: %v", st.serverID, err))
			continue // closes the request side
		}
		st.mu.Lock()
		st.out.done(bs)
		st.mu.Unlock()
	}
}

// forget tells the backend to drop the snapshot of a session that closed.
func (st *fwdStream) forget(key sessionKey) {
	st.mu.Lock()
	defer st.mu.Unlock()
	if _, ok := st.enc.sent[key]; !ok || st.dead != nil {
		return
	}
	// Queued, not written: it travels with the next write, before any
	// message that could make the backend keep another snapshot.
	b := st.out.open(16)
	*b = st.enc.forget(*b, key)
}

func (st *fwdStream) receive() {
	defer close(st.received)
	// Closing the response side resets the HTTP/2 stream if the backend has
	// not ended it, which ends the backend's handler too.
	defer st.stream.CloseResponse()
	answer := func(seq uint64, body []byte, err *runtime.Error) {
		res := fwdResult{body: body}
		if err != nil {
			res.err = err
		}
		st.answerLocked(seq, res)
	}
	for {
		batch, err := st.stream.Receive()
		if err != nil {
			// Handler errors travel inside responses: a stream that ends or
			// breaks means the backend cannot be reached.
			st.fail(runtime.Errorf(runtime.ErrUnavailable, "%s: forward stream ended: %v", st.serverID, err))
			return
		}
		st.mu.Lock()
		err = decodeResponses(batch.Frames, answer)
		done := st.draining && len(st.pending) == 0
		st.mu.Unlock()
		if err != nil {
			st.fail(runtime.Errorf(runtime.ErrUnavailable, "%s: forward stream: %v", st.serverID, err))
			return
		}
		if done {
			st.fail(runtime.Errorf(runtime.ErrUnavailable, "%s left the cluster", st.serverID))
			return
		}
	}
}

// drain lets pending calls finish, then closes the stream: the server left
// the cluster gracefully and gets no new work.
func (st *fwdStream) drain() {
	st.mu.Lock()
	st.draining = true
	idle := len(st.pending) == 0
	st.mu.Unlock()
	if idle {
		st.fail(runtime.Errorf(runtime.ErrUnavailable, "%s left the cluster", st.serverID))
	}
}

// fail marks the stream dead and fails every pending call with err.
func (st *fwdStream) fail(err error) {
	st.mu.Lock()
	if st.dead == nil {
		st.dead = err
	}
	err = st.dead
	pending := st.pending
	st.pending = map[uint64]*fwdCall{}
	st.out = batches{}
	closeNow := !st.writing // else the writer closes the request side
	st.writing = true
	st.mu.Unlock()
	for _, c := range pending {
		c.ch <- fwdResult{err: err}
	}
	// Cancelling the stream's context ends the receiver and the sweep.
	st.cancel()
	if closeNow {
		st.stream.CloseRequest()
	}
	st.f.drop(st)
}
