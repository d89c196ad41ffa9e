package batchq

import (
	"errors"
	"sync"
	"testing"
)

func TestTakeReturnsItemsInPushOrder(t *testing.T) {
	q := New(Config[int]{})
	for i := range 5 {
		if err := q.Push(i); err != nil {
			t.Fatal(err)
		}
	}
	<-q.Ready()
	got, closed := q.Take(nil)
	if closed || len(got) != 5 {
		t.Fatalf("Take = %v, %v; want 5 items, open", got, closed)
	}
	for i, v := range got {
		if v != i {
			t.Fatalf("item %d is %d", i, v)
		}
	}
}

func TestReadyOnlyWhenSomethingWasQueuedSinceTheLastTake(t *testing.T) {
	q := New(Config[int]{})
	select {
	case <-q.Ready():
		t.Fatal("an empty queue is ready")
	default:
	}
	q.Push(1)
	q.Push(2)
	q.Take(nil)
	select {
	case <-q.Ready():
		t.Fatal("ready after Take took everything")
	default:
	}
	q.Push(3)
	select {
	case <-q.Ready():
	default:
		t.Fatal("not ready after a Push")
	}
}

func TestTakeReusesTheBatchHandedBack(t *testing.T) {
	q := New(Config[*int]{})
	x := new(int)
	q.Push(x)
	first, _ := q.Take(nil)
	q.Push(x)
	second, _ := q.Take(first) // the next items go into first's array
	if first[0] != nil {
		t.Fatal("the batch handed back still holds its items")
	}
	q.Push(x)
	third, _ := q.Take(second)
	if &third[0] != &first[:1][0] || third[0] != x {
		t.Fatal("Take did not queue into the batch handed back")
	}
}

func TestCloseKeepsWhatWasAcceptedAndWakesTheConsumer(t *testing.T) {
	q := New(Config[int]{})
	q.Push(1)
	q.Take(nil) // the token is consumed
	q.Push(2)
	got := make(chan []int)
	go func() {
		var all []int
		var batch []int
		for {
			<-q.Ready()
			b, closed := q.Take(batch)
			all = append(all, b...)
			batch = b
			if closed {
				got <- all
				return
			}
		}
	}()
	if !q.Close() {
		t.Fatal("Close did not report closing")
	}
	if q.Close() {
		t.Fatal("a second Close reported closing")
	}
	if all := <-got; len(all) != 1 || all[0] != 2 {
		t.Fatalf("consumer got %v after Close, want [2]", all)
	}
	if err := q.Push(3); !errors.Is(err, ErrClosed) {
		t.Fatalf("Push after Close = %v, want ErrClosed", err)
	}
	select {
	case <-q.Done():
	default:
		t.Fatal("Done not closed")
	}
	select {
	case <-q.Ready():
	default:
		t.Fatal("a closed queue is not ready")
	}
}

func TestPushAndCloseMakesItsItemTheLast(t *testing.T) {
	q := New(Config[string]{Limit: 1})
	q.Push("a")
	if err := q.PushAndClose("kick"); err != nil {
		t.Fatal(err)
	}
	if err := q.PushUnbounded("late"); !errors.Is(err, ErrClosed) {
		t.Fatalf("push after PushAndClose = %v", err)
	}
	got, closed := q.Take(nil)
	if !closed || len(got) != 2 || got[1] != "kick" {
		t.Fatalf("Take = %v, %v", got, closed)
	}
}

func TestLimitRefusesByWeightUntilTaken(t *testing.T) {
	q := New(Config[[]byte]{Limit: 10, Weight: func(b []byte) int { return len(b) }})
	if err := q.Push(make([]byte, 6)); err != nil {
		t.Fatal(err)
	}
	if err := q.Push(make([]byte, 5)); !errors.Is(err, ErrFull) {
		t.Fatalf("Push over the limit = %v, want ErrFull", err)
	}
	if err := q.PushUnbounded(make([]byte, 5)); err != nil {
		t.Fatalf("PushUnbounded over the limit = %v", err)
	}
	q.Take(nil)
	if err := q.Push(make([]byte, 10)); err != nil {
		t.Fatalf("Push after Take = %v: taken items still count", err)
	}
}

func TestFullIsReadyAtFullAt(t *testing.T) {
	q := New(Config[int]{FullAt: 3})
	q.Push(1)
	q.Push(2)
	select {
	case <-q.Full():
		t.Fatal("full at 2 of 3")
	default:
	}
	q.Push(3)
	select {
	case <-q.Full():
	default:
		t.Fatal("not full at 3")
	}
	q.Push(4)
	q.Take(nil)
	select {
	case <-q.Full():
		t.Fatal("full after Take")
	default:
	}
	if New(Config[int]{}).Full() != nil {
		t.Fatal("Full without FullAt is not nil")
	}
}

func TestDiscardDropsItemsAndCloses(t *testing.T) {
	q := New(Config[int]{})
	q.Push(1)
	q.Discard()
	if got, closed := q.Take(nil); len(got) != 0 || !closed {
		t.Fatalf("Take after Discard = %v, %v", got, closed)
	}
	if q.Push(2) == nil {
		t.Fatal("Push after Discard succeeded")
	}
}

func TestConcurrentProducersLoseNothing(t *testing.T) {
	const producers, each = 8, 5000
	q := New(Config[int]{})
	var wg sync.WaitGroup
	for p := range producers {
		wg.Go(func() {
			for i := range each {
				if err := q.Push(p*each + i); err != nil {
					t.Error(err)
					return
				}
			}
		})
	}
	go func() { wg.Wait(); q.Close() }()
	last := make([]int, producers)
	for i := range last {
		last[i] = -1
	}
	n := 0
	var batch []int
	for {
		<-q.Ready()
		b, closed := q.Take(batch)
		for _, v := range b {
			p, i := v/each, v%each
			if i <= last[p] {
				t.Fatalf("producer %d: item %d after %d", p, i, last[p])
			}
			last[p] = i
			n++
		}
		batch = b
		if closed {
			break
		}
	}
	if n != producers*each {
		t.Fatalf("took %d items, want %d", n, producers*each)
	}
}

func TestSteadyStateAllocatesNothing(t *testing.T) {
	q := New(Config[*int]{})
	x := new(int)
	var batch []*int
	for range 3 { // warm up both arrays
		q.Push(x)
		q.Push(x)
		batch, _ = q.Take(batch)
	}
	allocs := testing.AllocsPerRun(100, func() {
		q.Push(x)
		q.Push(x)
		<-q.Ready()
		batch, _ = q.Take(batch)
	})
	if allocs != 0 {
		t.Fatalf("%v allocations per push-push-take", allocs)
	}
}

func BenchmarkPushTake(b *testing.B) {
	q := New(Config[*int]{})
	x := new(int)
	var batch []*int
	b.ReportAllocs()
	for b.Loop() {
		q.Push(x)
		q.Push(x)
		q.Push(x)
		<-q.Ready()
		batch, _ = q.Take(batch)
	}
}

func BenchmarkProducersConsumer(b *testing.B) {
	q := New(Config[*int]{})
	x := new(int)
	done := make(chan struct{})
	go func() {
		defer close(done)
		var batch []*int
		for {
			<-q.Ready()
			var closed bool
			batch, closed = q.Take(batch)
			if closed {
				return
			}
		}
	}()
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			q.Push(x)
		}
	})
	q.Close()
	<-done
}
