package node

import (
	"context"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"connectrpc.com/connect"
	"google.golang.org/protobuf/proto"

	sysv1 "github.com/pomelo-go/pomelo/gen/pomelo/sys/v1"
	"github.com/pomelo-go/pomelo/internal/batchq"
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
	req := &sysv1.ForwardRequest{
		Session: snapshotToProto(snap),
		Route:   r.Route,
		Notify:  r.Notify(),
		Body:    r.Body,
	}
	if r.Serializer.Name() == runtime.SerializerProtobuf {
		req.Serializer = sysv1.Serializer_SERIALIZER_PROTOBUF
	}
	// Every forwarded request has a deadline: the context's, or
	// ForwardTimeout from now. Streams enforce it by a periodic sweep rather
	// than a timer per message.
	if d, ok := ctx.Deadline(); ok {
		req.DeadlineUnixNano = d.UnixNano()
	} else if !req.Notify {
		req.DeadlineUnixNano = time.Now().Add(f.n.cfg.ForwardTimeout).UnixNano()
	}
	ctx, span, carried := f.n.tracer.StartForward(ctx, r.Route, target.ID)
	req.TraceContext = carried
	body, err := f.send(ctx, target.ID, req)
	tracing.End(span, err)
	return body, err
}

// send forwards req to the backend serverID, in the forward mode.
func (f *forwarder) send(ctx context.Context, serverID string, req *sysv1.ForwardRequest) ([]byte, error) {
	f.mu.Lock()
	mode := f.mode
	f.mu.Unlock()
	f.n.metrics.Forwarded()
	var res *sysv1.ForwardResponse
	var err error
	if mode == ForwardUnary {
		res, err = f.unary(ctx, serverID, req)
	} else {
		res, err = f.stream(ctx, serverID, req)
	}
	if err != nil {
		return nil, err
	}
	if res == nil { // notify
		return nil, nil
	}
	if res.Error != nil {
		return nil, runtime.ErrorFromProto(res.Error)
	}
	return res.Body, nil
}

func (f *forwarder) unary(ctx context.Context, serverID string, req *sysv1.ForwardRequest) (*sysv1.ForwardResponse, error) {
	p, err := f.n.peer(serverID)
	if err != nil {
		return nil, err
	}
	if _, ok := ctx.Deadline(); !ok && req.DeadlineUnixNano > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithDeadline(ctx, timeFromUnixNano(req.DeadlineUnixNano))
		defer cancel()
	}
	res, err := p.msg.ForwardMessage(ctx, connect.NewRequest(req))
	if err != nil {
		return nil, asUnavailable(serverID, err)
	}
	if req.Notify {
		return nil, nil
	}
	return res.Msg, nil
}

func (f *forwarder) stream(ctx context.Context, serverID string, req *sysv1.ForwardRequest) (*sysv1.ForwardResponse, error) {
	st, err := f.get(serverID)
	if err != nil {
		return nil, err
	}
	return st.call(ctx, req)
}

func (f *forwarder) get(serverID string) (*fwdStream, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	p, err := f.n.peer(serverID)
	if err != nil {
		return nil, err
	}
	if st, ok := f.streams[serverID]; ok && !st.isDead() && st.baseURL == p.conn.BaseURL {
		return st, nil
	}
	st := newFwdStream(f, serverID, p)
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
type fwdStream struct {
	f        *forwarder
	serverID string
	baseURL  string
	ctx      context.Context
	cancel   context.CancelFunc
	stream   *connect.BidiStreamForClient[sysv1.ForwardBatch, sysv1.ForwardResponseBatch]
	out      *batchq.Queue[*sysv1.ForwardRequest] // written by send, a batch a write

	mu       sync.Mutex
	seq      uint64
	pending  map[uint64]pendingCall
	dead     error
	started  bool
	draining bool // the server left: finish pending calls, then close
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
		out:      batchq.New(batchq.Config[*sysv1.ForwardRequest]{}),
		pending:  map[uint64]pendingCall{},
	}
}

