package connector

import (
	"crypto/rand"
	"encoding/base64"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pomelo-go/pomelo/runtime"
	"github.com/pomelo-go/pomelo/runtime/session"
	"github.com/pomelo-go/pomelo/runtime/wire"
)

// Session resume (docs/PROTOCOL.md section 10). A client that asks for it
// in its handshake gets a resumable session, whose session.Conn is a link:
// the link outlives each network connection (*conn) of the session. It
// counts the DATA packages sent to the session, keeps the most recent ones
// in a bounded ring, holds the session's one-use token, and when its
// connection drops without a kick it suspends the session for
// Config.ResumeWindow, keeping what is sent meanwhile, until a new
// connection presents the token and the count of packages it has received:
// then the link swaps the new connection in and replays the rest.
//
// Lock order: link.reportMu, then link.mu, then Connector.mu or conn.inMu.

// Defaults of the resume fields of Config.
const (
	// DefaultResumeWindow is the default Config.ResumeWindow.
	DefaultResumeWindow = 30 * time.Second
	// DefaultResumeBufferBytes is the default Config.ResumeBufferBytes.
	DefaultResumeBufferBytes = 256 << 10
	// DefaultResumeBufferPackages is the default Config.ResumeBufferPackages.
	DefaultResumeBufferPackages = 256
	// NoResume as Config.ResumeWindow turns resume off: a handshake asking
	// for it is answered without a resume object, as a server without the
	// extension answers, and the session is an ordinary one.
	NoResume time.Duration = -1
)

// errBufferFull ends the window of a suspended session whose buffer is full.
var errBufferFull = runtime.Errorf(runtime.ErrClosed, "resume buffer of a suspended session is full")

// Link states.
const (
	linkNew       = iota // handshake replied, the ack not yet in: Sends are refused
	linkConnected        // cur carries the session
	linkSuspended        // no connection (or a resume waiting for its ack)
	linkEnded            // the session is closed
)

// link is the session.Conn of a resumable session.
type link struct {
	c    *Connector
	sess *session.Session
	ser  runtime.Serializer
	addr atomic.Pointer[net.Addr]

	// reportMu serialises the reports of the state to the session
	// service (report); taken before mu.
	reportMu sync.Mutex

	mu    sync.Mutex
	state int
	cur   *conn // the connection carrying the session (linkNew, linkConnected)
	// pending is the connection a resume was granted to, until its ack.
	pending *conn
	// prev is the last connection that dropped: its inbox may still be
	// running messages of the session, which the next one waits for.
	prev  *conn
	token string
	sent  uint64 // DATA packages sent to the session
	ring  ring
	// suspendSeq is sent when the session was suspended: the packages
	// after it were never written to a connection and cannot be evicted.
	suspendSeq uint64
	timer      *time.Timer
	gen        uint64 // invalidates the window timers of earlier suspensions
	// running holds the ids of the requests accepted and not answered;
	// maxID is the highest accepted, resendMax that highest at the last
	// resume (a request up to it may be one the client sent again), and
	// answered the ids up to it answered in the replay or since: a copy
	// the client sends again is not run, even once its answer has left
	// the ring.
	running   map[uint64]struct{}
	answered  map[uint64]struct{}
	maxID     uint64
	resendMax uint64
}

// ringEntry is one DATA package sent to the session.
type ringEntry struct {
	pkg []byte
	id  uint64 // the request id of a RESPONSE, 0 for a push
}

// ring holds the most recent packages sent, oldest first: buf[head:].
type ring struct {
	buf   []ringEntry
	head  int
	bytes int
}

func (r *ring) len() int { return len(r.buf) - r.head }

func (r *ring) push(e ringEntry) {
	if r.head > 0 && len(r.buf) == cap(r.buf) {
		n := copy(r.buf, r.buf[r.head:])
		clear(r.buf[n:])
		r.buf, r.head = r.buf[:n], 0
	}
	r.buf = append(r.buf, e)
	r.bytes += len(e.pkg)
}

func (r *ring) pop() {
	r.bytes -= len(r.buf[r.head].pkg)
	r.buf[r.head] = ringEntry{}
	r.head++
	if r.head == len(r.buf) {
		r.buf, r.head = r.buf[:0], 0
	}
}

func (r *ring) reset() { *r = ring{} }

// at returns the entry of the i-th package kept, oldest first.
func (r *ring) at(i int) ringEntry { return r.buf[r.head+i] }

