package connector

import (
	"context"
	"errors"
	"fmt"
	"net"
	goruntime "runtime"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pomelo-go/pomelo/internal/batchq"
	"github.com/pomelo-go/pomelo/runtime"
	"github.com/pomelo-go/pomelo/runtime/session"
	"github.com/pomelo-go/pomelo/runtime/wire"
)

// Connection states (docs/PROTOCOL.md section 4).
const (
	stateInited int32 = iota
	stateWaitAck
	stateWorking
	stateClosed
)

// KickReasonSlowConsumer is the kick reason of a client whose send queue
// overflowed.
const KickReasonSlowConsumer = "slow consumer"

// KickReasonShutdown is the default kick reason when the server shuts down.
const KickReasonShutdown = "server shutdown"

var errSlowConsumer = runtime.Errorf(runtime.ErrClosed, "client send queue is full")

// conn is one client connection and implements session.Conn.
type conn struct {
	c         *Connector
	transport transport
	// sess is the connection's session: the one made with it, or, once a
	// resume is granted, the resumed one.
	sess atomic.Pointer[session.Session]
	// link is set by the handshake of a resumable session (resume.go).
	link atomic.Pointer[link]
	// detached: the connection no longer carries its resumable session
	// (it dropped, or a resume took the session over); its inbox may still
	// run the messages it accepted, which after waits for.
	detached atomic.Bool
	after    atomic.Pointer[conn]          // the detached connection whose inbox runs first
	ser      atomic.Pointer[serializerBox] // set by the handshake
	state    atomic.Int32
	lastRecv atomic.Int64 // unix nanos of the last package received
	timer    *time.Timer  // handshake, then heartbeat timeout

	// send queue, drained by writeLoop, which runs only while something is
	// queued (writing); closed: no more Sends, flush then close
	out     *batchq.Queue[[]byte]
	writing atomic.Bool
	// loaded: the writer's last write carried several packages, so more
	// are likely on their way; the next writer yields once before it
	// takes. Only the writer reads and writes it.
	loaded bool
	writer func() // writeLoop, bound once: starting it allocates nothing
	// With Config.PushFlushInterval, the writer holds pushes for up to
	// that long before it takes; urgent says something else is queued
	// (a response, a control package), hurry wakes a holding writer.
	urgent   atomic.Bool
	hurry    chan struct{} // nil without PushFlushInterval
	done     chan struct{} // closed when the connection is finished
	doneOnce sync.Once

	// inbox of messages for the handling chain, in arrival order
	readerDone chan struct{} // closed when readLoop returns

	inMu     sync.Mutex
	inbox    []*wire.Message // inbox[inHead:] waits to run
	inHead   int
	inActive bool
	inCtx    context.Context
	inCancel context.CancelFunc
	// paused: the reader waits for room in the inbox (back-pressure); room
	// wakes it.
	paused bool
	room   chan struct{}
	// stopping: no more messages are accepted; the waiting ones are
	// answered CLOSED once the running one has finished.
	stopping bool
	// idle, when set, is closed once the inbox has no work (waitIdle).
	idle chan struct{}
	// ended: Kick or Close was called; kick and kickReason say which. The
	// final KICK (or close) follows the answers of every accepted message.
	ended      bool
	kick       bool
	kickReason string
}

// serializerBox lets the serializer be swapped atomically.
type serializerBox struct{ s runtime.Serializer }

var jsonBox = &serializerBox{runtime.JSON}

func newConn(c *Connector, t transport) *conn {
	cn := &conn{
		c:          c,
		transport:  t,
		out:        batchq.New(batchq.Config[[]byte]{Limit: c.cfg.SendQueueBytes, Weight: func(p []byte) int { return len(p) }}),
		done:       make(chan struct{}),
		readerDone: make(chan struct{}),
		room:       make(chan struct{}, 1),
	}
	if c.cfg.PushFlushInterval > 0 {
		cn.hurry = make(chan struct{}, 1)
	}
	cn.writer = cn.writeLoop
	cn.ser.Store(jsonBox)
	cn.inCtx, cn.inCancel = context.WithCancel(c.ctx)
	cn.lastRecv.Store(time.Now().UnixNano())
	return cn
}

