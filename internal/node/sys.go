package node

import (
	"context"
	"errors"
	"fmt"
	"sync"

	"connectrpc.com/connect"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/reflect/protoregistry"
	"google.golang.org/protobuf/types/known/emptypb"

	sysv1 "github.com/pomelo-go/pomelo/gen/pomelo/sys/v1"
	"github.com/pomelo-go/pomelo/gen/pomelo/sys/v1/sysv1connect"
	"github.com/pomelo-go/pomelo/internal/batchq"
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
	return connect.NewResponse(h.n.runForwarded(ctx, r.Msg)), nil
}

// maxStreamInFlight bounds the forwarded messages one stream runs at once;
// beyond it the stream stops reading (back-pressure to the frontend).
const maxStreamInFlight = 1024

func (h *msgRemote) Forward(ctx context.Context, st *connect.BidiStream[sysv1.ForwardBatch, sysv1.ForwardResponseBatch]) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	out := newResponseQueue()
	senderDone := make(chan struct{})
	go func() {
		defer close(senderDone)
		if err := out.run(ctx, st); err != nil {
			cancel() // the frontend is gone: stop the handlers too
		}
	}()
	var (
		wg    sync.WaitGroup
		sem   = make(chan struct{}, maxStreamInFlight)
		order = &sessionOrder{queues: map[sessionKey][]*sysv1.ForwardRequest{}}
	)
	defer func() {
		wg.Wait()
		out.close()
		<-senderDone
	}()
	batches := make(chan *sysv1.ForwardBatch)
	go func() {
		defer close(batches)
		for {
			b, err := st.Receive()
			if err != nil {
				return // the frontend closed the stream or went away
			}
			select {
			case batches <- b:
			case <-ctx.Done():
				return
			}
		}
	}()
	for {
		var b *sysv1.ForwardBatch
		select {
		case r, ok := <-batches:
			if !ok {
				return nil
			}
			b = r
		case <-h.n.closeCh:
			// Leaving the cluster: finish what runs (deferred), then end
			// the stream so the frontend stops using it.
			return nil
		case <-ctx.Done():
			return nil
		}
		for _, req := range b.Requests {
			key := sessionKey{req.GetSession().GetFrontendId(), req.GetSession().GetId()}
			if order.add(key, req) {
				continue // a runner of this session is active and will take it
			}
			select {
			case sem <- struct{}{}:
			case <-ctx.Done():
				return nil
			}
			wg.Add(1)
			handlerPool.Go(func() {
				defer func() { <-sem; wg.Done() }()
				// Messages of one session run one at a time, in the order
				// the frontend sent them (a notify is not awaited there).
				for req := range order.drain(key) {
					res := h.n.runForwarded(ctx, req)
					if !req.Notify {
						out.push(res)
					}
				}
			})
		}
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

// sessionOrder keeps, per session, the forwarded messages waiting behind
// the one that runs.
type sessionOrder struct {
	mu     sync.Mutex
	queues map[sessionKey][]*sysv1.ForwardRequest
}

// add queues req behind its session's running message and reports true, or
// reports false when no message of the session runs: the caller then starts
// a runner (drain) with req as its first message.
func (o *sessionOrder) add(key sessionKey, req *sysv1.ForwardRequest) bool {
	o.mu.Lock()
	defer o.mu.Unlock()
	q, active := o.queues[key]
	if !active {
		o.queues[key] = []*sysv1.ForwardRequest{req}
		return false
	}
	if len(q) >= maxSessionBacklog && req.Notify {
		return true // dropped
	}
	o.queues[key] = append(q, req)
	return true
}

// drain yields the session's messages in order until none is left, then
// marks the session idle.
func (o *sessionOrder) drain(key sessionKey) func(yield func(*sysv1.ForwardRequest) bool) {
	return func(yield func(*sysv1.ForwardRequest) bool) {
		for {
			o.mu.Lock()
			q := o.queues[key]
			if len(q) == 0 {
				delete(o.queues, key)
				o.mu.Unlock()
				return
			}
			req := q[0]
			q[0] = nil
			o.queues[key] = q[1:]
			o.mu.Unlock()
			if !yield(req) {
				o.mu.Lock()
				delete(o.queues, key)
				o.mu.Unlock()
				return
			}
		}
	}
}

// handlerPool runs forwarded handlers on reused goroutines; idle ones exit
// after a second.
var handlerPool = workpool.New(context.Background())

// responseQueue collects a Forward stream's responses; run writes
// everything queued as one stream message, so responses that finish while
// a write is under way share the next one.
type responseQueue struct {
	q *batchq.Queue[*sysv1.ForwardResponse]
}

func newResponseQueue() *responseQueue {
	return &responseQueue{q: batchq.New(batchq.Config[*sysv1.ForwardResponse]{})}
}

func (q *responseQueue) push(r *sysv1.ForwardResponse) { q.q.Push(r) }

// close makes run return once everything queued is written.
func (q *responseQueue) close() { q.q.Close() }

func (q *responseQueue) run(ctx context.Context, st *connect.BidiStream[sysv1.ForwardBatch, sysv1.ForwardResponseBatch]) error {
	var rs []*sysv1.ForwardResponse
	batch := &sysv1.ForwardResponseBatch{}
	for {
		select {
		case <-q.q.Ready():
		case <-ctx.Done():
			return ctx.Err()
		}
		var closed bool
		rs, closed = q.q.Take(rs)
		err := inChunks(rs, responseSize, func(rs []*sysv1.ForwardResponse) error {
			batch.Responses = rs
			err := st.Send(batch)
			if err != nil {
				// A response that cannot be encoded fails alone (forward.go).
				if ok, changed := keepEncodable(rs, repairResponse); changed {
					batch.Responses = ok
					err = st.Send(batch)
				}
			}
			return err
		})
		batch.Responses = nil
		clear(rs)
		if err != nil || closed {
			return err
		}
	}
}

// runForwarded runs one forwarded message through the backend's chain.
func (n *Node) runForwarded(ctx context.Context, req *sysv1.ForwardRequest) *sysv1.ForwardResponse {
	n.metrics.ForwardHandled()
	res := &sysv1.ForwardResponse{Seq: req.Seq}
	if req.DeadlineUnixNano > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithDeadline(ctx, timeFromUnixNano(req.DeadlineUnixNano))
		defer cancel()
	}
	ser := runtime.JSON
	if req.Serializer == sysv1.Serializer_SERIALIZER_PROTOBUF {
		ser = runtime.Protobuf
	}
	n.watchers.autoWatch(n, req.GetSession().GetFrontendId(), req.GetSession().GetId())
	local := session.NewLocal(snapshotFromProto(req.Session), &origin{n: n})
	r := &runtime.Request{Route: req.Route, Session: local, Serializer: ser, Body: req.Body}
	if !req.Notify {
		r.ID = max(req.Seq, 1) // any non-zero id: this is a request
	}
	ctx, span := n.tracer.StartHandle(ctx, req.TraceContext, req.Route, req.GetSession().GetId(), req.GetSession().GetUid(), req.GetSession().GetFrontendId())
	body, err := n.srv.HandleForwarded(ctx, r)
	if err == nil && len(body) > maxForwardedBody {
		// More than the frontend would read in one stream message: fail
		// this response alone rather than the stream.
		n.srv.Logger().Error("pomelo: response too large to forward", "route", req.Route, "session", req.GetSession().GetId(), "bytes", len(body), "max", maxForwardedBody)
		err = runtime.Errorf(runtime.ErrInternal, "response too large")
	}
	tracing.End(span, err)
	if err != nil {
		res.Error = runtime.AsError(err).Proto()
	} else {
		res.Body = body
	}
	return res
}
