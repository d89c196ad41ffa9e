package etcdmember_test

import (
	"context"
	"log"
	"os/signal"
	"syscall"
	"time"

	"github.com/pomelo-go/pomelo"
	"github.com/pomelo-go/pomelo/runtime/etcdmember"
)

// A backend that joins the cluster through etcd, and leaves it gracefully.
func Example() {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	reg, err := etcdmember.New(ctx, etcdmember.Config{
		Endpoints: []string{"http://127.0.0.1:2379"},
		Prefix:    "/chat-app/servers/",
	})
	if err != nil {
		log.Fatal(err)
	}
	defer reg.Close() // after Serve returned
	app, err := pomelo.New(pomelo.Config{
		ID:         "chat-1",
		Type:       "chat",
		RPCAddr:    "127.0.0.1:4101",
		Membership: reg, // Serve registers in etcd, and deregisters first when it drains
		Secret:     "cluster secret",
		DrainDelay: time.Second, // let every server see it leave
	})
	if err != nil {
		log.Fatal(err)
	}
	// ... register handlers and remotes on app ...
	if err := app.Serve(ctx); err != nil {
		log.Fatal(err)
	}
}