// start creates the session and arms the handshake timer, once the
// connector has accepted the connection.
func (cn *conn) start() {
	cn.sess.Store(cn.c.sessions.Create(cn))
	cn.timer = time.AfterFunc(cn.c.cfg.HandshakeTimeout, cn.onTimer)
}

// errNotReady answers a push to a connection that has not finished its
// handshake: Pomelo sends nothing before that either.
var errNotReady = runtime.Errorf(runtime.ErrClosed, "connection has not completed its handshake")

// session returns the connection's session.
func (cn *conn) session() *session.Session { return cn.sess.Load() }

// Send implements session.Conn. Only a connection that completed its
// handshake (WORKING) takes packages.
func (cn *conn) Send(pkgs []byte) error {
	if st := cn.state.Load(); st != stateWorking {
		if st == stateClosed {
			return runtime.Errorf(runtime.ErrClosed, "connection closed")
		}
		return errNotReady
	}
	return cn.push(pkgs)
}

// push queues pkgs for the writer; a full queue kicks the session as a
// slow consumer.
func (cn *conn) push(pkgs []byte) error {
	switch cn.out.Push(pkgs) {
	case nil:
		if cn.hurry != nil && !isPush(pkgs) {
			cn.hurryUp()
		}
		cn.wakeWriter()
		return nil
	case batchq.ErrFull:
		// Kick on another goroutine: the close hooks may push to other
		// sessions.
		go cn.c.sessions.CloseSession(cn.session(), KickReasonSlowConsumer, true)
		return errSlowConsumer
	}
	return runtime.Errorf(runtime.ErrClosed, "connection closed")
}

// sendControl queues a control package even when the queue is over its
// limit (heartbeats, handshake replies, the final kick).
func (cn *conn) sendControl(pkg []byte, thenClose bool) {
	if thenClose {
		cn.out.PushAndClose(pkg)
	} else {
		cn.out.PushUnbounded(pkg)
	}
	cn.wakeWriterNow()
}

// wakeWriterNow wakes the writer and has it write at once, with any
// pushes it holds.
func (cn *conn) wakeWriterNow() {
	if cn.hurry != nil {
		cn.hurryUp()
	}
	cn.wakeWriter()
}

// isPush reports whether pkgs starts with a DATA package holding a PUSH
// message: what PushFlushInterval may hold.
func isPush(pkgs []byte) bool {
	return len(pkgs) > wire.HeaderLen && wire.PackageType(pkgs[0]) == wire.TypeData &&
		wire.MessageType(pkgs[wire.HeaderLen]>>1&0x07) == wire.Push
}

// hurryUp tells a writer holding pushes that something else is queued:
// it writes at once, with the pushes held.
func (cn *conn) hurryUp() {
	cn.urgent.Store(true)
	select {
	case cn.hurry <- struct{}{}:
	default:
	}
}

// holdPushes, before the writer takes, waits up to PushFlushInterval
// while only pushes are queued, so that the pushes of that time share one
// write; it returns at once when something else is queued or the
// connection finishes.
func (cn *conn) holdPushes() {
	select {
	case <-cn.hurry: // a stale wake-up from an earlier batch
	default:
	}
	if !cn.urgent.Swap(false) {
		t := time.NewTimer(cn.c.cfg.PushFlushInterval)
		select {
		case <-t.C:
		case <-cn.hurry:
			cn.urgent.Store(false)
		case <-cn.done:
		}
		t.Stop()
	}
}

// wakeWriter starts the writer unless one is running: an idle connection
// has none. Exactly one runs at a time (writing); it returns once the
// queue is empty. It runs on the connector's reused goroutines, whose
// stacks have grown already, so a burst does not start a goroutine.
func (cn *conn) wakeWriter() {
	if cn.writing.CompareAndSwap(false, true) {
		cn.c.workers.Go(cn.writer)
	}
}

// Kick implements session.Conn: stop reading, answer every accepted
// request (the running one with its result, the waiting ones CLOSED), then
// KICK with reason, flush, close. It does not wait: a handler may kick its
// own session.
func (cn *conn) Kick(reason string) { cn.end(true, reason) }

