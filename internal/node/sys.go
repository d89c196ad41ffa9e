package node

import (
	"context"
	"errors"
	"fmt"
	goruntime "runtime"
	"sync"

	"connectrpc.com/connect"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/reflect/protoregistry"
	"google.golang.org/protobuf/types/known/emptypb"

	sysv1 "github.com/pomelo-go/pomelo/gen/pomelo/sys/v1"
	"github.com/pomelo-go/pomelo/gen/pomelo/sys/v1/sysv1connect"
	"github.com/pomelo-go/pomelo/internal/tracing"
	"github.com/pomelo-go/pomelo/internal/workpool"
	"github.com/pomelo-go/pomelo/runtime"
	"github.com/pomelo-go/pomelo/runtime/session"
)

// snapshotToProto converts a session snapshot.
func snapshotToProto(s session.Snapshot) *sysv1.Session {
	return &sysv1.Session{Id: s.ID, FrontendId: s.FrontendID, Uid: s.UID, Settings: s.Settings}
}

// snapshotFromProto converts a session snapshot back.
func snapshotFromProto(s *sysv1.Session) session.Snapshot {
	return session.Snapshot{ID: s.GetId(), FrontendID: s.GetFrontendId(), UID: s.GetUid(), Settings: s.GetSettings()}
}

// sessionRemote serves SessionRemote on frontends.
type sessionRemote struct {
	sysv1connect.UnimplementedSessionRemoteHandler
	n *Node
}

func (h *sessionRemote) svc() *session.Service { return h.n.srv.Sessions() }

// empty answers a sys call that returns nothing. Errors are converted to
// Connect errors by the RPC handler options (runtime.ErrorInterceptor), which
// also log and redact internal failures.
func empty[T any](err error) (*connect.Response[emptypb.Empty], error) {
	if err != nil {
		return nil, err
	}
	return connect.NewResponse(&emptypb.Empty{}), nil
}

func (h *sessionRemote) Bind(_ context.Context, r *connect.Request[sysv1.BindRequest]) (*connect.Response[emptypb.Empty], error) {
	return empty[any](h.svc().Bind(r.Msg.Sid, r.Msg.Uid))
}

func (h *sessionRemote) Unbind(_ context.Context, r *connect.Request[sysv1.BindRequest]) (*connect.Response[emptypb.Empty], error) {
	return empty[any](h.svc().Unbind(r.Msg.Sid, r.Msg.Uid))
}

func (h *sessionRemote) setSettings(sid uint64, kv map[string]string, replace bool) error {
	s, ok := h.svc().Get(sid)
	if !ok {
		return runtime.Errorf(runtime.ErrNotFound, "no session %d", sid)
	}
	return s.SetSettings(kv, replace)
}

func (h *sessionRemote) Push(_ context.Context, r *connect.Request[sysv1.PushSettingsRequest]) (*connect.Response[emptypb.Empty], error) {
	return empty[any](h.setSettings(r.Msg.Sid, r.Msg.Settings, false))
}

func (h *sessionRemote) PushAll(_ context.Context, r *connect.Request[sysv1.PushSettingsRequest]) (*connect.Response[emptypb.Empty], error) {
	return empty[any](h.setSettings(r.Msg.Sid, r.Msg.Settings, true))
}

func (h *sessionRemote) GetBackendSessionBySid(_ context.Context, r *connect.Request[sysv1.GetBySidRequest]) (*connect.Response[sysv1.Session], error) {
	s, ok := h.svc().Get(r.Msg.Sid)
	if !ok {
		return nil, runtime.Errorf(runtime.ErrNotFound, "no session %d", r.Msg.Sid)
	}
	return connect.NewResponse(snapshotToProto(s.Snapshot())), nil
}

func (h *sessionRemote) GetBackendSessionsByUid(_ context.Context, r *connect.Request[sysv1.GetByUidRequest]) (*connect.Response[sysv1.SessionList], error) {
	list := &sysv1.SessionList{}
	for _, s := range h.svc().GetByUID(r.Msg.Uid) {
		list.Sessions = append(list.Sessions, snapshotToProto(s.Snapshot()))
	}
	return connect.NewResponse(list), nil
}