// send writes the queued requests, all of them in one stream message,
// until the stream dies. While one write is under way the next requests
// queue up: under load, many requests share a write.
func (st *fwdStream) send() {
	// However the stream ends, close the request side. Cancelling the
	// stream's context alone does not end an HTTP/2 request whose response
	// has begun: the transport keeps waiting to read more request body, so
	// the stream stayed open on both ends, and the backend's handlers with
	// it (until their deadline; a notify has none).
	defer st.stream.CloseRequest()
	var reqs []*sysv1.ForwardRequest
	batch := &sysv1.ForwardBatch{}
	for {
		select {
		case <-st.out.Ready():
		case <-st.ctx.Done():
			return
		}
		reqs, _ = st.out.Take(reqs) // never closed: the stream ends by ctx
		if len(reqs) == 0 {
			continue
		}
		st.f.n.metrics.ForwardBatch(len(reqs))
		err := inChunks(reqs, requestSize, func(reqs []*sysv1.ForwardRequest) error {
			batch.Requests = reqs
			err := st.stream.Send(batch)
			if err != nil {
				// A message that cannot be encoded fails the Send before
				// anything is written and leaves the stream usable: fail that
				// message alone and send the others.
				if ok, changed := keepEncodable(reqs, st.repairRequest); changed {
					batch.Requests = ok
					err = nil
					if len(ok) > 0 {
						err = st.stream.Send(batch)
					}
				}
			}
			return err
		})
		batch.Requests = nil
		clear(reqs)
		if err != nil {
			// A write fails with a bare EOF when the backend went away (the
			// cause would come from Receive): the backend is unavailable.
			st.fail(runtime.Errorf(runtime.ErrUnavailable, "%s: forward stream broke: %v", st.serverID, err))
			return
		}
	}
}

// Stream messages are read with a limit of maxStreamMessage bytes (the
// RPC clients' and handlers' WithReadMaxBytes). The senders split what
// they have queued into batches of about maxBatchBytes, estimated from the
// bodies and routes (session settings are small next to the 8x margin), so
// no batch reaches the limit and breaks the stream for everyone; a single
// response body over maxForwardedBody fails alone. A request body is
// bounded by the connector's package size (at most 16 MiB).
const (
	maxStreamMessage = 32 << 20
	maxBatchBytes    = 4 << 20
	maxForwardedBody = 16 << 20
)

// inChunks calls send with consecutive runs of ms whose estimated size
// (size) stays within maxBatchBytes, at least one message a run, and
// returns the first error.
func inChunks[M any](ms []M, size func(M) int, send func([]M) error) error {
	start, n := 0, 0
	for i, m := range ms {
		s := size(m)
		if i > start && n+s > maxBatchBytes {
			if err := send(ms[start:i]); err != nil {
				return err
			}
			start, n = i, 0
		}
		n += s
	}
	if start < len(ms) {
		return send(ms[start:])
	}
	return nil
}

// requestSize estimates the encoded size of a forwarded request.
func requestSize(r *sysv1.ForwardRequest) int { return len(r.Body) + len(r.Route) + 128 }

// responseSize estimates the encoded size of a forwarded response.
func responseSize(r *sysv1.ForwardResponse) int {
	return len(r.Body) + len(r.GetError().GetMessage()) + 64
}

// keepEncodable returns the messages of ms that can be marshalled, in
// order, reusing the array of ms. Each message that cannot is handed to
// repair, which either makes it encodable and reports true to keep it, or
// answers it otherwise and reports false. changed reports whether any
// message could not be marshalled: when none could not, a failed Send of
// ms failed for another reason.
func keepEncodable[M proto.Message](ms []M, repair func(M) bool) (kept []M, changed bool) {
	kept = ms[:0]
	for _, m := range ms {
		if _, err := proto.Marshal(m); err != nil {
			changed = true
			if !repair(m) {
				continue
			}
		}
		kept = append(kept, m)
	}
	clear(ms[len(kept):])
	return kept, changed
}

// validUTF8 returns s with each run of invalid UTF-8 replaced by U+FFFD.
func validUTF8(s string) string {
	if utf8.ValidString(s) {
		return s
	}
	return strings.ToValidUTF8(s, "\uFFFD")
}

// repairRequest makes a forwarded request that failed to marshal
// encodable (sanitizeRequest), or answers it alone.
func (st *fwdStream) repairRequest(req *sysv1.ForwardRequest) bool {
	if err := sanitizeRequest(req); err != nil {
		st.f.n.srv.Logger().Warn("pomelo: cannot forward a message", "route", validUTF8(req.Route), "server", st.serverID, "session", req.GetSession().GetId(), "code", err.Name)
		st.answer(req.Seq, err)
		return false
	}
	st.f.n.srv.Logger().Debug("pomelo: replaced invalid UTF-8 in a forwarded session", "route", req.Route, "session", req.GetSession().GetId())
	return true
}

// sanitizeRequest makes a forwarded request encodable, replacing invalid
// UTF-8 in its session's strings (a uid or a setting can come from client
// input), or returns the error to answer it with: BAD_REQUEST for a route
// that is not UTF-8, INTERNAL for anything else.
func sanitizeRequest(req *sysv1.ForwardRequest) *runtime.Error {
	if !utf8.ValidString(req.Route) {
		return runtime.Errorf(runtime.ErrBadRequest, "malformed route")
	}
	if s := req.Session; s != nil {
		s.FrontendId, s.Uid = validUTF8(s.FrontendId), validUTF8(s.Uid)
		settings := make(map[string]string, len(s.Settings))
		for k, v := range s.Settings {
			settings[validUTF8(k)] = validUTF8(v)
		}
		s.Settings = settings
	}
	if _, err := proto.Marshal(req); err != nil {
		return runtime.Errorf(runtime.ErrInternal, "the message could not be forwarded")
	}
	return nil
}

