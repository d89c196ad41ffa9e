package testkit_test

import (
	"context"
	"testing"
	"time"

	"google.golang.org/protobuf/types/known/structpb"

	"github.com/pomelo-go/pomelo/runtime"
	"github.com/pomelo-go/pomelo/runtime/client"
	"github.com/pomelo-go/pomelo/runtime/testkit"
)

func TestClusterWithStructRoutes(t *testing.T) {
	c := testkit.Start(t, testkit.Config{
		Servers: []testkit.Spec{{Type: "connector", Frontend: true}, {Type: "room", Count: 2}},
		Setup: func(m *testkit.Member) error {
			if m.Info.Type == "room" {
				testkit.HandleStruct(t, m.App, "room.h.where", func(ctx context.Context, s runtime.Session, in *structpb.Struct) (*structpb.Struct, error) {
					return testkit.Struct(map[string]any{"server": m.Info.ID, "echo": in.Fields["x"].GetStringValue()}), nil
				})
			}
			return nil
		},
	})
	if got := len(c.Members("room")); got != 2 {
		t.Fatalf("%d room servers", got)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	cl, err := client.Dial(ctx, c.Members("connector")[0].TCPURL())
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	out := &structpb.Struct{}
	if err := cl.Request(ctx, "room.h.where", testkit.Struct(map[string]any{"x": "hi"}), out); err != nil {
		t.Fatal(err)
	}
	if out.Fields["echo"].GetStringValue() != "hi" || c.Member(out.Fields["server"].GetStringValue()) == nil {
		t.Fatalf("forwarded answer %v", out)
	}
	_, isErr, err := cl.RequestRaw(ctx, "room.h.where", []byte(`[1,2]`))
	if err != nil || !isErr {
		t.Fatalf("a body that is not an object: isErr=%v err=%v", isErr, err)
	}
	if err := c.Stop(out.Fields["server"].GetStringValue()); err != nil {
		t.Fatal(err)
	}
	if err := cl.Request(ctx, "room.h.where", testkit.Struct(nil), out); err != nil {
		t.Fatalf("after a room server left: %v", err)
	}
}

func TestLogBufferKeepsEveryRecordDecoded(t *testing.T) {
	var b testkit.LogBuffer
	log := b.Logger()
	log.Debug("first", "k", "needle here")
	log.Error("second", "n", 2)
	if got := b.Records(); len(got) != 2 || got[1]["msg"] != "second" || got[1]["n"] != float64(2) {
		t.Fatalf("records %v", got)
	}
	if m := b.Matching("needle"); len(m) != 1 || m[0]["msg"] != "first" {
		t.Errorf("Matching(needle) = %v", m)
	}
	if n := b.Count("second"); n != 1 {
		t.Errorf("Count(second) = %d", n)
	}
	if n := b.Wait("first", 1); n != 1 {
		t.Errorf("Wait(first) = %d", n)
	}
}
