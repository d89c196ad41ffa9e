package node

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/wrapperspb"

	sysv1 "github.com/pomelo-go/pomelo/gen/pomelo/sys/v1"
	"github.com/pomelo-go/pomelo/runtime"
	"github.com/pomelo-go/pomelo/runtime/cluster"
	"github.com/pomelo-go/pomelo/runtime/session"
)

// A stream sends a session's snapshot with its first message and when it
// changed (a new uid, other settings, the same settings in another map
// count as the same), and refers to it otherwise; the backend sees every
// message with the snapshot it was sent with.
func TestSnapshotIsSentOnlyWhenItChanged(t *testing.T) {
	var enc fwdEncoder
	var dec fwdDecoder
	out := &fwdOut{route: "chat.h.who", body: []byte("{}")}
	snaps := []session.Snapshot{
		{ID: 1, FrontendID: "c-1"},
		{ID: 1, FrontendID: "c-1"},
		{ID: 1, FrontendID: "c-1", UID: "ann"},
		{ID: 1, FrontendID: "c-1", UID: "ann", Settings: map[string]string{"k": "1"}},
		{ID: 1, FrontendID: "c-1", UID: "ann", Settings: map[string]string{"k": "1"}},
		{ID: 2, FrontendID: "c-1", UID: "bob"},
		{ID: 1, FrontendID: "c-2", UID: "cat"},
		{ID: 1, FrontendID: "c-1", UID: "ann", Settings: map[string]string{"k": "2"}},
		{ID: 1, FrontendID: "c-1", UID: "ann", Settings: map[string]string{"k": "2"}},
	}
	full := []bool{true, false, true, true, false, true, true, true, false}
	for i, snap := range snaps {
		b := enc.appendMessage(nil, uint64(i+1), snap, out)
		got, err := decodeAll(&dec, b)
		if err != nil || len(got) != 1 {
			t.Fatalf("message %d: %d decoded, err %v", i+1, len(got), err)
		}
		if m := got[0].session; m.ID != snap.ID || m.FrontendID != snap.FrontendID || m.UID != snap.UID || fmt.Sprint(m.Settings) != fmt.Sprint(snap.Settings) {
			t.Fatalf("message %d: session %+v, want %+v", i+1, m, snap)
		}
		r := frameReader{b: b}
		for r.byte() == recFrontend {
			r.string()
		}
		r.uvarint() // seq
		if sent := r.byte()&flagSession != 0; sent != full[i] {
			t.Fatalf("message %d: snapshot sent = %v, want %v", i+1, sent, full[i])
		}
	}
}

// A stream keeps at most maxCachedSessions snapshots on both ends: the
// frontend drops one for each new session beyond it, and the backend,
// told so, keeps no more; every message still has its own session.
func TestSnapshotCacheIsBounded(t *testing.T) {
	var enc fwdEncoder
	var dec fwdDecoder
	out := &fwdOut{route: "chat.h.who"}
	var b []byte
	for i := range maxCachedSessions + 100 {
		b = enc.appendMessage(b, uint64(i+1), session.Snapshot{ID: uint64(i + 1), FrontendID: "c-1", UID: fmt.Sprint(i + 1)}, out)
	}
	var m fwdMsg
	n := 0
	err := dec.decode(b, &m, func(m *fwdMsg) {
		n++
		if m.session.ID != m.seq || m.session.UID != fmt.Sprint(m.seq) {
			t.Fatalf("message %d has session %+v", m.seq, m.session)
		}
	})
	if err != nil || n != maxCachedSessions+100 {
		t.Fatalf("decoded %d messages, err %v", n, err)
	}
	if len(enc.sent) > maxCachedSessions || len(dec.sessions) > maxCachedSessions {
		t.Fatalf("frontend keeps %d snapshots, backend %d: more than %d", len(enc.sent), len(dec.sessions), maxCachedSessions)
	}
	// A frontend that does not bound its snapshots is refused, not obeyed.
	var greedy fwdDecoder
	var over []byte
	for i := range maxCachedSessions + 1 {
		over = (&fwdEncoder{}).appendMessage(over, uint64(i+1), session.Snapshot{ID: uint64(i + 1), FrontendID: "c-1"}, out)
	}
	if err := greedy.decode(over, &m, func(*fwdMsg) {}); !errors.Is(err, errMalformedFrame) {
		t.Fatalf("a batch keeping %d snapshots: err %v, want %v", maxCachedSessions+1, err, errMalformedFrame)
	}
}