// repairResponse makes a forwarded request's response that failed to
// marshal encodable: invalid UTF-8 in its error's name or message is
// replaced, and a response still not encodable becomes INTERNAL.
func repairResponse(res *sysv1.ForwardResponse) bool {
	if e := res.Error; e != nil {
		e.Name, e.Message = validUTF8(e.Name), validUTF8(e.Message)
	}
	if _, err := proto.Marshal(res); err != nil {
		res.Body, res.Error = nil, runtime.Errorf(runtime.ErrInternal, "the response could not be encoded").Proto()
	}
	return true
}

// answer answers the pending request seq, if it still waits, with err.
func (st *fwdStream) answer(seq uint64, err error) {
	st.mu.Lock()
	p, ok := st.pending[seq]
	delete(st.pending, seq)
	st.mu.Unlock()
	if ok {
		p.ch <- &sysv1.ForwardResponse{Seq: seq, Error: runtime.AsError(err).Proto()} // buffered: never blocks
	}
}

// pendingCall is a forwarded request waiting for its response.
type pendingCall struct {
	ch       chan *sysv1.ForwardResponse
	deadline int64 // unix nanos; 0 for none
}

// sweepInterval is how often a stream answers the requests whose deadline
// passed: the precision of forwarded request timeouts.
const sweepInterval = 20 * time.Millisecond

// sweep answers TIMEOUT to pending calls past their deadline, until the
// stream dies.
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
			for seq, p := range st.pending {
				if p.deadline > 0 && p.deadline <= ns {
					delete(st.pending, seq)
					p.ch <- &sysv1.ForwardResponse{Seq: seq, Error: runtime.Errorf(runtime.ErrTimeout, "%s did not answer in time", st.serverID).Proto()}
				}
			}
			st.mu.Unlock()
		}
	}
}

func (st *fwdStream) isDead() bool {
	st.mu.Lock()
	defer st.mu.Unlock()
	return st.dead != nil
}

func (st *fwdStream) call(ctx context.Context, req *sysv1.ForwardRequest) (*sysv1.ForwardResponse, error) {
	var ch chan *sysv1.ForwardResponse
	st.mu.Lock()
	if st.dead != nil {
		err := st.dead
		st.mu.Unlock()
		return nil, err
	}
	st.seq++
	req.Seq = st.seq
	if !req.Notify {
		ch = make(chan *sysv1.ForwardResponse, 1)
		st.pending[req.Seq] = pendingCall{ch: ch, deadline: req.DeadlineUnixNano}
	}
	st.out.Push(req) // under st.mu: queued in seq order
	start := !st.started
	st.started = true
	st.mu.Unlock()
	if start {
		go st.send()
		go st.receive()
		go st.sweep(st.ctx)
	}
	if ch == nil {
		return nil, nil
	}
	select {
	case res, ok := <-ch:
		if !ok {
			st.mu.Lock()
			err := st.dead
			st.mu.Unlock()
			return nil, err
		}
		return res, nil
	case <-ctx.Done():
		st.mu.Lock()
		delete(st.pending, req.Seq)
		st.mu.Unlock()
		return nil, runtime.AsError(ctx.Err())
	}
}

func (st *fwdStream) receive() {
	// Closing the response side resets the HTTP/2 stream if the backend has
	// not ended it, which ends the backend's handler too.
	defer st.stream.CloseResponse()
	for {
		batch, err := st.stream.Receive()
		if err != nil {
			// Handler errors travel inside responses: a stream that ends or
			// breaks means the backend cannot be reached.
			st.fail(runtime.Errorf(runtime.ErrUnavailable, "%s: forward stream ended: %v", st.serverID, err))
			return
		}
		st.mu.Lock()
		for _, res := range batch.Responses {
			if p, ok := st.pending[res.Seq]; ok {
				delete(st.pending, res.Seq)
				p.ch <- res // buffered: never blocks
			}
		}
		done := st.draining && len(st.pending) == 0
		st.mu.Unlock()
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
	pending := st.pending
	st.pending = map[uint64]pendingCall{}
	st.mu.Unlock()
	for _, p := range pending {
		close(p.ch)
	}
	// Cancelling the stream's context ends the sender, the receiver and the
	// sweep, and closes the request side.
	st.cancel()
	st.f.drop(st)
}
