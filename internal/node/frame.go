package node

import (
	"encoding/binary"
	"errors"
	"maps"
	"reflect"
	"sync/atomic"
	"unicode/utf8"

	"github.com/pomelo-go/pomelo/runtime"
	"github.com/pomelo-go/pomelo/runtime/session"
)

// The Forward stream's messages carry their batch as one bytes field
// (ForwardBatch.frames, ForwardResponseBatch.frames): a run of records in
// a compact length-prefixed encoding, so a batch decodes with no protobuf
// message per forwarded message, and a forwarded message's body is a slice
// of the batch's bytes.
//
// Integers are unsigned varints; a string or bytes value is its length (a
// varint) and its bytes. A request batch is a run of records, each a kind
// byte and its fields:
//
//	frontend (3): frontend id   the frontend of the records that follow
//	message  (1): seq, flags, sid, [uid, n, n x (key, value)] if
//	              flagSession, route, [deadline] if flagDeadline,
//	              [n, n x (key, value)] if flagTrace, body
//	drop     (2): sid           forget the session's snapshot
//
// A message without flagSession carries no snapshot: its session's is the
// one the stream sent last for (frontend, sid). The frontend sends a
// snapshot when it differs from the last one it sent on the stream, keeps
// at most maxCachedSessions of them per stream (sending drop for one it
// forgets: the oldest it finds, or a session that closed), and the backend
// keeps what it was sent, for that stream only. A response batch is a run
// of responses: seq, flags, then code (zigzag varint), name and message
// if flagError, else body.

// Record kinds of a request batch.
const (
	recMessage  = 1
	recDrop     = 2
	recFrontend = 3
)

// Flags of a message record.
const (
	flagNotify   = 1 << 0
	flagProtobuf = 1 << 1
	flagSession  = 1 << 2
	flagDeadline = 1 << 3
	flagTrace    = 1 << 4
)

// flagError marks a response record that carries an error.
const flagError = 1

// maxCachedSessions bounds the session snapshots one stream keeps.
const maxCachedSessions = 1 << 14

// maxInternedRoutes bounds the route strings a backend's stream reuses
// instead of allocating one per message.
const maxInternedRoutes = 1024

// errMalformedFrame is what decoding a batch that does not follow the
// encoding returns.
var errMalformedFrame = errors.New("malformed forward frame")

func appendString(b []byte, s string) []byte {
	b = binary.AppendUvarint(b, uint64(len(s)))
	return append(b, s...)
}

func appendBytes(b, v []byte) []byte {
	b = binary.AppendUvarint(b, uint64(len(v)))
	return append(b, v...)
}

func appendMap(b []byte, m map[string]string) []byte {
	b = binary.AppendUvarint(b, uint64(len(m)))
	for k, v := range m {
		b = appendString(appendString(b, k), v)
	}
	return b
}

// appendUTF8Map is appendMap with invalid UTF-8 replaced, for session
// settings, which can come from client input: the backend hands them on
// in protobuf strings.
func appendUTF8Map(b []byte, m map[string]string) []byte {
	b = binary.AppendUvarint(b, uint64(len(m)))
	for k, v := range m {
		b = appendString(appendString(b, validUTF8(k)), validUTF8(v))
	}
	return b
}

// frameReader reads the fields of a batch; the first malformed field sets
// err, and every read after it returns zero values.
type frameReader struct {
	b   []byte
	err error
}

func (r *frameReader) fail() {
	r.err, r.b = errMalformedFrame, nil
}

func (r *frameReader) uvarint() uint64 {
	v, n := binary.Uvarint(r.b)
	if n <= 0 {
		r.fail()
		return 0
	}
	r.b = r.b[n:]
	return v
}

func (r *frameReader) byte() byte {
	if len(r.b) == 0 {
		r.fail()
		return 0
	}
	c := r.b[0]
	r.b = r.b[1:]
	return c
}

// bytes returns the next bytes value, a slice of the batch whose capacity
// ends with it (appending to it cannot overwrite what follows).
func (r *frameReader) bytes() []byte {
	n := r.uvarint()
	if n > uint64(len(r.b)) {
		r.fail()
		return nil
	}
	v := r.b[:n:n]
	r.b = r.b[n:]
	return v
}

func (r *frameReader) string() string { return string(r.bytes()) }

// count reads a count of entries of at least min bytes each, failing one
// that the rest of the batch could not hold (so a forged count allocates
// nothing).
func (r *frameReader) count(min int) int {
	n := r.uvarint()
	if n > uint64(len(r.b)/min) {
		r.fail()
		return 0
	}
	return int(n)
}

