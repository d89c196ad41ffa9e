package channel_test

import (
	"context"
	"fmt"
	"net"

	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/pomelo-go/pomelo/runtime"
	"github.com/pomelo-go/pomelo/runtime/channel"
	"github.com/pomelo-go/pomelo/runtime/session"
	"github.com/pomelo-go/pomelo/runtime/wire"
)

// printConn stands in for a client connection and prints the pushes it
// gets.
type printConn struct{ name string }

func (c printConn) Send(pkgs []byte) error {
	return wire.SplitPackages(pkgs, 0, func(_ wire.PackageType, body []byte) error {
		m, err := wire.DecodeMessage(body)
		if err == nil {
			fmt.Printf("%s <- %s %s\n", c.name, m.Route, m.Body)
		}
		return err
	})
}
func (printConn) Kick(string)                    {}
func (printConn) Close()                         {}
func (printConn) RemoteAddr() net.Addr           { return nil }
func (printConn) Serializer() runtime.Serializer { return runtime.JSON }

func ExampleService() {
	ctx := context.Background()

	// A frontend's sessions; the connector creates them for real clients.
	sessions := session.NewService("connector-1", session.AllowMany)
	for _, uid := range []string{"alice", "bob"} {
		s := sessions.Create(printConn{name: uid})
		_ = sessions.Bind(s.ID(), uid)
	}

	// On a frontend, LocalDelivery reaches its own sessions; the cluster
	// layer supplies a Delivery that reaches every frontend.
	channels := channel.NewService(channel.LocalDelivery(sessions), channel.Config{})
	defer channels.Close()

	room := channels.GetOrCreate("room-1", channel.ChannelConfig{})
	_ = room.Add("alice", "connector-1")
	_ = room.Add("bob", "connector-1")
	_ = room.Add("carol", "connector-1") // not connected

	failed, err := room.PushMessage(ctx, "onChat", wrapperspb.String("hello"))
	fmt.Println("failed:", failed, "err:", err)

	// A chat message goes to everyone but its sender.
	_, _ = room.PushMessageExcept(ctx, "onChat", wrapperspb.String("hi bob"), "alice")
	// Output:
	// alice <- onChat "hello"
	// bob <- onChat "hello"
	// failed: [carol] err: <nil>
	// bob <- onChat "hi bob"
}
