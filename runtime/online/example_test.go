package online_test

import (
	"context"

	"github.com/redis/go-redis/v9"
	"google.golang.org/protobuf/types/known/structpb"

	"github.com/pomelo-go/pomelo/runtime"
	"github.com/pomelo-go/pomelo/runtime/globalchannel"
	"github.com/pomelo-go/pomelo/runtime/online"
	"github.com/pomelo-go/pomelo/runtime/session"
)

// Online status, global channels and one session per user in the whole
// cluster. The server's App attaches on when it serves.
func Example() {
	rdb := redis.NewClient(&redis.Options{Addr: "127.0.0.1:6379"})
	on := online.New(rdb, online.Config{Prefix: "chat-app:", Policy: session.KickOld})
	channels := globalchannel.New(on, globalchannel.Config{}) // before the App attaches on

	// In a handler: log the user in (kicking an earlier session anywhere),
	// put them in a room, and push to the room.
	enter := func(ctx context.Context, s runtime.Session, uid, room string) error {
		if err := on.Login(ctx, s, uid); err != nil {
			return err
		}
		if err := channels.Add(ctx, room, uid, s.FrontendID()); err != nil {
			return err
		}
		hello, _ := structpb.NewStruct(map[string]any{"user": uid})
		_, err := channels.Push(ctx, room, "onAdd", hello)
		return err
	}
	_ = enter
}
