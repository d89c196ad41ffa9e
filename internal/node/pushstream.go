package node

import (
	"context"
	"sync"
	"time"

	"connectrpc.com/connect"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"

	sysv1 "github.com/pomelo-go/pomelo/gen/pomelo/sys/v1"
	"github.com/pomelo-go/pomelo/internal/batchq"
	"github.com/pomelo-go/pomelo/internal/tracing"
	"github.com/pomelo-go/pomelo/runtime"
	"github.com/pomelo-go/pomelo/runtime/session"
)

// maxQueuedPushes bounds the pushes to one frontend that wait to be
// written on its push stream (while a write is under way, or while the
// stream is being opened). A push beyond it fails at once with
// UNAVAILABLE, is logged and counted (pomelo_push_stream_dropped_total).
const maxQueuedPushes = 8192

// pusher keeps one PushStream per frontend this server pushes to, opened
// on the first push and again on the first push after it broke.
type pusher struct {
	n       *Node
	mu      sync.Mutex
	streams map[string]*pushStream
}

func newPusher(n *Node) *pusher {
	return &pusher{n: n, streams: map[string]*pushStream{}}
}

// push sends p to frontend frontendID on its stream and waits for the ack,
// until ctx ends or the call deadline (CallTimeout) passes.
func (ps *pusher) push(ctx context.Context, frontendID string, p *sysv1.StreamedPush) (*sysv1.PushAck, error) {
	st, err := ps.get(frontendID)
	if err != nil {
		return nil, err
	}
	deadline := time.Now().Add(ps.n.cfg.CallTimeout).UnixNano()
	if d, ok := ctx.Deadline(); ok && d.UnixNano() < deadline {
		deadline = d.UnixNano()
	}
	ch, err := st.enqueue(p, deadline)
	if err != nil {
		return nil, err
	}
	return st.wait(ctx, p.Seq, ch)
}

func (ps *pusher) get(frontendID string) (*pushStream, error) {
	ps.mu.Lock()
	defer ps.mu.Unlock()
	p, err := ps.n.peer(frontendID)
	if err != nil {
		return nil, err
	}
	if st, ok := ps.streams[frontendID]; ok && !st.isDead() && st.baseURL == p.conn.BaseURL {
		return st, nil
	}
	st := newPushStream(ps, frontendID, p)
	ps.streams[frontendID] = st
	return st, nil
}

func (ps *pusher) drop(st *pushStream) {
	ps.mu.Lock()
	if ps.streams[st.frontendID] == st {
		delete(ps.streams, st.frontendID)
	}
	ps.mu.Unlock()
}

// prune closes the streams to servers that left the cluster (or came back
// at another address) once their pending pushes are answered.
func (ps *pusher) prune(v *view) {
	ps.mu.Lock()
	var gone []*pushStream
	for id, st := range ps.streams {
		if info, ok := v.byID[id]; !ok || st.baseURL != baseURL(info) {
			gone = append(gone, st)
			delete(ps.streams, id)
		}
	}
	ps.mu.Unlock()
	for _, st := range gone {
		st.drain()
	}
}

func (ps *pusher) closeAll() {
	ps.mu.Lock()
	all := ps.streams
	ps.streams = map[string]*pushStream{}
	ps.mu.Unlock()
	for _, st := range all {
		st.fail(runtime.Errorf(runtime.ErrUnavailable, "pushing stopped"))
	}
}

// pushStream is one PushStream to a frontend: pushes from any goroutine are
// queued, written a batch per stream message, and answered by seq.
type pushStream struct {
	ps         *pusher
	frontendID string
	baseURL    string
	ctx        context.Context
	cancel     context.CancelFunc
	stream     *connect.BidiStreamForClient[sysv1.PushStreamBatch, sysv1.PushAckBatch]
	out        *batchq.Queue[*sysv1.StreamedPush]

	mu       sync.Mutex
	seq      uint64
	pending  map[uint64]pendingPush
	dead     error
	started  bool
	draining bool
}

// pendingPush is a push waiting for its ack.
type pendingPush struct {
	ch       chan *sysv1.PushAck
	deadline int64 // unix nanos
}

func newPushStream(ps *pusher, frontendID string, p *peer) *pushStream {
	ctx, cancel := context.WithCancel(context.Background())
	return &pushStream{
		ps:         ps,
		frontendID: frontendID,
		baseURL:    p.conn.BaseURL,
		ctx:        ctx,
		cancel:     cancel,
		stream:     p.channel.PushStream(ctx),
		out:        batchq.New(batchq.Config[*sysv1.StreamedPush]{Limit: maxQueuedPushes}),
		pending:    map[uint64]pendingPush{},
	}
}