// Malformed batches (truncated anywhere, a message referring to a
// snapshot never sent, an unknown record) return an error after the good
// messages before them, and never panic.
func TestMalformedBatchesFailCleanly(t *testing.T) {
	var enc fwdEncoder
	good := enc.appendMessage(nil, 1, session.Snapshot{ID: 1, FrontendID: "c-1", Settings: map[string]string{"k": "v"}}, &fwdOut{route: "a.b.c", body: []byte("body"), deadline: 5, trace: map[string]string{"traceparent": "x"}})
	frontendRecord := len(appendString([]byte{recFrontend}, "c-1"))
	for i := 1; i < len(good); i++ {
		if i == frontendRecord {
			continue // a whole record: a batch of no message
		}
		var dec fwdDecoder
		if got, err := decodeAll(&dec, good[:i]); err == nil || len(got) != 0 {
			t.Fatalf("batch cut at %d of %d: %d messages, err %v", i, len(good), len(got), err)
		}
	}
	unknown := append(append([]byte(nil), good...), 0x7f)
	noSnap := append(append([]byte(nil), good...), recMessage, 2, 0, 9, 1, 'r', 0)
	for name, b := range map[string][]byte{"unknown record": unknown, "snapshot never sent": noSnap} {
		var dec fwdDecoder
		got, err := decodeAll(&dec, b)
		if !errors.Is(err, errMalformedFrame) || len(got) != 1 {
			t.Fatalf("%s: %d messages, err %v; want the good one and %v", name, len(got), err, errMalformedFrame)
		}
	}
	first := appendResponse(nil, 1, []byte("ok"), nil)
	resp := appendResponse(first, 2, nil, runtime.Errorf(runtime.ErrTimeout, "late"))
	for i := 1; i < len(resp); i++ {
		n := 0
		err := decodeResponses(resp[:i], func(uint64, []byte, *runtime.Error) { n++ })
		if i != len(first) && !errors.Is(err, errMalformedFrame) {
			t.Fatalf("responses cut at %d of %d: %d decoded, err %v", i, len(resp), n, err)
		}
	}
	var got []string
	if err := decodeResponses(resp, func(seq uint64, body []byte, e *runtime.Error) {
		if e != nil {
			got = append(got, fmt.Sprintf("%d:%d/%s/%s", seq, e.Code, e.Name, e.Message))
		} else {
			got = append(got, fmt.Sprintf("%d:%s", seq, body))
		}
	}); err != nil || fmt.Sprint(got) != fmt.Sprintf("[1:ok 2:%d/TIMEOUT/late]", runtime.ErrTimeout.Code) {
		t.Fatalf("responses %v, err %v", got, err)
	}
}

// whoHandler answers the session's uid and setting k as the backend sees
// them.
func whoHandler(t *testing.T, back *Node) {
	t.Helper()
	err := back.srv.RegisterHandler(runtime.HandlerDesc{Route: "chat.h.who", ServerType: "chat", Handle: func(_ context.Context, s runtime.Session, _ runtime.Serializer, _ []byte) (proto.Message, error) {
		k, _ := s.Get("k")
		return wrapperspb.String(s.UID() + "/" + k), nil
	}})
	if err != nil {
		t.Fatal(err)
	}
}

