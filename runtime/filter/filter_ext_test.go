package filter_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/pomelo-go/pomelo/runtime"
	"github.com/pomelo-go/pomelo/runtime/filter"
	"github.com/pomelo-go/pomelo/runtime/session"
	"github.com/pomelo-go/pomelo/runtime/testkit"
)

func request(sid uint64) *runtime.Request {
	return &runtime.Request{Route: "chat.h.x", ID: 1, Session: session.NewLocal(session.Snapshot{ID: sid, FrontendID: "fe"}, nil)}
}

// run runs f around a handler that takes d.
func run(f runtime.Filter, r *runtime.Request, d time.Duration) runtime.Result {
	ctx, err := f.Before(context.Background(), r)
	res := runtime.Result{Err: err}
	if err == nil {
		select {
		case <-time.After(d):
		case <-ctx.Done():
			res.Err = ctx.Err()
		}
	}
	f.After(ctx, r, &res)
	return res
}

func TestSlowLogSetsAndClearsATimer(t *testing.T) {
	var buf testkit.LogBuffer
	f := filter.SlowLog(50*time.Millisecond, buf.Logger())
	run(f, request(1), 0)
	time.Sleep(100 * time.Millisecond) // the cleared timer must not fire
	if got := buf.Records(); len(got) != 0 {
		t.Fatalf("fast request logged: %v", got)
	}
	run(f, request(2), 100*time.Millisecond)
	if buf.Count("slow request") != 1 || buf.Count("chat.h.x") != 1 {
		t.Fatalf("slow request not logged once with its route: %v", buf.Records())
	}
}

func TestTimeoutCancelsTheHandlerContext(t *testing.T) {
	res := run(filter.Timeout(20*time.Millisecond), request(1), time.Second)
	if !errors.Is(res.Err, context.DeadlineExceeded) && !errors.Is(res.Err, runtime.ErrTimeout) {
		t.Fatalf("err = %v", res.Err)
	}
	if res := run(filter.Timeout(time.Second), request(1), 0); res.Err != nil {
		t.Fatal(res.Err)
	}
}

func TestRateLimitPerSession(t *testing.T) {
	f := filter.RateLimit(1, 2)
	for i := 0; i < 2; i++ {
		if res := run(f, request(1), 0); res.Err != nil {
			t.Fatalf("within the burst: %v", res.Err)
		}
	}
	if res := run(f, request(1), 0); !errors.Is(res.Err, runtime.ErrRateLimited) {
		t.Fatalf("over the burst: %v", res.Err)
	}
	if res := run(f, request(2), 0); res.Err != nil {
		t.Fatalf("another session is limited too: %v", res.Err)
	}
}

func TestOverloadReleasesOnAfter(t *testing.T) {
	f := filter.Overload(1)
	r := request(1)
	ctx, err := f.Before(context.Background(), r)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.Before(context.Background(), request(2)); !errors.Is(err, runtime.ErrOverloaded) {
		t.Fatalf("second concurrent request: %v", err)
	}
	f.After(ctx, r, &runtime.Result{})
	if _, err := f.Before(context.Background(), request(3)); err != nil {
		t.Fatalf("after the first finished: %v", err)
	}
}
