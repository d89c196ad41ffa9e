package channel_test

import (
	"context"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/pomelo-go/pomelo/runtime/channel"
)

// TestBatchConfigTimeout checks what each BatchConfig.Timeout gives a
// delivery: zero DefaultBatchTimeout, a positive value that limit, a
// negative one no deadline at all.
func TestBatchConfigTimeout(t *testing.T) {
	for _, tc := range []struct {
		name    string
		timeout time.Duration
		want    time.Duration // 0: no deadline
	}{
		{"zero is the default", 0, channel.DefaultBatchTimeout},
		{"positive is the limit", time.Hour, time.Hour},
		{"negative is none", -1, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			noLeak(t)
			var deadline time.Time
			var has bool
			var scheduled time.Time
			d := channel.DeliveryFunc(func(ctx context.Context, _, _ string, _ proto.Message, _ []string) ([]string, error) {
				deadline, has = ctx.Deadline()
				return nil, nil
			})
			s := channel.BatchScheduler(channel.BatchConfig{FlushInterval: time.Hour, Timeout: tc.timeout})
			scheduled = time.Now()
			if _, err := s.Schedule(context.Background(), "fe-1", "onChat", wrapperspb.String("x"), []string{"alice"}, d); err != nil {
				t.Fatal(err)
			}
			if err := s.Close(); err != nil { // delivers what is queued
				t.Fatal(err)
			}
			if tc.want == 0 {
				if has {
					t.Fatalf("delivery had a deadline %v, want none", deadline)
				}
				return
			}
			// The deadline is set when the delivery starts, after Schedule.
			if !has || deadline.Before(scheduled.Add(tc.want)) || deadline.After(time.Now().Add(tc.want)) {
				t.Fatalf("deadline %v (set: %v), want %v after the delivery started", deadline, has, tc.want)
			}
		})
	}
}

// TestZeroConfigIsDirect checks that a Service made with the zero Config
// delivers pushes at once, on the pushing goroutine.
func TestZeroConfigIsDirect(t *testing.T) {
	delivered := false
	svc := channel.NewService(channel.DeliveryFunc(func(context.Context, string, string, proto.Message, []string) ([]string, error) {
		delivered = true
		return nil, nil
	}), channel.Config{})
	defer svc.Close()
	c := svc.GetOrCreate("room", channel.ChannelConfig{})
	if err := c.Add("alice", "fe-1"); err != nil {
		t.Fatal(err)
	}
	if _, err := c.PushMessage(context.Background(), "onChat", wrapperspb.String("x")); err != nil {
		t.Fatal(err)
	}
	if !delivered {
		t.Fatal("the push was not delivered when PushMessage returned")
	}
	if c.LeavesOnClose() {
		t.Fatal("a channel of the zero ChannelConfig leaves on close")
	}
}