func (h *sessionRemote) KickBySid(_ context.Context, r *connect.Request[sysv1.KickBySidRequest]) (*connect.Response[sysv1.KickResponse], error) {
	if err := h.svc().Kick(r.Msg.Sid, r.Msg.Reason); err != nil {
		return nil, err
	}
	return connect.NewResponse(&sysv1.KickResponse{Kicked: 1}), nil
}

func (h *sessionRemote) KickByUid(_ context.Context, r *connect.Request[sysv1.KickByUidRequest]) (*connect.Response[sysv1.KickResponse], error) {
	n := h.svc().KickByUID(r.Msg.Uid, r.Msg.Reason)
	return connect.NewResponse(&sysv1.KickResponse{Kicked: int32(n)}), nil
}

func (h *sessionRemote) WatchSessions(ctx context.Context, st *connect.BidiStream[sysv1.WatchSessionsRequest, sysv1.SessionEvent]) error {
	return h.n.watchers.serve(ctx, h.n, st)
}

// payloadBody is a push that arrived encoded from another server: binary
// protobuf clients get its bytes as they are; JSON clients get its JSON,
// converted here once when the sender did not include it.
type payloadBody struct {
	p *sysv1.Payload
}

func (b payloadBody) Encode(ser runtime.Serializer) ([]byte, error) {
	switch ser.Name() {
	case runtime.SerializerProtobuf:
		return b.p.Proto, nil
	case runtime.SerializerJSON:
		if len(b.p.Json) > 0 {
			return b.p.Json, nil
		}
	}
	mt, err := protoregistry.GlobalTypes.FindMessageByName(protoreflect.FullName(b.p.Type))
	if err != nil {
		return nil, fmt.Errorf("push of %s: message type not linked into this binary: %w", b.p.Type, err)
	}
	m := mt.New().Interface()
	if err := proto.Unmarshal(b.p.Proto, m); err != nil {
		return nil, err
	}
	return ser.Marshal(nil, m)
}

// newPayload encodes a push message for other servers.
func newPayload(msg proto.Message) (*sysv1.Payload, error) {
	b, err := proto.Marshal(msg)
	if err != nil {
		return nil, runtime.Errorf(runtime.ErrInternal, "encode push: %v", err)
	}
	return &sysv1.Payload{Type: string(msg.ProtoReflect().Descriptor().FullName()), Proto: b}, nil
}

// channelRemote serves ChannelRemote on frontends.
type channelRemote struct {
	sysv1connect.UnimplementedChannelRemoteHandler
	n *Node
}

// errNoPayload answers a push that carries nothing to push.
var errNoPayload = runtime.Errorf(runtime.ErrBadRequest, "push without a payload")

func (h *channelRemote) PushMessage(_ context.Context, r *connect.Request[sysv1.PushMessageRequest]) (*connect.Response[sysv1.PushMessageResponse], error) {
	res := &sysv1.PushMessageResponse{}
	var err error
	res.FailedUids, res.FailedSids, err = h.n.deliverPush(r.Msg.Route, r.Msg.Payload, r.Msg.Uids, r.Msg.Sids)
	if err != nil {
		return nil, err
	}
	return connect.NewResponse(res), nil
}

func (h *channelRemote) PushStream(ctx context.Context, st *connect.BidiStream[sysv1.PushStreamBatch, sysv1.PushAckBatch]) error {
	return h.n.servePushStream(ctx, st)
}

func (h *channelRemote) Broadcast(_ context.Context, r *connect.Request[sysv1.BroadcastRequest]) (*connect.Response[emptypb.Empty], error) {
	if r.Msg.Payload == nil {
		return nil, errNoPayload
	}
	var filter func(*session.Session) bool
	if r.Msg.Filter != "" {
		v, ok := h.n.filters.Load(r.Msg.Filter)
		if !ok {
			return nil, runtime.Errorf(runtime.ErrBadRequest, "no broadcast filter %q on %s", r.Msg.Filter, h.n.cfg.Self.ID)
		}
		bf, param := v.(BroadcastFilter), r.Msg.FilterParam
		filter = func(s *session.Session) bool { return bf(s, param) }
	}
	err := h.n.srv.Sessions().BroadcastBody(r.Msg.Route, payloadBody{r.Msg.Payload}, r.Msg.BoundOnly, filter)
	if err != nil && isEncodeError(err) {
		return nil, err
	}
	return connect.NewResponse(&emptypb.Empty{}), nil
}

