package client_test

import (
	"context"
	"fmt"
	"log"
	"time"

	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/pomelo-go/pomelo/runtime"
	"github.com/pomelo-go/pomelo/runtime/client"
)

func ExampleDial() {
	// A stand-in for a frontend server; its "test.h.echo" handler answers with the request.
	srv := startFakeServer("ws", fakeConfig{})
	defer srv.Close()

	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	c, err := client.Dial(ctx, srv.addr) // such as "ws://127.0.0.1:3010/"
	if err != nil {
		log.Fatal(err)
	}
	defer c.Close()

	var resp wrapperspb.StringValue
	if err := c.Request(ctx, "test.h.echo", wrapperspb.String("hello"), &resp); err != nil {
		log.Fatal(err)
	}
	fmt.Println(resp.GetValue())

	// Errors from the server are *runtime.Error values.
	err = c.Request(ctx, "test.h.nope", nil, &resp)
	fmt.Println(err)
	// Output:
	// hello
	// UNKNOWN_ROUTE (500): no handler for test.h.nope
}

func ExampleSubscribe() {
	srv := startFakeServer("tcp", fakeConfig{})
	defer srv.Close()

	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	c, err := client.Dial(ctx, srv.addr)
	if err != nil {
		log.Fatal(err)
	}
	defer c.Close()

	got := make(chan string, 1)
	onPush := runtime.NewPushRoute[*wrapperspb.StringValue]("onPush")
	client.Subscribe(c, onPush, func(m *wrapperspb.StringValue) { got <- m.GetValue() })

	// The fake's "test.h.push" handler pushes the request body back under onPush.
	if err := c.Request(ctx, "test.h.push", wrapperspb.String("news"), nil); err != nil {
		log.Fatal(err)
	}
	fmt.Println(<-got)
	// Output: news
}

func ExampleConfig_Dial() {
	srv := startFakeServer("tcp", fakeConfig{serializer: "protobuf"})
	defer srv.Close()

	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	// Fields left out keep their defaults: heartbeats on, DefaultMaxPackageSize, ...
	cfg := client.Config{
		Serializer:    runtime.Protobuf,
		ClientType:    "bot",
		ClientVersion: "1.0.0",
	}
	c, err := cfg.Dial(ctx, srv.addr)
	if err != nil {
		log.Fatal(err)
	}
	defer c.Close()

	var resp wrapperspb.StringValue
	if err := c.Request(ctx, "test.h.echo", wrapperspb.String("hello"), &resp); err != nil {
		log.Fatal(err)
	}
	fmt.Println(resp.GetValue())
	// Output: hello
}