// Close implements session.Conn: like Kick, without the KICK.
func (cn *conn) Close() { cn.end(false, "") }

// halt stops accepting messages: what the reader reads from now on is
// dropped, and the messages waiting in the inbox are answered CLOSED once
// the running one has finished.
func (cn *conn) halt() {
	cn.inMu.Lock()
	cn.stopping = true
	cn.inMu.Unlock()
	cn.wakeReader()
}

// end halts and closes the connection, with a KICK when kick is true, after
// the answers of the accepted messages: at once when none is running,
// otherwise when drainInbox has answered them.
func (cn *conn) end(kick bool, reason string) {
	cn.inMu.Lock()
	cn.stopping = true
	if cn.ended {
		cn.inMu.Unlock()
		return
	}
	cn.ended, cn.kick, cn.kickReason = true, kick, reason
	active := cn.inActive
	cn.inMu.Unlock()
	cn.wakeReader()
	if !active {
		cn.closeAfterAnswers(kick, reason)
		return
	}
	cn.c.mu.Lock()
	shuttingDown := cn.c.closed
	cn.c.mu.Unlock()
	if shuttingDown {
		return // Shutdown bounds the running requests by its own ctx
	}
	// On a kick the running request gets a grace to finish, then its
	// context is cancelled (it is answered CLOSED), then, if it still has
	// not returned, the connection closes without its answer: a handler
	// that never returns cannot hold a kicked connection open. Once the
	// request has returned the timers do nothing.
	grace := cn.c.cfg.closeGrace
	time.AfterFunc(grace, func() {
		if !cn.stillRunning() {
			return
		}
		cn.inCancel()
		time.AfterFunc(grace, func() {
			if cn.stillRunning() {
				cn.finish()
			}
		})
	})
}

// stillRunning reports whether the message running when the connection
// ended has not returned yet (and the connection is not torn down).
func (cn *conn) stillRunning() bool {
	select {
	case <-cn.done:
		return false
	default:
	}
	cn.inMu.Lock()
	defer cn.inMu.Unlock()
	return cn.inActive
}

// closeAfterAnswers queues the final KICK (or just marks the queue closing)
// behind the answers already queued.
func (cn *conn) closeAfterAnswers(kick bool, reason string) {
	if kick {
		pkg, _ := wire.AppendPackage(nil, wire.TypeKick, wire.KickBody(reason))
		cn.sendControl(pkg, true)
	} else {
		cn.out.Close()
		cn.wakeWriterNow()
	}
	cn.setState(stateClosed)
}

func (cn *conn) wakeReader() {
	select {
	case cn.room <- struct{}{}:
	default:
	}
}

// RemoteAddr implements session.Conn.
func (cn *conn) RemoteAddr() net.Addr { return cn.transport.remoteAddr() }

// Serializer implements session.Conn.
func (cn *conn) Serializer() runtime.Serializer { return cn.ser.Load().s }

func (cn *conn) setState(s int32) { cn.state.Store(s) }

// finish tears the connection down once: called by the reader on any read
// error, and by the writer after the final flush.
func (cn *conn) finish() {
	cn.doneOnce.Do(func() {
		cn.timer.Stop()
		if !cn.detached.Load() || !cn.busy() {
			// A detached connection's inbox cancels when it runs dry.
			cn.inCancel()
		}
		cn.out.Discard()
		close(cn.done)
		cn.transport.closeNow()
		cn.c.removeConn(cn)
	})
}

// shutdown kicks the session (or just closes it when reason is empty).
func (cn *conn) shutdown(reason string) {
	cn.c.sessions.CloseSession(cn.session(), reason, reason != "")
}

// onTimer closes a connection that has not completed its handshake in time,
// or from which nothing arrived within the heartbeat timeout. Time during
// which the reader is paused by back-pressure counts as alive: we are not
// reading what the client sends.
func (cn *conn) onTimer() {
	if cn.state.Load() == stateWorking {
		cn.inMu.Lock()
		paused := cn.paused
		cn.inMu.Unlock()
		if paused && !cn.transport.peerGone() {
			cn.timer.Reset(cn.c.cfg.HeartbeatTimeout)
			return
		}
		if paused {
			// The client left while we were not reading: end (or suspend)
			// the session (the running request's context is cancelled
			// after the grace).
			cn.drop(false)
			return
		}
		idle := time.Duration(time.Now().UnixNano() - cn.lastRecv.Load())
		if left := cn.c.cfg.HeartbeatTimeout - idle; left > 0 {
			cn.timer.Reset(left)
			return
		}
	}
	cn.drop(false)
}