// Over a real stream: a backend sees each forwarded message with its
// session as the frontend had it, across uid and settings changes; a
// session that closes is forgotten on both ends (the backend hears of it
// with the stream's next write).
func TestForwardedSessionFollowsChangesAndIsForgottenOnClose(t *testing.T) {
	st := cluster.NewStatic()
	front := reviewNode(t, st, "connector-1", "connector", true)
	back := reviewNode(t, st, "chat-1", "chat", false)
	whoHandler(t, back)
	svc := front.srv.Sessions()
	s := svc.Create(reviewConn{})
	ask := func(snap session.Snapshot) string {
		t.Helper()
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		r := &runtime.Request{Route: "chat.h.who", ID: 1, Serializer: runtime.Protobuf, Body: nil}
		body, err := front.fwd.Forward(ctx, "chat", snap, r)
		if err != nil {
			t.Fatal(err)
		}
		var v wrapperspb.StringValue
		if err := proto.Unmarshal(body, &v); err != nil {
			t.Fatal(err)
		}
		return v.Value
	}
	expect := func(snap session.Snapshot, want string) {
		t.Helper()
		if got := ask(snap); got != want {
			t.Fatalf("backend saw %q, want %q", got, want)
		}
	}
	expect(s.Snapshot(), "/")
	expect(s.Snapshot(), "/")
	if err := svc.Bind(s.ID(), "ann"); err != nil {
		t.Fatal(err)
	}
	expect(s.Snapshot(), "ann/")
	if err := s.SetSettings(map[string]string{"k": "1"}, false); err != nil {
		t.Fatal(err)
	}
	expect(s.Snapshot(), "ann/1")
	// A frontend filter's Set changes the request's view only.
	l := s.Local()
	l.Set("k", "2")
	expect(l.Snapshot(), "ann/2")
	expect(s.Snapshot(), "ann/1")

	other := svc.Create(reviewConn{})
	expect(other.Snapshot(), "/")
	if n := back.fwdSnapshots.Load(); n != 2 {
		t.Fatalf("backend keeps %d snapshots, want 2", n)
	}
	svc.CloseSession(s, "test", false)
	front.fwd.mu.Lock()
	fs := front.fwd.streams["chat-1"]
	front.fwd.mu.Unlock()
	fs.mu.Lock()
	_, kept := fs.enc.sent[sessionKey{"connector-1", s.ID()}]
	fs.mu.Unlock()
	if kept {
		t.Fatal("the frontend still remembers the snapshot of a closed session")
	}
	expect(other.Snapshot(), "/") // carries the drop
	if n := back.fwdSnapshots.Load(); n != 1 {
		t.Fatalf("backend keeps %d snapshots after a close, want 1", n)
	}
}

// A batch that does not decode ends its stream with an error (the backend
// does not guess at the rest); the backend stays up and a new stream
// works.
func TestMalformedBatchEndsItsStreamOnly(t *testing.T) {
	st := cluster.NewStatic()
	front := reviewNode(t, st, "connector-1", "connector", true)
	back := reviewNode(t, st, "chat-1", "chat", false)
	whoHandler(t, back)
	p, err := front.peer("chat-1")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for _, frames := range [][]byte{
		{recMessage, 0xff},               // truncated
		{recMessage, 1, 0, 7, 1, 'r', 0}, // a snapshot never sent
		{0x7f},                           // no such record
		{recMessage, 1, flagSession, 1, 0, 0xff, 0xff, 3}, // a count the batch cannot hold
	} {
		stream := p.msg.Forward(ctx)
		if err := stream.Send(&sysv1.ForwardBatch{Frames: frames}); err != nil {
			t.Fatal(err)
		}
		if _, err := stream.Receive(); err == nil {
			t.Fatalf("batch %x: the stream answered", frames)
		}
		stream.CloseRequest()
		stream.CloseResponse()
	}
	s := front.srv.Sessions().Create(reviewConn{})
	body, err := front.fwd.Forward(ctx, "chat", s.Snapshot(), &runtime.Request{Route: "chat.h.who", ID: 1, Serializer: runtime.Protobuf})
	if err != nil || len(body) == 0 {
		t.Fatalf("forward after malformed streams: %q, %v", body, err)
	}
}