func (r *frameReader) stringMap() map[string]string {
	n := r.count(2)
	if n == 0 {
		return nil
	}
	m := make(map[string]string, n)
	for range n {
		k := r.string()
		m[k] = r.string()
	}
	return m
}

// fwdMsg is a forwarded message as a backend decoded it.
type fwdMsg struct {
	seq      uint64
	notify   bool
	ser      runtime.Serializer
	session  session.Snapshot
	route    string
	deadline int64 // unix nanos; 0 for none
	trace    map[string]string
	body     []byte
}

// fwdEncoder is a frontend stream's side of the encoding: the snapshot it
// last sent per session, and the frontend of the last record.
type fwdEncoder struct {
	frontend string
	sent     map[sessionKey]sentSession
}

// sentSession is the snapshot a stream last sent for a session: its
// settings map (a session's is replaced, never changed, so the same map
// is the same settings) and uid.
type sentSession struct {
	uid      string
	settings map[string]string
}

// sameSettings reports whether a and b hold the same settings; the same
// map answers at once.
func sameSettings(a, b map[string]string) bool {
	if len(a) != len(b) {
		return false
	}
	if len(a) == 0 || reflect.ValueOf(a).UnsafePointer() == reflect.ValueOf(b).UnsafePointer() {
		return true
	}
	return maps.Equal(a, b)
}

// appendFrontend starts records of frontend id when the last one was of
// another.
func (e *fwdEncoder) appendFrontend(b []byte, id string) []byte {
	if id == e.frontend {
		return b
	}
	e.frontend = id
	return appendString(append(b, recFrontend), id)
}

// appendMessage appends the message record of a forwarded request, with
// its session's snapshot when the stream did not send this one last (and
// a drop record first when that makes it forget another session).
func (e *fwdEncoder) appendMessage(b []byte, seq uint64, snap session.Snapshot, r *fwdOut) []byte {
	key := sessionKey{snap.FrontendID, snap.ID}
	prev, known := e.sent[key]
	full := !known || prev.uid != snap.UID || !sameSettings(prev.settings, snap.Settings)
	if full {
		if !known && len(e.sent) >= maxCachedSessions {
			for k := range e.sent { // forget one: the map's order is as good as any
				b = e.appendDrop(b, k)
				break
			}
		}
		if e.sent == nil {
			e.sent = map[sessionKey]sentSession{}
		}
		e.sent[key] = sentSession{uid: snap.UID, settings: snap.Settings}
	}
	b = e.appendFrontend(b, snap.FrontendID)
	flags := byte(0)
	if r.notify {
		flags |= flagNotify
	}
	if r.protobuf {
		flags |= flagProtobuf
	}
	if full {
		flags |= flagSession
	}
	if r.deadline > 0 {
		flags |= flagDeadline
	}
	if len(r.trace) > 0 {
		flags |= flagTrace
	}
	b = append(b, recMessage)
	b = binary.AppendUvarint(b, seq)
	b = append(b, flags)
	b = binary.AppendUvarint(b, snap.ID)
	if full {
		b = appendString(b, validUTF8(snap.UID))
		b = appendUTF8Map(b, snap.Settings)
	}
	b = appendString(b, r.route)
	if r.deadline > 0 {
		b = binary.AppendUvarint(b, uint64(r.deadline))
	}
	if len(r.trace) > 0 {
		b = appendMap(b, r.trace)
	}
	return appendBytes(b, r.body)
}

// appendDrop appends a drop record of key and forgets its snapshot.
func (e *fwdEncoder) appendDrop(b []byte, key sessionKey) []byte {
	delete(e.sent, key)
	b = e.appendFrontend(b, key.frontendID)
	b = append(b, recDrop)
	return binary.AppendUvarint(b, key.sid)
}

// forget appends a drop record when the stream sent the session's
// snapshot (it closed).
func (e *fwdEncoder) forget(b []byte, key sessionKey) []byte {
	if _, ok := e.sent[key]; !ok {
		return b
	}
	return e.appendDrop(b, key)
}

// fwdOut is what a frontend encodes of a forwarded request beside its
// session.
type fwdOut struct {
	route    string
	notify   bool
	protobuf bool
	deadline int64
	trace    map[string]string
	body     []byte
}