// drop handles the end of the connection without a kick: the client left
// (leave: a WebSocket close with code 1000), broke the protocol, or the
// connection failed. A resumable session is suspended instead of closed
// (and the connection closed at once); any other closes.
func (cn *conn) drop(leave bool) {
	if l := cn.link.Load(); l != nil {
		if leave && !l.carries(cn) {
			// The session has moved to a newer connection: a leave read
			// on this one ends this one only.
			cn.transport.closeNow()
			return
		}
		if !leave && l.suspend(cn) {
			cn.transport.closeNow()
			return
		}
	}
	cn.c.sessions.CloseSession(cn.session(), "", false)
}

// forgotten, once the inbox ran dry, lets the session of a detached
// connection drop it.
func (cn *conn) forgotten() {
	if cn.detached.Load() {
		if l := cn.link.Load(); l != nil {
			l.forget(cn)
		}
	}
}

// runsAfter returns the connection whose inbox must run dry before a
// message that follows cn's runs: cn while its inbox has work, else the
// one cn itself was to wait for (a connection that ran nothing leaves
// that wait to its successor), or nil.
func (cn *conn) runsAfter() *conn {
	for w := cn; w != nil; w = w.after.Load() {
		if w.busy() {
			return w
		}
	}
	return nil
}

// busy reports whether the inbox has work.
func (cn *conn) busy() bool {
	cn.inMu.Lock()
	defer cn.inMu.Unlock()
	return cn.inActive
}

// waitIdle returns once cn's inbox has no work.
func (cn *conn) waitIdle() {
	cn.inMu.Lock()
	if !cn.inActive {
		cn.inMu.Unlock()
		return
	}
	if cn.idle == nil {
		cn.idle = make(chan struct{})
	}
	idle := cn.idle
	cn.inMu.Unlock()
	<-idle
}

// wentIdle, with cn.inMu held, wakes those waiting for the inbox to run
// dry; a detached connection's context goes with its last message.
func (cn *conn) wentIdle() {
	cn.inActive = false
	if cn.idle != nil {
		close(cn.idle)
		cn.idle = nil
	}
	if cn.detached.Load() {
		cn.inCancel()
	}
}

// writeBufs holds the coalescing buffers of the connections writing at
// the moment: an idle connection keeps none.
var writeBufs = sync.Pool{New: func() any { return new([]byte) }}

// writeLoop, the connection's writer while cn.writing is set, writes
// everything queued, each batch coalesced into one frame, and returns once
// the queue is empty; after the final batch it closes the connection.
func (cn *conn) writeLoop() {
	var buf *[]byte
	defer func() {
		if buf != nil {
			if cap(*buf) <= 64<<10 {
				*buf = (*buf)[:0]
				writeBufs.Put(buf)
			}
		}
	}()
	var batch [][]byte
	for {
		select {
		case <-cn.done:
			return // finished: no writer starts again (writing stays set)
		default:
		}
		if cn.loaded {
			// Under load, let the goroutines queueing to this connection
			// (a push delivered to many) run first, so that one write
			// carries more. An idle connection never waits here.
			goruntime.Gosched()
		}
		if cn.hurry != nil {
			cn.holdPushes()
		}
		var closing bool
		batch, closing = cn.out.Take(batch)
		cn.loaded = len(batch) > 1
		if len(batch) > 0 {
			// Coalesce every queued package into one frame; a single
			// package is written as it is.
			frame := batch[0]
			if len(batch) > 1 {
				if buf == nil {
					buf = writeBufs.Get().(*[]byte)
				}
				b := (*buf)[:0]
				for _, p := range batch {
					b = append(b, p...)
				}
				*buf, frame = b, b
			}
			err := cn.transport.write(frame, cn.c.cfg.WriteTimeout)
			clear(batch) // the packages are written: let them go now
			if err != nil {
				cn.drop(false)
				cn.finish()
				return
			}
		}
		if closing {
			// Everything is flushed: close gracefully, letting the reader
			// see the client's side end (so that unread input does not
			// reset the connection and lose the KICK).
			cn.transport.close()
			select {
			case <-cn.readerDone:
			case <-time.After(cn.c.cfg.closeGrace):
			}
			cn.finish()
			return
		}
		if len(batch) > 0 {
			continue // more may have been queued during the write
		}
		// Empty: stop, unless a push raced with the store (its wakeWriter
		// saw writing set); then carry on if no new writer took over.
		cn.writing.Store(false)
		if cn.out.Len() == 0 && !isClosed(cn.out.Done()) {
			return
		}
		if !cn.writing.CompareAndSwap(false, true) {
			return
		}
	}
}