func firstErr(errs ...error) error {
	for _, e := range errs {
		if e != nil {
			return e
		}
	}
	return nil
}

// isEncodeError tells a push that could not be encoded (the caller's
// problem) from one that could not be queued to some slow or closed client
// (that client's problem, handled by kicking it).
func isEncodeError(err error) bool {
	return errors.Is(runtime.AsError(err), runtime.ErrInternal)
}

// BroadcastFilter selects the sessions a filtered broadcast reaches; param
// comes from the broadcasting server.
type BroadcastFilter func(s *session.Session, param []byte) bool

// RegisterBroadcastFilter makes a named broadcast filter available on this
// frontend.
func (n *Node) RegisterBroadcastFilter(name string, f BroadcastFilter) {
	n.filters.Store(name, f)
}

// msgRemote serves MsgRemote: forwarded client messages, on backends.
type msgRemote struct {
	sysv1connect.UnimplementedMsgRemoteHandler
	n *Node
}

func (h *msgRemote) ForwardMessage(ctx context.Context, r *connect.Request[sysv1.ForwardRequest]) (*connect.Response[sysv1.ForwardResponse], error) {
	req := r.Msg
	m := &fwdMsg{
		seq:      req.Seq,
		notify:   req.Notify,
		ser:      runtime.JSON,
		session:  snapshotFromProto(req.Session),
		route:    req.Route,
		deadline: req.DeadlineUnixNano,
		trace:    req.TraceContext,
		body:     req.Body,
	}
	if req.Serializer == sysv1.Serializer_SERIALIZER_PROTOBUF {
		m.ser = runtime.Protobuf
	}
	res := &sysv1.ForwardResponse{Seq: req.Seq}
	body, err := h.n.runForwarded(ctx, m)
	if err != nil {
		res.Error = err.Proto()
	} else {
		res.Body = body
	}
	return connect.NewResponse(res), nil
}

// maxStreamInFlight bounds the forwarded messages one stream runs at once;
// beyond it the stream stops reading (back-pressure to the frontend).
const maxStreamInFlight = 1024

// Forward serves one frontend's Forward stream. Its receiving goroutine
// decodes each batch and hands every message to a runner of its session
// (the one that runs, or a new one from the pool); the runner that
// finishes a response while no write is under way writes it, and whatever
// other runners queued meanwhile (respWriter). This goroutine only waits:
// for the stream's end, or the node's close.
func (h *msgRemote) Forward(ctx context.Context, st *connect.BidiStream[sysv1.ForwardBatch, sysv1.ForwardResponseBatch]) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	fs := &fwdServe{
		n:     h.n,
		ctx:   ctx,
		out:   &respWriter{st: st, cancel: cancel},
		sem:   make(chan struct{}, maxStreamInFlight),
		order: sessionOrder{queues: map[sessionKey][]*fwdMsg{}},
	}
	received := make(chan error, 1)
	go func() { received <- fs.receive(st) }()
	var err error
	select {
	case err = <-received:
	case <-h.n.closeCh:
		// Leaving the cluster: finish what runs, then end the stream so
		// the frontend stops using it.
	case <-ctx.Done():
	}
	fs.stop()
	return err
}

// fwdServe is the backend's side of one Forward stream.
type fwdServe struct {
	n     *Node
	ctx   context.Context
	out   *respWriter
	sem   chan struct{}
	order sessionOrder

	mu      sync.Mutex
	stopped bool
	wg      sync.WaitGroup // runners
}