// fwdDecoder is a backend stream's side of the encoding: the snapshots
// the frontend sent, and the routes seen.
type fwdDecoder struct {
	frontend string
	sessions map[sessionKey]session.Snapshot
	routes   map[string]string
	count    *atomic.Int64 // the node's snapshots kept, if set
}

// add adds n to the node's count of snapshots kept.
func (d *fwdDecoder) add(n int) {
	if d.count != nil {
		d.count.Add(int64(n))
	}
}

// close forgets every snapshot: the stream ended.
func (d *fwdDecoder) close() {
	d.add(-len(d.sessions))
	d.sessions = nil
}

// decode decodes a request batch, calling each with every message in
// order; m is the decoder's to reuse once each returns (each copies what
// it keeps). A malformed batch, or a message of a session whose snapshot
// the stream never sent, returns errMalformedFrame after the messages
// before it.
func (d *fwdDecoder) decode(batch []byte, m *fwdMsg, each func(*fwdMsg)) error {
	r := frameReader{b: batch}
	for len(r.b) > 0 && r.err == nil {
		switch r.byte() {
		case recFrontend:
			d.frontend = r.string()
		case recDrop:
			sid := r.uvarint()
			key := sessionKey{d.frontend, sid}
			if _, ok := d.sessions[key]; ok && r.err == nil {
				delete(d.sessions, key)
				d.add(-1)
			}
		case recMessage:
			*m = fwdMsg{seq: r.uvarint()}
			flags := r.byte()
			key := sessionKey{d.frontend, r.uvarint()}
			m.notify = flags&flagNotify != 0
			m.ser = runtime.JSON
			if flags&flagProtobuf != 0 {
				m.ser = runtime.Protobuf
			}
			if flags&flagSession != 0 {
				snap := session.Snapshot{ID: key.sid, FrontendID: key.frontendID, UID: r.string(), Settings: r.stringMap()}
				if r.err != nil {
					break
				}
				if _, ok := d.sessions[key]; !ok {
					if len(d.sessions) >= maxCachedSessions {
						r.fail() // more than the frontend may have us keep
						break
					}
					d.add(1)
				}
				if d.sessions == nil {
					d.sessions = map[sessionKey]session.Snapshot{}
				}
				d.sessions[key] = snap
				m.session = snap
			} else {
				snap, ok := d.sessions[key]
				if !ok {
					r.fail()
					break
				}
				m.session = snap
			}
			m.route = d.route(r.bytes())
			if flags&flagDeadline != 0 {
				m.deadline = int64(r.uvarint())
			}
			if flags&flagTrace != 0 {
				m.trace = r.stringMap()
			}
			m.body = r.bytes()
			if r.err == nil {
				each(m)
			}
		default:
			r.fail()
		}
	}
	return r.err
}

// route returns b as a string, the same string for the same route.
func (d *fwdDecoder) route(b []byte) string {
	if s, ok := d.routes[string(b)]; ok {
		return s
	}
	s := string(b)
	if !utf8.ValidString(s) {
		return s // not kept: a client's garbage would fill the table
	}
	if d.routes == nil {
		d.routes = map[string]string{}
	}
	if len(d.routes) < maxInternedRoutes {
		d.routes[s] = s
	}
	return s
}

// appendResponse appends the response record of message seq: its body,
// or its error (with invalid UTF-8 replaced: the frontend hands the text
// on to the client).
func appendResponse(b []byte, seq uint64, body []byte, err *runtime.Error) []byte {
	b = binary.AppendUvarint(b, seq)
	if err != nil {
		b = append(b, flagError)
		b = binary.AppendUvarint(b, uint64(int64(err.Code)<<1^int64(err.Code)>>63))
		b = appendString(b, validUTF8(err.Name))
		return appendString(b, validUTF8(err.Message))
	}
	b = append(b, 0)
	return appendBytes(b, body)
}

// decodeResponses decodes a response batch, calling each with every
// response in order: its body (a slice of batch) or its error.
func decodeResponses(batch []byte, each func(seq uint64, body []byte, err *runtime.Error)) error {
	r := frameReader{b: batch}
	for len(r.b) > 0 && r.err == nil {
		seq := r.uvarint()
		flags := r.byte()
		if flags&flagError != 0 {
			u := r.uvarint()
			code := int64(u>>1) ^ -int64(u&1)
			e := &runtime.Error{Code: int32(code), Name: r.string(), Message: r.string()}
			if r.err == nil {
				each(seq, nil, e)
			}
			continue
		}
		body := r.bytes()
		if r.err == nil {
			each(seq, body, nil)
		}
	}
	return r.err
}