func isClosed(c <-chan struct{}) bool {
	select {
	case <-c:
		return true
	default:
		return false
	}
}

var errProtocol = errors.New("protocol violation")

func (cn *conn) readLoop() {
	defer close(cn.readerDone)
	var err error
	defer func() {
		// The client left (or broke the protocol): close the session, which
		// closes the connection (a resumable one is suspended); make sure
		// it is finished.
		cn.drop(isLeave(err))
		cn.finish()
	}()
	for {
		err = cn.transport.readPackages(cn.onPackage)
		if err != nil {
			if !isClosedErr(err) && cn.state.Load() != stateClosed {
				cn.c.cfg.Logger.Debug("pomelo: closing client connection", "remote", cn.RemoteAddr(), "session", cn.session().ID(), "error", err)
			}
			return
		}
	}
}

// errLeft stops the reader of a client that sent a KICK: it leaves.
var errLeft = errors.New("client left (KICK)")

// errDetached stops the reader of a connection that no longer carries its
// session; errSessionGone, of one whose session ended before its ack.
var (
	errDetached    = errors.New("connection detached from its session")
	errSessionGone = errors.New("session ended before the handshake ack")
)

func (cn *conn) onPackage(t wire.PackageType, body []byte) error {
	if cn.detached.Load() {
		return errDetached
	}
	cn.lastRecv.Store(time.Now().UnixNano())
	switch cn.state.Load() {
	case stateInited:
		if t != wire.TypeHandshake {
			return fmt.Errorf("%w: %s before handshake", errProtocol, t)
		}
		return cn.onHandshake(body)
	case stateWaitAck:
		switch t {
		case wire.TypeHandshakeAck:
			cn.setState(stateWorking)
			cn.timer.Reset(cn.c.cfg.HeartbeatTimeout)
			// The JS client starts heartbeating only after a server one;
			// a resumable session's link queues it with what follows.
			if l := cn.link.Load(); l == nil {
				cn.sendControl(wire.HeartbeatPackage, false)
			} else if !l.attach(cn) {
				return errSessionGone // the session ended before the ack
			}
			return nil
		case wire.TypeHeartbeat:
			return nil
		}
		return fmt.Errorf("%w: %s before handshake ack", errProtocol, t)
	case stateWorking:
		switch t {
		case wire.TypeHeartbeat:
			cn.sendControl(wire.HeartbeatPackage, false)
			return nil
		case wire.TypeData:
			return cn.onData(body)
		case wire.TypeHandshakeAck:
			return nil
		case wire.TypeKick:
			// A resumable client leaving over raw TCP, which has no close
			// code (docs/PROTOCOL.md section 10).
			return errLeft
		}
		return fmt.Errorf("%w: %s after handshake", errProtocol, t)
	}
	// Closing: drop what the client still sends (as Pomelo does) and keep
	// reading until the writer has flushed the KICK and closed.
	return nil
}

