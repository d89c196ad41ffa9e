package node

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/pomelo-go/pomelo/runtime"
	"github.com/pomelo-go/pomelo/runtime/cluster"
	"github.com/pomelo-go/pomelo/runtime/session"
)

// A writer's queue keeps order, puts at least one message in a batch
// however large, and keeps every batch within maxBatchBytes otherwise.
func TestBatchesSplitBySizeInOrder(t *testing.T) {
	sizes := []int{maxBatchBytes / 2, maxBatchBytes / 2, 1, maxBatchBytes * 3, 10, maxBatchBytes - 10, 20}
	var q batches
	for i, n := range sizes {
		b := q.open(n)
		*b = append(*b, make([]byte, n)...)
		(*b)[len(*b)-1] = byte(i + 1) // the last byte of a message names it
		q.msgs++
	}
	bs, msgs := q.take()
	if msgs != len(sizes) {
		t.Fatalf("took %d messages, want %d", msgs, len(sizes))
	}
	var order []int
	for _, b := range bs {
		if len(b) == 0 {
			t.Fatal("an empty batch")
		}
		rest := b
		for len(rest) > 0 {
			n := sizes[len(order)]
			if n > len(rest) || int(rest[n-1]) != len(order)+1 {
				t.Fatalf("batch of %d bytes does not hold message %d (%d bytes) whole and in order", len(b), len(order)+1, n)
			}
			order = append(order, n)
			rest = rest[n:]
		}
		if len(b) > maxBatchBytes && len(b) != sizes[len(order)-1] {
			t.Fatalf("batch of %d bytes: more than one message and over %d", len(b), maxBatchBytes)
		}
	}
	if fmt.Sprint(order) != fmt.Sprint(sizes) {
		t.Fatalf("batches hold %v, want %v", order, sizes)
	}
	q.done(bs)
	if len(q.queued) != 0 || q.msgs != 0 {
		t.Fatal("a written batch is still queued")
	}
}

// Many sessions' large requests queued on one stream at once (more than
// the 32 MiB a stream message may hold, all together) are sent in several
// batches: every one is answered and the stream stays up. Before, one
// batch over the read limit broke the stream for every session on it.
func TestLargeQueuedRequestsDoNotBreakTheStream(t *testing.T) {
	st := cluster.NewStatic()
	front := reviewNode(t, st, "connector-1", "connector", true)
	back := reviewNode(t, st, "chat-1", "chat", false)
	err := back.srv.RegisterHandler(runtime.HandlerDesc{Route: "chat.h.size", ServerType: "chat", Handle: func(_ context.Context, _ runtime.Session, _ runtime.Serializer, body []byte) (proto.Message, error) {
		return wrapperspb.Int64(int64(len(body))), nil
	}})
	if err != nil {
		t.Fatal(err)
	}
	const sessions, size = 200, 250 << 10 // 50 MiB in all
	body := make([]byte, size)
	var failed atomic.Int64
	var wg sync.WaitGroup
	for i := range sessions {
		wg.Add(1)
		go func() {
			defer wg.Done()
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			r := &runtime.Request{Route: "chat.h.size", ID: 1, Serializer: runtime.Protobuf, Body: body}
			if _, err := front.fwd.Forward(ctx, "chat", session.Snapshot{ID: uint64(i + 1), FrontendID: "connector-1"}, r); err != nil {
				if failed.Add(1) <= 3 {
					t.Errorf("session %d: %v", i+1, err)
				}
			}
		}()
	}
	wg.Wait()
	if n := failed.Load(); n > 0 {
		t.Fatalf("%d of %d large requests failed", n, sessions)
	}
}
