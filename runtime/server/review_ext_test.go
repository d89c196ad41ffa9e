package server_test

// Regression tests for bugs found in code review: each failed before its
// fix. The comment on each test describes the bug it guards against.

import (
	"context"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/structpb"

	pomelo "github.com/pomelo-go/pomelo/runtime"
	"github.com/pomelo-go/pomelo/runtime/client"
	"github.com/pomelo-go/pomelo/runtime/server"
)

// The design promises: "Shutdown drains: deregister, stop accepting, finish
// in-flight work, kick sessions with a reason, flush." Connector.Shutdown
// cancels the connector context (and so every in-flight request's context)
// and kicks at once: a request that is running when Shutdown starts never
// gets its response, the client only sees the KICK.
func TestReviewShutdownDoesNotFinishInFlightRequests(t *testing.T) {
	s, err := server.New(server.Config{ID: "review-1", Type: "review", Frontend: true, TCPAddr: "127.0.0.1:0"})
	if err != nil {
		t.Fatal(err)
	}
	started := make(chan struct{}, 1)
	err = s.RegisterHandler(pomelo.HandlerDesc{Route: "review.h.slow", ServerType: "review",
		Handle: func(ctx context.Context, _ pomelo.Session, _ pomelo.Serializer, _ []byte) (proto.Message, error) {
			started <- struct{}{}
			time.Sleep(300 * time.Millisecond) // a short piece of work that does not watch ctx
			return structpb.NewStruct(map[string]any{"code": 200})
		}})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Start(); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := client.Dial(ctx, "tcp://"+s.TCPAddr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
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