func (cn *conn) onHandshake(body []byte) error {
	fail := func(code int) error {
		resp := wire.HandshakeResponse{Code: code}
		pkg, _ := wire.AppendPackage(nil, wire.TypeHandshake, resp.Marshal())
		cn.sendControl(pkg, true)
		cn.setState(stateClosed)
		return nil
	}
	req, err := wire.ParseHandshake(body)
	if err != nil {
		return fail(wire.CodeBadHandshake)
	}
	ser, err := runtime.SerializerByName(req.Sys.Serializer)
	if err != nil {
		return fail(wire.CodeBadHandshake)
	}
	cn.ser.Store(&serializerBox{ser})
	user, err := cn.c.h.Handshake(cn.c.ctx, cn.session(), req)
	if err != nil {
		var he *HandshakeError
		if errors.As(err, &he) && he.Code == wire.CodeOldClient {
			return fail(wire.CodeOldClient)
		}
		return fail(wire.CodeBadHandshake)
	}
	resp := wire.HandshakeResponse{Code: wire.CodeOK, Sys: &wire.HandshakeResponseSys{
		Heartbeat: max(1, int(cn.c.cfg.Heartbeat/time.Second)),
	}, User: user}
	if r := req.Sys.Resume; r != nil && cn.c.resumeOn() {
		resp.Sys.Resume = cn.resumeHandshake(r, ser)
	}
	if d := cn.c.dict; d != nil && d.Len() > 0 {
		resp.Sys.UseDict = true
		resp.Sys.DictVersion = d.Version()
		if req.Sys.DictVersion != d.Version() {
			resp.Sys.Dict = d.Map()
		}
	}
	if ser != runtime.JSON {
		resp.Sys.Serializer = ser.Name()
	}
	pkg, err := wire.AppendPackage(nil, wire.TypeHandshake, resp.Marshal())
	if err != nil {
		return fail(wire.CodeBadHandshake)
	}
	cn.setState(stateWaitAck)
	cn.sendControl(pkg, false)
	return nil
}

// resumeHandshake answers sys.resume of the handshake: the session of the
// token resumes on cn, or cn's own session becomes resumable.
func (cn *conn) resumeHandshake(r *wire.ResumeRequest, ser runtime.Serializer) *wire.ResumeReply {
	if r.Token != "" {
		if l, tok := cn.c.grantResume(cn, r.Token, r.Received, ser); l != nil {
			fresh := cn.session()
			cn.sess.Store(l.sess)
			cn.link.Store(l)
			cn.c.sessions.Discard(fresh)
			return &wire.ResumeReply{Token: tok, Resumed: true}
		}
	}
	l, tok := cn.c.newLink(cn, ser)
	cn.link.Store(l)
	return &wire.ResumeReply{Token: tok}
}

func (cn *conn) onData(body []byte) error {
	m, err := wire.DecodeMessage(body)
	if err != nil {
		return err
	}
	if err := checkFlags(body); err != nil {
		return err
	}
	switch m.Type {
	case wire.Request:
		if m.ID == 0 { // docs/PROTOCOL.md: a request with id 0 is a notify
			m.Type = wire.Notify
		} else if l := cn.link.Load(); l != nil && !l.admit(m.ID) {
			return nil // sent again after a resume: its one answer comes
		}
	case wire.Notify:
	default:
		return fmt.Errorf("%w: client sent a %s message", errProtocol, m.Type)
	}
	if m.Compressed {
		route, ok := cn.c.dict.Route(m.RouteCode)
		if !ok {
			if m.Type == wire.Request && cn.accepting() {
				cn.c.h.Reject(cn.session(), &m, runtime.Errorf(runtime.ErrUnknownRoute, "unknown route code %d", m.RouteCode))
			}
			return nil
		}
		m.Route = route
	} else if err := wire.ValidateRoute(m.Route); err != nil {
		// A malformed route fails this message alone; the connection stays.
		if m.Type == wire.Request && cn.accepting() {
			cn.c.h.Reject(cn.session(), &m, runtime.Errorf(runtime.ErrBadRequest, "malformed route"))
		} else {
			cn.c.cfg.Logger.Debug("pomelo: dropped a notify with a malformed route", "session", cn.session().ID(), "error", err)
		}
		return nil
	}
	if m.Gzip {
		if !cn.gunzipBody(&m) {
			return nil
		}
	} else {
		// The body aliases the read buffer: the chain runs later.
		m.Body = append([]byte(nil), m.Body...)
	}
	cn.enqueue(&m)
	cn.waitRoom()
	return nil
}