// receive reads and dispatches batches until the stream ends; a batch that
// does not decode ends it with an error.
func (fs *fwdServe) receive(st *connect.BidiStream[sysv1.ForwardBatch, sysv1.ForwardResponseBatch]) error {
	dec := fwdDecoder{count: &fs.n.fwdSnapshots}
	defer dec.close()
	var m fwdMsg
	for {
		b, err := st.Receive()
		if err != nil {
			return nil // the frontend closed the stream or went away
		}
		if err := dec.decode(b.Frames, &m, fs.dispatch); err != nil {
			fs.n.srv.Logger().Error("pomelo: forward stream from a frontend sent a malformed batch", "frontend", validUTF8(dec.frontend), "err", err)
			return runtime.Errorf(runtime.ErrBadRequest, "malformed forward batch")
		}
	}
}

// stop lets the runners finish (their responses written) and starts no
// more.
func (fs *fwdServe) stop() {
	fs.mu.Lock()
	fs.stopped = true
	fs.mu.Unlock()
	fs.wg.Wait()
}

var msgPool = sync.Pool{New: func() any { return new(fwdMsg) }}

// dispatch queues a decoded message behind its session's running one, or
// starts a runner for it.
func (fs *fwdServe) dispatch(d *fwdMsg) {
	m := msgPool.Get().(*fwdMsg)
	*m = *d
	key := sessionKey{m.session.FrontendID, m.session.ID}
	if fs.order.add(key, m) {
		return // a runner of this session is active and will take it
	}
	select {
	case fs.sem <- struct{}{}:
	case <-fs.ctx.Done():
		fs.order.abandon(key)
		return
	}
	fs.mu.Lock()
	if fs.stopped {
		fs.mu.Unlock()
		<-fs.sem
		fs.order.abandon(key)
		return
	}
	fs.wg.Add(1)
	fs.mu.Unlock()
	r := runnerPool.Get().(*runner)
	r.fs, r.key, r.first = fs, key, m
	handlerPool.Go(r.fn)
}

// runner runs the forwarded messages of one session, one at a time, in the
// order the frontend sent them (a notify is not awaited there). Runners are
// reused, with their function value, so starting one allocates nothing.
type runner struct {
	fs    *fwdServe
	key   sessionKey
	first *fwdMsg
	fn    func()
}

var runnerPool sync.Pool

func init() {
	runnerPool.New = func() any {
		r := new(runner)
		r.fn = r.run
		return r
	}
}

func (r *runner) run() {
	fs, key, m := r.fs, r.key, r.first
	r.fs, r.first = nil, nil
	runnerPool.Put(r)
	defer func() { <-fs.sem; fs.wg.Done() }()
	for ; m != nil; m = fs.order.next(key) {
		body, err := fs.n.runForwarded(fs.ctx, m)
		if !m.notify {
			fs.out.push(m.seq, body, err)
		}
		*m = fwdMsg{}
		msgPool.Put(m)
	}
}

// sessionKey names a session in the cluster.
type sessionKey struct {
	frontendID string
	sid        uint64
}

// maxSessionBacklog bounds the messages of one session waiting on a
// backend; beyond it notifies are dropped (a request is never waiting
// behind more than the notifies its client sent before it).
const maxSessionBacklog = 256

// sessionOrder keeps, per session with a runner, the forwarded messages
// waiting behind the one that runs.
type sessionOrder struct {
	mu     sync.Mutex
	queues map[sessionKey][]*fwdMsg
}

// add queues m behind its session's running message and reports true, or
// reports false when no message of the session runs: the caller then
// starts a runner with m as its first message.
func (o *sessionOrder) add(key sessionKey, m *fwdMsg) bool {
	o.mu.Lock()
	defer o.mu.Unlock()
	q, active := o.queues[key]
	if !active {
		o.queues[key] = nil // active, nothing waiting
		return false
	}
	if len(q) >= maxSessionBacklog && m.notify {
		*m = fwdMsg{}
		msgPool.Put(m)
		return true // dropped
	}
	o.queues[key] = append(q, m)
	return true
}

// next returns the session's next message, or nil, marking the session
// idle, when none is left.
func (o *sessionOrder) next(key sessionKey) *fwdMsg {
	o.mu.Lock()
	defer o.mu.Unlock()
	q := o.queues[key]
	if len(q) == 0 {
		delete(o.queues, key)
		return nil
	}
	m := q[0]
	copy(q, q[1:])
	q[len(q)-1] = nil
	o.queues[key] = q[:len(q)-1]
	return m
}

