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

// inChunks keeps order, puts at least one message in a run however large,
// and keeps every run within maxBatchBytes otherwise.
func TestInChunksSplitsBySizeInOrder(t *testing.T) {
	sizes := []int{maxBatchBytes / 2, maxBatchBytes / 2, 1, maxBatchBytes * 3, 10, maxBatchBytes - 10, 20}
	var runs [][]int
	err := inChunks(sizes, func(n int) int { return n }, func(run []int) error {
		runs = append(runs, append([]int(nil), run...))
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	var flat []int
	for _, r := range runs {
		total := 0
		for _, n := range r {
			total += n
		}
		if len(r) == 0 || (len(r) > 1 && total > maxBatchBytes) {
			t.Fatalf("run %v: %d bytes, want one message or at most %d", r, total, maxBatchBytes)
		}
		flat = append(flat, r...)
	}
	if fmt.Sprint(flat) != fmt.Sprint(sizes) {
		t.Fatalf("runs %v lose or reorder messages of %v", runs, sizes)
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
