package workpool

import (
	"context"
	"runtime"
	"sync"
	"testing"
	"time"
)

func TestRunsEverythingAndReusesGoroutines(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	p := New(ctx)
	base := runtime.NumGoroutine()
	var wg sync.WaitGroup
	var mu sync.Mutex
	ran := 0
	for i := 0; i < 200; i++ {
		wg.Add(1)
		p.Go(func() {
			defer wg.Done()
			mu.Lock()
			ran++
			mu.Unlock()
		})
		wg.Wait() // one at a time: an idle worker is always there to reuse
	}
	if ran != 200 {
		t.Fatalf("ran %d of 200", ran)
	}
	if n := runtime.NumGoroutine() - base; n > 2 {
		t.Fatalf("%d goroutines for sequential work, want one reused worker", n)
	}
}

func TestIdleWorkersExitWhenContextEnds(t *testing.T) {
	base := runtime.NumGoroutine()
	ctx, cancel := context.WithCancel(context.Background())
	p := New(ctx)
	var wg sync.WaitGroup
	block := make(chan struct{})
	for i := 0; i < 10; i++ {
		wg.Add(1)
		p.Go(func() { defer wg.Done(); <-block }) // all busy: 10 workers
	}
	close(block)
	wg.Wait()
	cancel()
	deadline := time.Now().Add(5 * time.Second)
	for runtime.NumGoroutine() > base {
		if time.Now().After(deadline) {
			t.Fatalf("%d goroutines left after cancel (base %d)", runtime.NumGoroutine(), base)
		}
		time.Sleep(5 * time.Millisecond)
	}
}