func (st *pushStream) isDead() bool {
	st.mu.Lock()
	defer st.mu.Unlock()
	return st.dead != nil
}

// enqueue numbers p and queues it; the ack arrives on the returned channel,
// which is closed instead when the stream fails (st.dead says why).
func (st *pushStream) enqueue(p *sysv1.StreamedPush, deadline int64) (chan *sysv1.PushAck, error) {
	st.mu.Lock()
	if st.dead != nil {
		err := st.dead
		st.mu.Unlock()
		return nil, err
	}
	st.seq++
	p.Seq = st.seq
	if err := st.out.Push(p); err != nil { // under st.mu: queued in seq order
		st.mu.Unlock()
		st.ps.n.metrics.PushStreamDropped(1)
		st.ps.n.log.Error("pomelo: push dropped: too many pushes queued for the frontend", "frontend", st.frontendID, "route", p.Route, "queued", maxQueuedPushes)
		return nil, runtime.Errorf(runtime.ErrUnavailable, "%s: too many pushes queued", st.frontendID)
	}
	ch := make(chan *sysv1.PushAck, 1)
	st.pending[p.Seq] = pendingPush{ch: ch, deadline: deadline}
	start := !st.started
	st.started = true
	st.mu.Unlock()
	if start {
		go st.send()
		go st.receive()
		go st.sweep()
	}
	return ch, nil
}

// wait waits for the ack of push seq.
func (st *pushStream) wait(ctx context.Context, seq uint64, ch chan *sysv1.PushAck) (*sysv1.PushAck, error) {
	select {
	case ack, ok := <-ch:
		if !ok {
			st.mu.Lock()
			err := st.dead
			st.mu.Unlock()
			return nil, err
		}
		if ack.Error != nil {
			return nil, runtime.ErrorFromProto(ack.Error)
		}
		return ack, nil
	case <-ctx.Done():
		st.mu.Lock()
		delete(st.pending, seq)
		st.mu.Unlock()
		return nil, runtime.AsError(ctx.Err())
	}
}

// send writes the queued pushes, all of them in one stream message (split
// only past maxBatchBytes), until the stream dies. While one write is under
// way the next pushes queue up: under load many pushes share a write, and
// an idle stream writes each push at once.
func (st *pushStream) send() {
	defer st.stream.CloseRequest() // see fwdStream.send
	var ps []*sysv1.StreamedPush
	batch := &sysv1.PushStreamBatch{}
	for {
		select {
		case <-st.out.Ready():
		case <-st.ctx.Done():
			return
		}
		ps, _ = st.out.Take(ps) // never closed: the stream ends by ctx
		if len(ps) == 0 {
			continue
		}
		st.ps.n.metrics.PushBatch(len(ps))
		err := inChunks(ps, pushSize, func(ps []*sysv1.StreamedPush) error {
			batch.Pushes = ps
			err := st.stream.Send(batch)
			if err != nil {
				// A push that cannot be encoded fails alone; the stream
				// stays usable.
				if ok, changed := keepEncodable(ps, st.refuse); changed {
					batch.Pushes = ok
					err = nil
					if len(ok) > 0 {
						err = st.stream.Send(batch)
					}
				}
			}
			return err
		})
		batch.Pushes = nil
		clear(ps)
		if err != nil {
			st.fail(runtime.Errorf(runtime.ErrUnavailable, "%s: push stream broke: %v", st.frontendID, err))
			return
		}
	}
}

// pushSize estimates the encoded size of a push.
func pushSize(p *sysv1.StreamedPush) int {
	return len(p.Route) + len(p.GetPayload().GetProto()) + len(p.GetPayload().GetJson()) + len(p.GetPayload().GetType()) + len(p.Uids) + 10*len(p.Sids) + 64
}

// packUIDs encodes uids for StreamedPush.uids: each as a varint length and
// its bytes.
func packUIDs(uids []string) []byte {
	if len(uids) == 0 {
		return nil
	}
	n := 0
	for _, u := range uids {
		n += protowire.SizeVarint(uint64(len(u))) + len(u)
	}
	b := make([]byte, 0, n)
	for _, u := range uids {
		b = protowire.AppendVarint(b, uint64(len(u)))
		b = append(b, u...)
	}
	return b
}

// errBadUIDs answers a push whose uids field is malformed.
var errBadUIDs = runtime.Errorf(runtime.ErrBadRequest, "malformed uids in a push")

