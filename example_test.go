package pomelo_test

import (
	"context"
	"fmt"
	"time"

	"github.com/pomelo-go/pomelo"
	testingv1 "github.com/pomelo-go/pomelo/gen/pomelo/testing/v1"
	"github.com/pomelo-go/pomelo/runtime/client"
	"github.com/pomelo-go/pomelo/runtime/cluster"
)

// hello is an "echo" handler service.
type hello struct {
	testingv1.UnimplementedEchoHandlerServer
}

func (hello) Echo(_ context.Context, _ pomelo.Session, req *testingv1.EchoRequest) (*testingv1.EchoResponse, error) {
	return &testingv1.EchoResponse{Code: 200, Text: "hello, " + req.Text}, nil
}

// A cluster of a "connector" frontend and an "echo" backend in one process:
// the frontend forwards the echo.* routes to the backend. main would call
// pomelo.RunCluster(ctx, "cluster.json", setup) instead of StartCluster.
func Example() {
	f, _ := cluster.ParseFile([]byte(`{"secret": "change-me", "servers": [
	  {"id": "connector-1", "type": "connector", "host": "127.0.0.1", "rpcPort": 4101, "frontend": true, "wsPort": 3101},
	  {"id": "echo-1", "type": "echo", "host": "127.0.0.1", "rpcPort": 4102}]}`))
	setup := func(app *pomelo.App) error {
		if app.Type() == testingv1.EchoHandlerServerType { // "echo"
			return testingv1.RegisterEchoHandlerServer(app, hello{})
		}
		return nil
	}
	// EphemeralPorts: tests do not take the file's ports.
	c, err := pomelo.StartCluster(f, pomelo.ClusterConfig{EphemeralPorts: true, Logger: quiet}, setup)
	if err != nil {
		fmt.Println(err)
		return
	}
	defer c.Close()

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	cl, err := client.Dial(ctx, "ws://"+c.App("connector-1").WSAddr().String()+"/")
	if err != nil {
		fmt.Println(err)
		return
	}
	defer cl.Close()
	res, err := testingv1.NewEchoHandlerClient(cl).Echo(ctx, &testingv1.EchoRequest{Text: "world"})
	fmt.Println(res.GetText(), err)
	// Output: hello, world <nil>
}