// newToken returns 128 random bits, base64url without padding.
func newToken() string {
	var b [16]byte
	_, _ = rand.Read(b[:]) // never fails (crypto/rand)
	return base64.RawURLEncoding.EncodeToString(b[:])
}

// resumeOn reports whether resume is configured on.
func (c *Connector) resumeOn() bool { return c.cfg.ResumeWindow > 0 }

// newLink makes the session of cn resumable, with a new token.
func (c *Connector) newLink(cn *conn, ser runtime.Serializer) (*link, string) {
	tok := newToken()
	l := &link{c: c, sess: cn.session(), ser: ser, state: linkNew, cur: cn, token: tok}
	a := cn.RemoteAddr()
	l.addr.Store(&a)
	c.mu.Lock()
	c.links[tok] = l
	c.mu.Unlock()
	c.sessions.SetConn(l.sess, l)
	return l, tok
}

// takeLink returns the link of token and removes the token, or nil.
func (c *Connector) takeLink(token string) *link {
	c.mu.Lock()
	defer c.mu.Unlock()
	l := c.links[token]
	if l != nil {
		delete(c.links, token)
	}
	return l
}

// grantResume gives the session of token to cn, which has received its
// first received packages: it reports false, closing that session if it
// exists, when the token is unknown or the session cannot continue from
// received with ser. On success the link has a new token and waits for
// cn's ack (attach); its new token is returned too.
func (c *Connector) grantResume(cn *conn, token string, received uint64, ser runtime.Serializer) (*link, string) {
	l := c.takeLink(token)
	if l == nil {
		return nil, ""
	}
	l.mu.Lock()
	if l.state == linkEnded || l.sess.Closed() {
		// Ended, or its close has begun (the closed hooks run first).
		l.mu.Unlock()
		return nil, ""
	}
	oldest := l.sent - uint64(l.ring.len())
	if received > l.sent || received < oldest || ser != l.ser || l.state == linkNew {
		l.mu.Unlock()
		c.sessions.CloseSession(l.sess, "", false)
		return nil, ""
	}
	c.mu.Lock()
	shuttingDown := c.closed
	if !shuttingDown {
		l.token = newToken()
		c.links[l.token] = l
	}
	c.mu.Unlock()
	if shuttingDown {
		l.mu.Unlock()
		// Shutdown may have looked for the token after it was taken.
		c.sessions.CloseSession(l.sess, "", false)
		return nil, ""
	}
	tok := l.token
	var dropped *conn
	if l.state == linkConnected {
		// The old connection has not been seen to drop yet: it has.
		dropped = l.cur
		l.suspendLocked()
	}
	if old := l.pending; old != nil {
		old.detached.Store(true)
		defer old.transport.closeNow()
	}
	// What the client has needs no keeping; what it has not must not be
	// evicted (an overflow ends the window instead).
	for range received - oldest {
		l.ring.pop()
	}
	l.suspendSeq = received
	l.pending = cn
	l.mu.Unlock()
	if dropped != nil {
		dropped.detached.Store(true)
		dropped.transport.closeNow()
		if !dropped.busy() {
			l.forget(dropped)
		}
		l.report()
	}
	return l, tok
}

// suspendLocked suspends the session: no connection, the window starts.
// l.mu is held; l.state is linkConnected.
func (l *link) suspendLocked() {
	l.prev, l.cur = l.cur, nil
	l.state = linkSuspended
	l.suspendSeq = l.sent
	l.gen++
	gen := l.gen
	l.timer = time.AfterFunc(l.c.cfg.ResumeWindow, func() { l.expire(gen) })
}

// expire ends the window of suspension gen.
func (l *link) expire(gen uint64) {
	l.mu.Lock()
	over := l.gen == gen && l.state == linkSuspended
	if over {
		// No resume is granted from now on; CloseSession finishes.
		l.state = linkEnded
	}
	l.mu.Unlock()
	if over {
		l.c.sessions.CloseSession(l.sess, "", false)
	}
}

