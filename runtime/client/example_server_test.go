package client_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"time"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/pomelo-go/pomelo"
	"github.com/pomelo-go/pomelo/runtime"
	"github.com/pomelo-go/pomelo/runtime/client"
	"github.com/pomelo-go/pomelo/runtime/cluster"
)

// onNews is a push route; generated code declares these from PUSH services.
var onNews = runtime.NewPushRoute[*wrapperspb.StringValue]("onNews")

// A client of a real frontend: dial, a push handler, a request whose
// handler pushes, and close.
func Example() {
	// A one-server cluster whose "connector.news.publish" handler pushes the
	// request's text to the caller under onNews, then answers "published".
	f, _ := cluster.ParseFile([]byte(`{"secret": "change-me", "servers": [
	  {"id": "connector-1", "type": "connector", "host": "127.0.0.1", "rpcPort": 4111, "frontend": true, "wsPort": 3111}]}`))
	setup := func(app *pomelo.App) error {
		return app.RegisterHandler(runtime.HandlerDesc{Route: "connector.news.publish", ServerType: "connector",
			Handle: func(ctx context.Context, s runtime.Session, ser runtime.Serializer, body []byte) (proto.Message, error) {
				in := &wrapperspb.StringValue{}
				if err := ser.Unmarshal(body, in); err != nil {
					return nil, err
				}
				if err := s.Send(ctx, onNews.Route, in); err != nil {
					return nil, err
				}
				return wrapperspb.String("published"), nil
			}})
	}
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	servers, err := pomelo.StartCluster(f, pomelo.ClusterConfig{EphemeralPorts: true, Logger: quiet}, setup)
	if err != nil {
		fmt.Println(err)
		return
	}
	defer servers.Close()
	url := "ws://" + servers.App("connector-1").WSAddr().String() + "/" // or "tcp://host:port"

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := client.Dial(ctx, url)
	if err != nil {
		fmt.Println(err)
		return
	}

	// Pushes are delivered to subscribers, in order, on one goroutine.
	news := make(chan string, 1)
	unsubscribe := client.Subscribe(c, onNews, func(m *wrapperspb.StringValue) { news <- m.GetValue() })
	defer unsubscribe()

	var answer wrapperspb.StringValue
	if err := c.Request(ctx, "connector.news.publish", wrapperspb.String("rain tomorrow"), &answer); err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println(answer.GetValue())
	fmt.Println(<-news)

	// Close ends the connection; later calls fail with ErrClosed.
	c.Close()
	err = c.Request(ctx, "connector.news.publish", wrapperspb.String("again"), &answer)
	fmt.Println(errors.Is(err, client.ErrClosed), errors.Is(c.Err(), client.ErrClosed))
	// Output:
	// published
	// rain tomorrow
	// true true
}
