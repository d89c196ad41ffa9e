package channel_test

import (
	"context"
	"errors"
	"fmt"
	goruntime "runtime"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/pomelo-go/pomelo/runtime"
	"github.com/pomelo-go/pomelo/runtime/channel"
)

// noLeak fails the test unless the number of goroutines returns to what it
// was when noLeak was called, once the test's cleanups have run.
func noLeak(t *testing.T) {
	t.Helper()
	base := goruntime.NumGoroutine()
	t.Cleanup(func() {
		deadline := time.Now().Add(5 * time.Second)
		for goruntime.NumGoroutine() > base {
			if time.Now().After(deadline) {
				buf := make([]byte, 1<<16)
				t.Errorf("goroutines: %d, want %d\n%s", goruntime.NumGoroutine(), base, buf[:goruntime.Stack(buf, true)])
				return
			}
			time.Sleep(time.Millisecond)
		}
	})
}

func TestDirectScheduler(t *testing.T) {
	cl := newCluster(t, "fe-1")
	conn := cl.login("fe-1", "alice", nil)
	s := channel.DirectScheduler()
	failed, err := s.Schedule(ctx, "fe-1", "onChat", wrapperspb.String("d"), []string{"alice", "bob"}, cl)
	if err != nil || !slices.Equal(failed, []string{"bob"}) {
		t.Fatalf("Schedule: %v, %v", failed, err)
	}
	if len(conn.messages(t)) != 1 {
		t.Fatal("not delivered at once")
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
}

func TestBatchSchedulerFlushesOnInterval(t *testing.T) {
	noLeak(t)
	cl := newCluster(t, "fe-1", "fe-2")
	alice := cl.login("fe-1", "alice", nil)
	bob := cl.login("fe-2", "bob", nil)
	svc := channel.NewService(cl, channel.Config{Scheduler: channel.BatchScheduler(channel.BatchConfig{FlushInterval: 30 * time.Millisecond})})
	defer svc.Close()
	c := svc.GetOrCreate("room", channel.ChannelConfig{})
	_ = c.Add("alice", "fe-1")
	_ = c.Add("bob", "fe-2")

	const n = 50
	for i := range n {
		failed, err := c.PushMessage(ctx, "onChat", wrapperspb.String(fmt.Sprint(i)))
		if failed != nil || err != nil {
			t.Fatalf("queued push: %v, %v", failed, err)
		}
	}
	eventually(t, "the interval flush", func() bool {
		return len(alice.messages(t)) == n && len(bob.messages(t)) == n
	})
	// One Delivery call per frontend per push, in the order pushed.
	if got, want := cl.callCounts(), map[string]int{"fe-1": n, "fe-2": n}; !mapsEqual(got, want) {
		t.Fatalf("calls %v, want %v", got, want)
	}
	for _, conn := range []*fakeConn{alice, bob} {
		for i, m := range conn.messages(t) {
			if want := fmt.Sprintf("%q", fmt.Sprint(i)); m.Body != want {
				t.Fatalf("push %d has body %s, want %s: order not kept", i, m.Body, want)
			}
		}
	}

	// The scheduler keeps working after a flush.
	if _, err := c.PushMessage(ctx, "onChat", wrapperspb.String("late")); err != nil {
		t.Fatal(err)
	}
	eventually(t, "a second flush", func() bool { return len(alice.messages(t)) == n+1 })
}

func TestBatchSchedulerFlushesOnMaxBatch(t *testing.T) {
	noLeak(t)
	cl := newCluster(t, "fe-1")
	alice := cl.login("fe-1", "alice", nil)
	s := channel.BatchScheduler(channel.BatchConfig{FlushInterval: time.Hour, MaxBatch: 3})
	defer s.Close()
	for i := range 2 {
		if _, err := s.Schedule(ctx, "fe-1", "onChat", wrapperspb.String(fmt.Sprint(i)), []string{"alice"}, cl); err != nil {
			t.Fatal(err)
		}
	}
	time.Sleep(20 * time.Millisecond)
	if got := len(alice.messages(t)); got != 0 {
		t.Fatalf("%d pushes delivered before the batch was full", got)
	}
	if _, err := s.Schedule(ctx, "fe-1", "onChat", wrapperspb.String("2"), []string{"alice"}, cl); err != nil {
		t.Fatal(err)
	}
	eventually(t, "the full-batch flush", func() bool { return len(alice.messages(t)) == 3 })
}

func TestBatchSchedulerCloseFlushes(t *testing.T) {
	noLeak(t)
	cl := newCluster(t, "fe-1", "fe-2")
	alice := cl.login("fe-1", "alice", nil)
	bob := cl.login("fe-2", "bob", nil)
	svc := channel.NewService(cl, channel.Config{Scheduler: channel.BatchScheduler(channel.BatchConfig{FlushInterval: time.Hour})})
	c := svc.GetOrCreate("room", channel.ChannelConfig{})
	_ = c.Add("alice", "fe-1")
	_ = c.Add("bob", "fe-2")
	for i := range 5 {
		if _, err := c.PushMessage(ctx, "onChat", wrapperspb.String(fmt.Sprint(i))); err != nil {
			t.Fatal(err)
		}
	}
	if len(alice.messages(t)) != 0 {
		t.Fatal("delivered before the interval")
	}
	if err := svc.Close(); err != nil {
		t.Fatal(err)
	}
	if len(alice.messages(t)) != 5 || len(bob.messages(t)) != 5 {
		t.Fatalf("after Close: alice %d, bob %d pushes, want 5 each", len(alice.messages(t)), len(bob.messages(t)))
	}
}

func TestBatchSchedulerScheduleAfterClose(t *testing.T) {
	noLeak(t)
	cl := newCluster(t, "fe-1")
	s := channel.BatchScheduler(channel.BatchConfig{FlushInterval: time.Millisecond})
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	uids := []string{"alice"}
	failed, err := s.Schedule(ctx, "fe-1", "onChat", wrapperspb.String("x"), uids, cl)
	if !errors.Is(err, runtime.ErrClosed) || !slices.Equal(failed, uids) {
		t.Fatalf("Schedule after Close: %v, %v", failed, err)
	}
}

func TestBatchSchedulerOnFailure(t *testing.T) {
	noLeak(t)
	cl := newCluster(t, "fe-1")
	cl.login("fe-1", "alice", nil)
	var mu sync.Mutex
	var reports []channel.DeliveryFailure
	s := channel.BatchScheduler(channel.BatchConfig{FlushInterval: time.Millisecond, OnFailure: func(f channel.DeliveryFailure) {
		mu.Lock()
		reports = append(reports, f)
		mu.Unlock()
	}})
	// The pusher's context is cancelled once Schedule returns: the delivery
	// must not use it.
	pctx, cancel := context.WithCancel(ctx)
	if _, err := s.Schedule(pctx, "fe-1", "onChat", wrapperspb.String("x"), []string{"alice", "ghost"}, cl); err != nil {
		t.Fatal(err)
	}
	cancel()
	if _, err := s.Schedule(ctx, "fe-9", "onChat", wrapperspb.String("y"), []string{"zed"}, cl); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	defer mu.Unlock()
	slices.SortFunc(reports, func(a, b channel.DeliveryFailure) int { return strings.Compare(a.FrontendID, b.FrontendID) })
	if len(reports) != 2 {
		t.Fatalf("reports = %+v, want 2", reports)
	}
	if r := reports[0]; r.FrontendID != "fe-1" || r.Route != "onChat" || !slices.Equal(r.Failed, []string{"ghost"}) || r.Err != nil {
		t.Errorf("fe-1 report %+v", r)
	}
	if r := reports[1]; r.FrontendID != "fe-9" || !slices.Equal(r.Failed, []string{"zed"}) || !errors.Is(r.Err, runtime.ErrUnavailable) {
		t.Errorf("fe-9 report %+v", r)
	}
}

func TestBatchSchedulerRecoversPanics(t *testing.T) {
	noLeak(t)
	var got channel.DeliveryFailure
	s := channel.BatchScheduler(channel.BatchConfig{FlushInterval: time.Millisecond, OnFailure: func(f channel.DeliveryFailure) { got = f }})
	boom := channel.DeliveryFunc(func(context.Context, string, string, proto.Message, []string) ([]string, error) {
		panic("boom")
	})
	if _, err := s.Schedule(ctx, "fe-1", "onChat", wrapperspb.String("x"), []string{"alice"}, boom); err != nil {
		t.Fatal(err)
	}
	_ = s.Close()
	if !errors.Is(got.Err, runtime.ErrInternal) || !slices.Equal(got.Failed, []string{"alice"}) {
		t.Fatalf("report %+v, want INTERNAL with alice failed", got)
	}
}

func TestBatchSchedulerMaxPending(t *testing.T) {
	noLeak(t)
	gate := make(chan struct{})
	var delivered atomic.Int64
	slow := channel.DeliveryFunc(func(context.Context, string, string, proto.Message, []string) ([]string, error) {
		<-gate
		delivered.Add(1)
		return nil, nil
	})
	s := channel.BatchScheduler(channel.BatchConfig{FlushInterval: time.Millisecond, MaxPending: 2})
	for range 2 {
		if _, err := s.Schedule(ctx, "fe-1", "onChat", wrapperspb.String("x"), []string{"a"}, slow); err != nil {
			t.Fatal(err)
		}
	}
	tctx, cancel := context.WithTimeout(ctx, 20*time.Millisecond)
	defer cancel()
	failed, err := s.Schedule(tctx, "fe-1", "onChat", wrapperspb.String("x"), []string{"a"}, slow)
	if !errors.Is(err, context.DeadlineExceeded) || !slices.Equal(failed, []string{"a"}) {
		t.Fatalf("Schedule on a full queue: %v, %v", failed, err)
	}
	// A waiting Schedule gets in once room is made.
	done := make(chan error, 1)
	go func() {
		_, err := s.Schedule(ctx, "fe-1", "onChat", wrapperspb.String("x"), []string{"a"}, slow)
		done <- err
	}()
	close(gate)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	_ = s.Close()
	if got := delivered.Load(); got != 3 {
		t.Fatalf("delivered %d pushes, want 3", got)
	}
}

// batchCluster is a cluster whose Delivery also implements BatchDelivery.
type batchCluster struct {
	*cluster
	mu      sync.Mutex
	batches map[string][][]channel.Push
}

func (b *batchCluster) PushBatch(ctx context.Context, frontendID string, pushes []channel.Push) ([][]string, error) {
	b.mu.Lock()
	b.batches[frontendID] = append(b.batches[frontendID], slices.Clone(pushes))
	b.mu.Unlock()
	failed := make([][]string, len(pushes))
	var errs []error
	for i, p := range pushes {
		f, err := b.cluster.local[frontendID].PushToUIDs(ctx, frontendID, p.Route, p.Msg, p.UIDs)
		failed[i] = f
		errs = append(errs, err)
	}
	return failed, errors.Join(errs...)
}

func TestBatchSchedulerUsesBatchDelivery(t *testing.T) {
	noLeak(t)
	cl := newCluster(t, "fe-1", "fe-2")
	alice := cl.login("fe-1", "alice", nil)
	bob := cl.login("fe-2", "bob", nil)
	bd := &batchCluster{cluster: cl, batches: make(map[string][][]channel.Push)}
	var failures atomic.Int64
	sched := channel.BatchScheduler(channel.BatchConfig{FlushInterval: time.Hour, OnFailure: func(f channel.DeliveryFailure) {
		if !slices.Equal(f.Failed, []string{"ghost"}) || f.Err != nil {
			t.Errorf("failure %+v", f)
		}
		failures.Add(1)
	}})
	svc := channel.NewService(bd, channel.Config{Scheduler: sched})
	c := svc.GetOrCreate("room", channel.ChannelConfig{})
	_ = c.Add("alice", "fe-1")
	_ = c.Add("ghost", "fe-1")
	_ = c.Add("bob", "fe-2")
	const n = 10
	for i := range n {
		if _, err := c.PushMessage(ctx, "onChat", wrapperspb.String(fmt.Sprint(i))); err != nil {
			t.Fatal(err)
		}
	}
	if err := svc.Close(); err != nil {
		t.Fatal(err)
	}
	if got := cl.callCounts(); len(got) != 0 {
		t.Fatalf("PushToUIDs called %v; want PushBatch only", got)
	}
	for _, fe := range []string{"fe-1", "fe-2"} {
		if got := bd.batches[fe]; len(got) != 1 || len(got[0]) != n {
			t.Fatalf("%s: %d PushBatch calls, want 1 with %d pushes", fe, len(got), n)
		}
	}
	if failures.Load() != n {
		t.Fatalf("%d failure reports, want %d", failures.Load(), n)
	}
	for _, conn := range []*fakeConn{alice, bob} {
		msgs := conn.messages(t)
		if len(msgs) != n {
			t.Fatalf("got %d pushes, want %d", len(msgs), n)
		}
		for i, m := range msgs {
			if want := fmt.Sprintf("%q", fmt.Sprint(i)); m.Body != want {
				t.Fatalf("push %d: %s, want %s", i, m.Body, want)
			}
		}
	}
}

func TestBatchSchedulerNoGoroutineLeak(t *testing.T) {
	noLeak(t)
	cl := newCluster(t, "fe-1", "fe-2", "fe-3")
	cl.login("fe-1", "alice", nil)
	for range 10 {
		svc := channel.NewService(cl, channel.Config{Scheduler: channel.BatchScheduler(channel.BatchConfig{FlushInterval: time.Millisecond, MaxBatch: 4})})
		members := []channel.Member{{"alice", "fe-1"}, {"bob", "fe-2"}, {"carol", "fe-3"}}
		for range 20 {
			if _, err := svc.PushToMembers(ctx, "onChat", wrapperspb.String("x"), members); err != nil {
				t.Fatal(err)
			}
		}
		if err := svc.Close(); err != nil {
			t.Fatal(err)
		}
	}
}