// suspend handles the drop of cn without a kick. It reports false when
// the session must close as a stock one does (the link never got its
// first ack, has ended, or the connector shuts down); otherwise cn is
// detached from the session, which is suspended unless cn no longer
// carried it.
func (l *link) suspend(cn *conn) bool {
	// Suspended sessions are capped as connections are: dropped
	// connections cannot pile up sessions beyond what the frontend may
	// hold (a client that connects and drops in a loop).
	full := l.c.cfg.MaxConnections > 0 && l.c.sessions.SuspendedCount() >= l.c.cfg.MaxConnections
	l.mu.Lock()
	switch {
	case l.state == linkEnded || l.state == linkNew:
		l.mu.Unlock()
		return false
	case cn == l.pending:
		l.pending = nil
		l.mu.Unlock()
		cn.detached.Store(true)
		return true
	case cn != l.cur:
		l.mu.Unlock()
		return true
	}
	l.c.mu.Lock()
	shuttingDown := l.c.closed
	l.c.mu.Unlock()
	if shuttingDown || full {
		l.mu.Unlock()
		return false
	}
	cn.detached.Store(true)
	l.suspendLocked()
	l.mu.Unlock()
	if !cn.busy() {
		l.forget(cn) // nothing of it runs: a suspended session keeps none of it
	}
	l.report()
	return true
}

// carries reports whether cn is the session's connection, or the one a
// resume was granted to: a leave read on it is the client leaving.
func (l *link) carries(cn *conn) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.state != linkEnded && (cn == l.cur || cn == l.pending)
}

// forget drops the link's reference to cn, a detached connection whose
// inbox ran dry, keeping the one cn was to wait for if it still runs.
func (l *link) forget(cn *conn) {
	l.mu.Lock()
	if l.prev == cn {
		l.prev = cn.runsAfter()
	}
	l.mu.Unlock()
}

// attach is cn's HANDSHAKE_ACK: it queues the server's HEARTBEAT, then
// the session of a new link starts, or a granted resume replays every
// package after the client's count and makes cn the session's
// connection; both under l.mu, so that nothing sent to the session comes
// between (Send holds l.mu too), and a client that has the HEARTBEAT is
// sent everything after it. It reports false, queueing nothing, when the
// session ended meanwhile.
func (l *link) attach(cn *conn) bool {
	l.mu.Lock()
	switch {
	case l.state == linkNew && cn == l.cur:
		cn.sendControl(wire.HeartbeatPackage, false)
		l.state = linkConnected
		l.mu.Unlock()
		return true
	case l.state != linkSuspended || cn != l.pending:
		l.mu.Unlock()
		return false
	}
	cn.sendControl(wire.HeartbeatPackage, false)
	// Everything kept is what the client has not received (grantResume
	// dropped the rest): replayed, in order, before anything sent from now
	// on.
	for i := range l.ring.len() {
		cn.out.PushUnbounded(l.ring.at(i).pkg)
	}
	cn.wakeWriterNow()
	l.pending, l.cur, l.state = nil, cn, linkConnected
	l.resendMax = l.maxID
	l.answered = nil
	for i := range l.ring.len() {
		if id := l.ring.at(i).id; id != 0 {
			l.answered = setAdd(l.answered, id)
		}
	}
	l.gen++
	if l.timer != nil {
		l.timer.Stop()
		l.timer = nil
	}
	if p := l.prev; p != nil {
		cn.after.Store(p.runsAfter())
	}
	l.prev = nil
	a := cn.RemoteAddr()
	l.addr.Store(&a)
	l.mu.Unlock()
	l.report()
	return true
}

// report tells the session service whether the session is suspended
// now. Every change of l.state between connected and suspended is
// followed by a report, and reports run one at a time, each reading the
// state as it is then: the last one leaves the service (its count, the
// backends' events) with the link's final state, however a drop right
// after a resume interleaves with the resume's own report.
func (l *link) report() {
	l.reportMu.Lock()
	defer l.reportMu.Unlock()
	l.mu.Lock()
	state := l.state
	l.mu.Unlock()
	switch state {
	case linkSuspended:
		l.c.sessions.Suspend(l.sess)
	case linkConnected:
		l.c.sessions.Resume(l.sess)
	}
}

// admit reports whether request id, read from the client, runs: not when
// it is running already or its response is kept for the client (a
// request the client sent again after a resume).
func (l *link) admit(id uint64) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	if _, ok := l.running[id]; ok {
		return false
	}
	if _, ok := l.answered[id]; ok && id <= l.resendMax {
		delete(l.answered, id) // its one copy: a later id equal to it runs
		return false
	}
	l.running = setAdd(l.running, id)
	l.maxID = max(l.maxID, id)
	return true
}

// setAdd adds id to set, making it if needed.
func setAdd(set map[uint64]struct{}, id uint64) map[uint64]struct{} {
	if set == nil {
		set = make(map[uint64]struct{})
	}
	set[id] = struct{}{}
	return set
}