// accepting reports whether messages are still accepted (no kick, close or
// shutdown began).
func (cn *conn) accepting() bool {
	cn.inMu.Lock()
	defer cn.inMu.Unlock()
	return !cn.stopping
}

// waitRoom is back-pressure: while MaxInFlight messages wait in the inbox,
// the reader reads nothing more, so TCP flow control slows the client down.
// It returns when a message has left the inbox, the connection stops
// accepting messages, or it is finished.
func (cn *conn) waitRoom() {
	for {
		cn.inMu.Lock()
		if cn.stopping || len(cn.inbox)-cn.inHead < cn.c.cfg.MaxInFlight {
			resumed := cn.paused
			cn.paused = false
			cn.inMu.Unlock()
			if resumed {
				cn.lastRecv.Store(time.Now().UnixNano())
			}
			return
		}
		cn.paused = true
		cn.inMu.Unlock()
		select {
		case <-cn.room:
		case <-cn.done:
			return
		}
	}
}

// enqueue hands m to the handling chain: messages of one session run one
// at a time in arrival order, on a goroutine that exists only while there
// is work. Once the connection stops accepting messages, m is dropped
// unread. The reader keeps the inbox within MaxInFlight (waitRoom).
func (cn *conn) enqueue(m *wire.Message) {
	cn.inMu.Lock()
	if cn.stopping {
		cn.inMu.Unlock()
		return
	}
	cn.inbox = append(cn.inbox, m)
	start := !cn.inActive
	cn.inActive = true
	cn.inMu.Unlock()
	if start {
		cn.c.workers.Go(cn.drainInbox)
	}
}

func (cn *conn) drainInbox() {
	if p := cn.after.Load(); p != nil {
		// The session's messages from its previous connection run first.
		p.waitIdle()
		cn.after.Store(nil)
	}
	for {
		cn.inMu.Lock()
		if cn.stopping {
			cn.answerClosed()
			return
		}
		if cn.inHead == len(cn.inbox) {
			// Keep the backing array: the next message reuses it.
			cn.inbox, cn.inHead = cn.inbox[:0], 0
			cn.wentIdle()
			cn.inMu.Unlock()
			cn.forgotten()
			return
		}
		m := cn.inbox[cn.inHead]
		cn.inbox[cn.inHead] = nil
		cn.inHead++
		if cn.inHead >= 16 && cn.inHead*2 >= len(cn.inbox) {
			// A client that always keeps a message queued never lets the
			// inbox empty: move the waiting ones to the front.
			n := copy(cn.inbox, cn.inbox[cn.inHead:])
			clear(cn.inbox[n:])
			cn.inbox, cn.inHead = cn.inbox[:n], 0
		}
		if cn.paused {
			cn.wakeReader()
		}
		cn.inMu.Unlock()
		cn.c.h.ServeMessage(cn.inCtx, cn.session(), m)
	}
}

// errClosedBeforeRun answers a request accepted before a kick or a shutdown
// that had not started yet.
var errClosedBeforeRun = runtime.Errorf(runtime.ErrClosed, "connection closed before the request ran")

// answerClosed, called by drainInbox with cn.inMu held once the connection
// stops accepting messages, answers every waiting request CLOSED, in order,
// then, if Kick or Close was called, queues the final KICK or close behind
// those answers. It unlocks cn.inMu.
func (cn *conn) answerClosed() {
	waiting := append([]*wire.Message(nil), cn.inbox[cn.inHead:]...)
	clear(cn.inbox)
	cn.inbox, cn.inHead = cn.inbox[:0], 0
	cn.inMu.Unlock()
	for _, m := range waiting {
		if m.Type == wire.Request {
			cn.c.h.Reject(cn.session(), m, errClosedBeforeRun)
		}
	}
	cn.inMu.Lock()
	cn.wentIdle()
	ended, kick, reason := cn.ended, cn.kick, cn.kickReason
	cn.inMu.Unlock()
	cn.forgotten()
	if ended {
		cn.closeAfterAnswers(kick, reason)
	}
}