// abandon marks a session idle whose runner was never started: the stream
// is ending.
func (o *sessionOrder) abandon(key sessionKey) {
	o.mu.Lock()
	delete(o.queues, key)
	o.mu.Unlock()
}

// handlerPool runs forwarded handlers on reused goroutines; idle ones exit
// after a second.
var handlerPool = workpool.New(context.Background())

// respWriter writes a Forward stream's responses without a goroutine of
// its own: the runner that pushes a response while no write is under way
// writes it, and keeps writing whatever the others pushed meanwhile, many
// responses to a stream message, until nothing is left.
type respWriter struct {
	st     *connect.BidiStream[sysv1.ForwardBatch, sysv1.ForwardResponseBatch]
	cancel context.CancelFunc
	batch  sysv1.ForwardResponseBatch // the writer's

	mu        sync.Mutex
	out       batches
	writing   bool
	dead      bool // a write failed: the frontend is gone
	lastBatch int
}

// push queues the response of message seq, and writes it unless another
// runner is writing.
func (w *respWriter) push(seq uint64, body []byte, err *runtime.Error) {
	w.mu.Lock()
	if w.dead {
		w.mu.Unlock()
		return
	}
	b := w.out.open(len(body) + 64)
	*b = appendResponse(*b, seq, body, err)
	w.out.msgs++
	write := !w.writing
	w.writing = true
	w.mu.Unlock()
	if write {
		w.write()
	}
}

// write writes until nothing is queued (as fwdStream.write does).
func (w *respWriter) write() {
	for {
		w.mu.Lock()
		if w.out.msgs > 0 && w.out.msgs < w.lastBatch {
			w.mu.Unlock()
			goruntime.Gosched()
			w.mu.Lock()
		}
		if w.out.msgs == 0 {
			w.writing = false
			w.mu.Unlock()
			return
		}
		bs, n := w.out.take()
		w.lastBatch = n
		w.mu.Unlock()
		var err error
		for _, b := range bs {
			w.batch.Frames = b
			if err = w.st.Send(&w.batch); err != nil {
				break
			}
		}
		w.batch.Frames = nil
		w.mu.Lock()
		if err != nil {
			// The frontend is gone: stop the handlers too. The writer stays
			// marked writing, so nobody writes again.
			w.dead, w.out = true, batches{}
			w.mu.Unlock()
			w.cancel()
			return
		}
		w.out.done(bs)
		w.mu.Unlock()
	}
}

// runForwarded runs one forwarded message through the backend's chain and
// returns the encoded response or the error to answer.
func (n *Node) runForwarded(ctx context.Context, m *fwdMsg) ([]byte, *runtime.Error) {
	n.metrics.ForwardHandled()
	if m.deadline > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithDeadline(ctx, timeFromUnixNano(m.deadline))
		defer cancel()
	}
	snap := m.session
	n.watchers.autoWatch(n, snap.FrontendID, snap.ID)
	local := session.NewLocal(snap, &n.orig)
	r := &runtime.Request{Route: m.route, Session: local, Serializer: m.ser, Body: m.body}
	if !m.notify {
		r.ID = max(m.seq, 1) // any non-zero id: this is a request
	}
	ctx, span := n.tracer.StartHandle(ctx, m.trace, m.route, snap.ID, snap.UID, snap.FrontendID)
	body, err := n.srv.HandleForwarded(ctx, r)
	if err == nil && len(body) > maxForwardedBody {
		// More than the frontend would read in one stream message: fail
		// this response alone rather than the stream.
		n.srv.Logger().Error("pomelo: response too large to forward", "route", m.route, "session", snap.ID, "bytes", len(body), "max", maxForwardedBody)
		err = runtime.Errorf(runtime.ErrInternal, "response too large")
	}
	tracing.End(span, err)
	if err != nil {
		return nil, runtime.AsError(err)
	}
	return body, nil
}
