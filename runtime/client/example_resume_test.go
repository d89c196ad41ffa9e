package client_test

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"time"

	"github.com/pomelo-go/pomelo"
	"github.com/pomelo-go/pomelo/runtime/client"
	"github.com/pomelo-go/pomelo/runtime/cluster"
)

// A client whose session survives a dropped connection: with Resume it
// asks the frontend for a resumable session, and when its connection drops
// it reconnects by itself (backoff between ReconnectMinDelay and
// ReconnectMaxDelay, for at most ReconnectTimeout) and resumes the session:
// the pushes and responses it missed are replayed once, in order, and its
// unanswered requests are sent again. OnState reports each change:
// connected, reconnecting, resumed, or lost (a new session: log in again).
func ExampleConfig_resume() {
	f, _ := cluster.ParseFile([]byte(`{"secret": "change-me", "servers": [
	  {"id": "connector-1", "type": "connector", "host": "127.0.0.1", "rpcPort": 4112, "frontend": true, "tcpPort": 3112}]}`))
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	servers, err := pomelo.StartCluster(f, pomelo.ClusterConfig{EphemeralPorts: true, Logger: quiet}, func(*pomelo.App) error { return nil })
	if err != nil {
		fmt.Println(err)
		return
	}
	defer servers.Close()

	states := make(chan client.State, 8)
	cfg := client.Config{
		Resume:            true,
		ReconnectMinDelay: 100 * time.Millisecond,
		ReconnectMaxDelay: 5 * time.Second,
		ReconnectTimeout:  time.Minute,
		OnState:           func(s client.State) { states <- s },
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := cfg.Dial(ctx, "tcp://"+servers.App("connector-1").TCPAddr().String())
	if err != nil {
		fmt.Println(err)
		return
	}
	defer c.Close()
	fmt.Println(<-states, c.Received())
	// Output: connected 0
}