// unpackUIDs decodes StreamedPush.uids: one string holds every uid, and
// the uids returned are its substrings.
func unpackUIDs(b []byte) ([]string, error) {
	if len(b) == 0 {
		return nil, nil
	}
	all := string(b)
	count := 0
	for rest := b; len(rest) > 0; count++ {
		l, n := protowire.ConsumeVarint(rest)
		if n < 0 || l > uint64(len(rest)-n) {
			return nil, errBadUIDs
		}
		rest = rest[n+int(l):]
	}
	uids := make([]string, 0, count)
	for off := 0; off < len(all); {
		l, n := protowire.ConsumeVarint(b[off:])
		off += n
		uids = append(uids, all[off:off+int(l)])
		off += int(l)
	}
	return uids, nil
}

// refuse answers a push that cannot be encoded (a route that is not
// UTF-8) with BAD_REQUEST.
func (st *pushStream) refuse(p *sysv1.StreamedPush) bool {
	st.answer(&sysv1.PushAck{Seq: p.Seq, Error: runtime.Errorf(runtime.ErrBadRequest, "the push could not be encoded").Proto()})
	return false
}

// answer hands ack to its pending push, if it still waits.
func (st *pushStream) answer(ack *sysv1.PushAck) {
	st.mu.Lock()
	p, ok := st.pending[ack.Seq]
	delete(st.pending, ack.Seq)
	st.mu.Unlock()
	if ok {
		p.ch <- ack // buffered: never blocks
	}
}

func (st *pushStream) receive() {
	defer st.stream.CloseResponse()
	for {
		batch, err := st.stream.Receive()
		if err != nil {
			st.fail(runtime.Errorf(runtime.ErrUnavailable, "%s: push stream ended: %v", st.frontendID, err))
			return
		}
		st.mu.Lock()
		for _, ack := range batch.Acks {
			if p, ok := st.pending[ack.Seq]; ok {
				delete(st.pending, ack.Seq)
				p.ch <- ack // buffered: never blocks
			}
		}
		done := st.draining && len(st.pending) == 0
		st.mu.Unlock()
		if done {
			st.fail(runtime.Errorf(runtime.ErrUnavailable, "%s left the cluster", st.frontendID))
			return
		}
	}
}

// sweep answers TIMEOUT to pushes past their deadline, until the stream
// dies: one ticker per stream instead of a timer per push.
func (st *pushStream) sweep() {
	t := time.NewTicker(sweepInterval)
	defer t.Stop()
	for {
		select {
		case <-st.ctx.Done():
			return
		case now := <-t.C:
			ns := now.UnixNano()
			st.mu.Lock()
			for seq, p := range st.pending {
				if p.deadline <= ns {
					delete(st.pending, seq)
					p.ch <- &sysv1.PushAck{Seq: seq, Error: runtime.Errorf(runtime.ErrTimeout, "%s did not answer a push in time", st.frontendID).Proto()}
				}
			}
			st.mu.Unlock()
		}
	}
}

// drain lets pending pushes be answered, then closes the stream.
func (st *pushStream) drain() {
	st.mu.Lock()
	st.draining = true
	idle := len(st.pending) == 0
	st.mu.Unlock()
	if idle {
		st.fail(runtime.Errorf(runtime.ErrUnavailable, "%s left the cluster", st.frontendID))
	}
}

// fail marks the stream dead and fails every pending push with err; the
// next push opens a new stream.
func (st *pushStream) fail(err error) {
	st.mu.Lock()
	first := st.dead == nil
	if first {
		st.dead = err
	}
	pending := st.pending
	st.pending = map[uint64]pendingPush{}
	st.mu.Unlock()
	if first && len(pending) > 0 {
		// Pushes already written may have been delivered; the queued ones
		// were not. Their callers get err (UNAVAILABLE).
		st.ps.n.metrics.PushStreamDropped(len(pending))
		st.ps.n.log.Error("pomelo: push stream failed with pushes unanswered", "frontend", st.frontendID, "pushes", len(pending), "error", err)
	}
	for _, p := range pending {
		close(p.ch)
	}
	st.cancel()
	st.out.Discard()
	st.ps.drop(st)
}