// Send implements session.Conn: every DATA package is counted and kept,
// and written to the connection when there is one. A suspended session
// whose packages sent since the drop exceed the buffer is closed.
func (l *link) Send(pkgs []byte) error {
	l.mu.Lock()
	switch l.state {
	case linkNew:
		l.mu.Unlock()
		return errNotReady
	case linkEnded:
		l.mu.Unlock()
		return runtime.Errorf(runtime.ErrClosed, "session closed")
	}
	full := false
	for p := pkgs; len(p) >= wire.HeaderLen; {
		n := wire.HeaderLen + (int(p[1])<<16 | int(p[2])<<8 | int(p[3]))
		n = min(n, len(p))
		if wire.PackageType(p[0]) == wire.TypeData {
			l.sent++
			e := ringEntry{pkg: p[:n:n]}
			if id, ok := responseID(p[wire.HeaderLen:n]); ok {
				e.id = id
				delete(l.running, id)
				if id <= l.resendMax && l.state == linkConnected {
					// Running at the resume: the client may send it again.
					l.answered = setAdd(l.answered, id)
				}
			}
			full = l.keep(e) || full
		}
		p = p[n:]
	}
	var err error
	if full {
		l.state = linkEnded // nothing more is kept; CloseSession finishes
		err = errBufferFull
	} else if l.cur != nil && l.state == linkConnected {
		err = l.cur.push(pkgs)
	}
	l.mu.Unlock()
	if full {
		go l.c.sessions.CloseSession(l.sess, "", false)
	}
	return err
}

// keep adds e to the ring, evicting the oldest packages beyond its
// bounds. It reports true when a package sent while suspended would have
// to go: the buffer overflowed.
func (l *link) keep(e ringEntry) bool {
	l.ring.push(e)
	cfg := &l.c.cfg
	for l.ring.len() > 0 && (l.ring.len() > cfg.ResumeBufferPackages || l.ring.bytes > cfg.ResumeBufferBytes) {
		if l.state == linkSuspended && l.sent-uint64(l.ring.len())+1 > l.suspendSeq {
			return true
		}
		l.ring.pop()
	}
	return false
}

// responseID returns the id of a DATA body that is a RESPONSE.
func responseID(body []byte) (uint64, bool) {
	if len(body) < 2 || wire.MessageType(body[0]>>1&0x07) != wire.Response {
		return 0, false
	}
	var id uint64
	for i, b := range body[1:] {
		if i == 10 {
			return 0, false
		}
		id |= uint64(b&0x7f) << (7 * i)
		if b < 0x80 {
			return id, true
		}
	}
	return 0, false
}

// end closes the link once: the token is refused from now on, what was
// kept is dropped; it returns the connection to close with the session.
func (l *link) end() *conn {
	l.mu.Lock()
	if l.state == linkEnded && l.token == "" {
		l.mu.Unlock()
		return nil
	}
	l.state = linkEnded
	cur, pending, prev, tok := l.cur, l.pending, l.prev, l.token
	l.cur, l.pending, l.prev, l.token = nil, nil, nil, ""
	l.ring.reset()
	l.running, l.answered = nil, nil
	if l.timer != nil {
		l.timer.Stop()
		l.timer = nil
	}
	l.mu.Unlock()
	l.c.mu.Lock()
	if l.c.links[tok] == l {
		delete(l.c.links, tok)
	}
	l.c.mu.Unlock()
	// The earlier connections still running messages of the session: the
	// one that dropped last, and those the current one waits for. Their
	// remaining messages are answered CLOSED, to nobody.
	if prev != nil && prev != cur {
		prev.haltChain()
	}
	if cur != nil {
		if w := cur.after.Load(); w != nil {
			w.haltChain()
		}
	}
	if pending != nil {
		pending.Close()
	}
	return cur
}

// haltChain stops cn, a detached connection, and the ones its inbox waits
// for: no more messages, the running ones cancelled.
func (cn *conn) haltChain() {
	for w := cn; w != nil; w = w.after.Load() {
		w.halt()
		w.inCancel()
	}
}

// Kick implements session.Conn.
func (l *link) Kick(reason string) {
	if cn := l.end(); cn != nil {
		cn.Kick(reason)
	}
}

// Close implements session.Conn.
func (l *link) Close() {
	if cn := l.end(); cn != nil {
		cn.Close()
	}
}

// RemoteAddr implements session.Conn: the address of the session's last
// connection.
func (l *link) RemoteAddr() net.Addr { return *l.addr.Load() }

// Serializer implements session.Conn.
func (l *link) Serializer() runtime.Serializer { return l.ser }
