package server_test

// Regression tests for bugs found in code review: each failed before its
// fix. The comment on each test describes the bug it guards against.

import (
	"context"
	"errors"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/structpb"

	"github.com/pomelo-go/pomelo/internal/server"
	"github.com/pomelo-go/pomelo/runtime"
)

// Shutdown lets the request running when it starts finish and answers it
// with its result before the KICK (it used to cancel the request's context
// and kick at once: the client only saw the KICK).
func TestShutdownAnswersTheRunningRequestWithItsResult(t *testing.T) {
	s, started := startOneRoute(t, "review.h.slow", func(ctx context.Context) (proto.Message, error) {
		time.Sleep(300 * time.Millisecond) // a short piece of work that does not watch ctx
		return structpb.NewStruct(map[string]any{"code": 200})
	})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c := dialTCP(ctx, t, s)
	errc := make(chan error, 1)
	go func() {
		errc <- c.Request(ctx, "review.h.slow", &structpb.Struct{}, &structpb.Struct{})
	}()
	<-started
	if err := s.Shutdown(ctx, "maintenance"); err != nil {
		t.Fatal(err)
	}
	if err := <-errc; err != nil {
		t.Fatalf("in-flight request failed during a graceful shutdown: %v", err)
	}
}

// A request still running when the shutdown's ctx ends is cancelled and
// answered CLOSED, before the KICK: it is not left without a response.
func TestShutdownDeadlineAnswersTheCancelledRequestClosed(t *testing.T) {
	s, started := startOneRoute(t, "review.h.wait", func(ctx context.Context) (proto.Message, error) {
		<-ctx.Done()
		return nil, ctx.Err()
	})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c := dialTCP(ctx, t, s)
	errc := make(chan error, 1)
	go func() {
		errc <- c.Request(ctx, "review.h.wait", &structpb.Struct{}, &structpb.Struct{})
	}()
	<-started
	sctx, scancel := context.WithTimeout(ctx, 50*time.Millisecond)
	defer scancel()
	s.Shutdown(sctx, "maintenance")
	if err := <-errc; !errors.Is(err, runtime.ErrClosed) {
		t.Fatalf("request cancelled by the shutdown deadline: %v, want CLOSED", err)
	}
}

// startOneRoute starts a TCP frontend of type "review" serving route with
// handle; started receives once per call, before handle runs.
func startOneRoute(t *testing.T, route string, handle func(context.Context) (proto.Message, error)) (*server.Server, chan struct{}) {
	t.Helper()
	s, err := server.New(server.Config{ID: "review-1", Type: "review", Frontend: true, TCPAddr: "127.0.0.1:0"})
	if err != nil {
		t.Fatal(err)
	}
	started := make(chan struct{}, 1)
	err = s.RegisterHandler(runtime.HandlerDesc{Route: route, ServerType: "review",
		Handle: func(ctx context.Context, _ runtime.Session, _ runtime.Serializer, _ []byte) (proto.Message, error) {
			started <- struct{}{}
			return handle(ctx)
		}})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		s.Shutdown(ctx, "")
	})
	return s, started
}
