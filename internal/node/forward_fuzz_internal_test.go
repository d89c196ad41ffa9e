package node

import (
	"testing"
	"unicode/utf8"

	"google.golang.org/protobuf/proto"

	sysv1 "github.com/pomelo-go/pomelo/gen/pomelo/sys/v1"
	"github.com/pomelo-go/pomelo/runtime"
	"github.com/pomelo-go/pomelo/runtime/session"
)

// FuzzForwardBatchEncoding builds a forward batch around one message made
// of arbitrary client input (route, uid, a setting, body) between two good
// ones, as the frontend's sender does after a failed write: keepEncodable
// with sanitizeRequest. The good messages always survive, a message with a
// UTF-8 route survives with its session repaired, the batch then always
// encodes, and the decoded batch equals the encoded one.
func FuzzForwardBatchEncoding(f *testing.F) {
	f.Add("chat.room.echo", "ann", "rid", "lobby", []byte(`{"n":1}`), false)
	f.Add("chat.\xff\xfe.echo", "ann", "rid", "lobby", []byte(`{}`), true)
	f.Add("chat.room.echo", "\xc0\x80", "\xff", "\xfe\xfe", []byte{0xff, 0}, false)
	f.Add("", "", "", "", []byte(nil), true)
	f.Fuzz(func(t *testing.T, route, uid, key, value string, body []byte, notify bool) {
		good := func(seq uint64) *sysv1.ForwardRequest {
			return &sysv1.ForwardRequest{Seq: seq, Route: "chat.room.echo", Body: []byte(`{}`),
				Session: snapshotToProto(session.Snapshot{ID: seq, FrontendID: "connector-1", UID: "u"})}
		}
		odd := &sysv1.ForwardRequest{Seq: 2, Route: route, Notify: notify, Body: body,
			Session: snapshotToProto(session.Snapshot{ID: 2, FrontendID: "connector-1", UID: uid, Settings: map[string]string{key: value}})}
		var refused *runtime.Error
		kept, _ := keepEncodable([]*sysv1.ForwardRequest{good(1), odd, good(3)}, func(r *sysv1.ForwardRequest) bool {
			refused = sanitizeRequest(r)
			return refused == nil
		})
		want := 3
		if !utf8.ValidString(route) {
			want = 2
			if refused == nil || refused.Name != runtime.ErrBadRequest.Name {
				t.Fatalf("route %q: refused with %v, want BAD_REQUEST", route, refused)
			}
		}
		if len(kept) != want || kept[0].Seq != 1 || kept[len(kept)-1].Seq != 3 {
			t.Fatalf("kept %d messages (first %d, last %d), want %d with both good ones", len(kept), kept[0].Seq, kept[len(kept)-1].Seq, want)
		}
		batch := &sysv1.ForwardBatch{Requests: kept}
		b, err := proto.Marshal(batch)
		if err != nil {
			t.Fatalf("a kept batch does not encode: %v", err)
		}
		var got sysv1.ForwardBatch
		if err := proto.Unmarshal(b, &got); err != nil {
			t.Fatalf("decode: %v", err)
		}
		if !proto.Equal(&got, batch) {
			t.Fatalf("decoded batch differs:\n got %v\nwant %v", &got, batch)
		}
		if want == 3 && string(got.Requests[1].Body) != string(body) {
			t.Fatalf("body changed: %q -> %q", body, got.Requests[1].Body)
		}
	})
}

// FuzzForwardResponseBatchEncoding does the same for the backend's side:
// a response whose error carries arbitrary text is repaired, never dropped,
// and the batch round-trips.
func FuzzForwardResponseBatchEncoding(f *testing.F) {
	f.Add("INTERNAL", "boom", []byte(`{}`))
	f.Add("\xff", "\xc0\x80 bad", []byte(nil))
	f.Fuzz(func(t *testing.T, name, message string, body []byte) {
		odd := &sysv1.ForwardResponse{Seq: 2, Body: body, Error: &sysv1.Error{Code: 500, Name: name, Message: message}}
		kept, _ := keepEncodable([]*sysv1.ForwardResponse{{Seq: 1}, odd, {Seq: 3}}, repairResponse)
		if len(kept) != 3 {
			t.Fatalf("kept %d responses, want 3", len(kept))
		}
		batch := &sysv1.ForwardResponseBatch{Responses: kept}
		b, err := proto.Marshal(batch)
		if err != nil {
			t.Fatalf("a repaired batch does not encode: %v", err)
		}
		var got sysv1.ForwardResponseBatch
		if err := proto.Unmarshal(b, &got); err != nil || !proto.Equal(&got, batch) {
			t.Fatalf("round trip: err=%v\n got %v\nwant %v", err, &got, batch)
		}
	})
}