// deliverPush pushes one payload that arrived from another server to the
// uids' and sids' sessions of this frontend, encoding it once per
// serializer. An error is returned only when the payload could not be
// encoded for a client (the sender's problem); a client too slow to take
// it is kicked by the session service, as for local pushes.
func (n *Node) deliverPush(route string, p *sysv1.Payload, uids []string, sids []uint64) (failedUIDs []string, failedSIDs []uint64, err error) {
	if p == nil {
		return nil, nil, errNoPayload
	}
	svc := n.srv.Sessions()
	body := session.Body(payloadBody{p})
	var err1, err2 error
	if len(uids) > 0 {
		failedUIDs, err1 = svc.PushBodyToUIDs(route, body, uids)
	}
	if len(sids) > 0 {
		failedSIDs, err2 = svc.PushBodyToSIDs(route, body, sids)
	}
	if err := firstErr(err1, err2); err != nil && isEncodeError(err) {
		return failedUIDs, failedSIDs, err
	}
	return failedUIDs, failedSIDs, nil
}

// servePushStream serves one PushStream on a frontend: pushes are
// delivered in the order they arrive, each answered by an ack; acks queued
// while one is written share the next stream message.
func (n *Node) servePushStream(ctx context.Context, st *connect.BidiStream[sysv1.PushStreamBatch, sysv1.PushAckBatch]) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	acks := batchq.New(batchq.Config[*sysv1.PushAck]{})
	senderDone := make(chan struct{})
	go func() {
		defer close(senderDone)
		if err := sendAcks(ctx, acks, st); err != nil {
			cancel() // the pusher is gone
		}
	}()
	defer func() {
		acks.Close()
		<-senderDone
	}()
	batches := make(chan *sysv1.PushStreamBatch)
	go func() {
		defer close(batches)
		for {
			b, err := st.Receive()
			if err != nil {
				return // the pusher closed the stream or went away
			}
			select {
			case batches <- b:
			case <-ctx.Done():
				return
			}
		}
	}()
	for {
		var b *sysv1.PushStreamBatch
		select {
		case r, ok := <-batches:
			if !ok {
				return nil
			}
			b = r
		case <-n.closeCh:
			return nil // leaving the cluster: the pusher's next push reconnects elsewhere or fails
		case <-ctx.Done():
			return nil
		}
		for _, p := range b.Pushes {
			acks.Push(n.deliverStreamed(ctx, p))
		}
	}
}

// deliverStreamed delivers one streamed push, in a span that continues the
// pusher's trace, and returns its ack.
func (n *Node) deliverStreamed(ctx context.Context, p *sysv1.StreamedPush) *sysv1.PushAck {
	ack := &sysv1.PushAck{Seq: p.Seq}
	uids, err := unpackUIDs(p.Uids)
	_, span := n.tracer.StartPushDelivery(ctx, p.TraceContext, p.Route, len(uids)+len(p.Sids))
	if err == nil {
		ack.FailedUids, ack.FailedSids, err = n.deliverPush(p.Route, p.Payload, uids, p.Sids)
	}
	tracing.End(span, err)
	if err != nil {
		ack.Error = runtime.AsError(err).Proto()
	}
	return ack
}

// sendAcks writes the queued acks, everything queued in one stream
// message, until acks is closed and empty or a write fails.
func sendAcks(ctx context.Context, acks *batchq.Queue[*sysv1.PushAck], st *connect.BidiStream[sysv1.PushStreamBatch, sysv1.PushAckBatch]) error {
	var as []*sysv1.PushAck
	batch := &sysv1.PushAckBatch{}
	for {
		select {
		case <-acks.Ready():
		case <-ctx.Done():
			return ctx.Err()
		}
		var closed bool
		as, closed = acks.Take(as)
		var err error
		if len(as) > 0 {
			err = inChunks(as, ackSize, func(as []*sysv1.PushAck) error {
				batch.Acks = as
				err := st.Send(batch)
				if err != nil {
					if ok, changed := keepEncodable(as, repairAck); changed {
						batch.Acks = ok
						err = st.Send(batch)
					}
				}
				return err
			})
		}
		batch.Acks = nil
		clear(as)
		if err != nil {
			return err
		}
		if closed {
			return nil
		}
	}
}

// ackSize estimates the encoded size of an ack.
func ackSize(a *sysv1.PushAck) int {
	n := 16 + len(a.GetError().GetMessage()) + 10*len(a.FailedSids)
	for _, u := range a.FailedUids {
		n += len(u) + 2
	}
	return n
}

// repairAck makes an ack that failed to marshal encodable: its error's
// strings become valid UTF-8 (failed uids came from the push, which
// encoded).
func repairAck(a *sysv1.PushAck) bool {
	if e := a.Error; e != nil {
		e.Name, e.Message = validUTF8(e.Name), validUTF8(e.Message)
	}
	return true
}

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
