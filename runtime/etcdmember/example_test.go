package etcdmember_test

import (
	"context"
	"log"
	"time"

	"github.com/pomelo-go/pomelo/internal/node"
	"github.com/pomelo-go/pomelo/internal/server"
	"github.com/pomelo-go/pomelo/runtime/cluster"
	"github.com/pomelo-go/pomelo/runtime/etcdmember"
)

// A backend that joins the cluster through etcd, and leaves it gracefully.
func Example() {
	ctx := context.Background()
	srv, err := server.New(server.Config{ID: "chat-1", Type: "chat"})
	if err != nil {
		log.Fatal(err)
	}
	reg, err := etcdmember.New(ctx, etcdmember.Config{
		Endpoints: []string{"http://127.0.0.1:2379"},
		Prefix:    "/chat-app/servers/",
	})
	if err != nil {
		log.Fatal(err)
	}
	defer reg.Close() // after node.Close
	node, err := node.Join(srv, node.Config{
		Self:       cluster.ServerInfo{ID: "chat-1", Type: "chat", Host: "127.0.0.1", RPCPort: 4101},
		Membership: reg,
		Secret:     "cluster secret",
		DrainDelay: time.Second, // let every server see it leave
	})
	if err != nil {
		log.Fatal(err)
	}
	if err := srv.Start(); err != nil {
		log.Fatal(err)
	}
	if err := node.Start(); err != nil { // registers in etcd
		log.Fatal(err)
	}
	// ... serve ...
	closeCtx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	node.Close(closeCtx) // deregisters first, then drains
}
