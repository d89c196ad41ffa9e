package client_test

import (
	"testing"

	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/pomelo-go/pomelo/runtime"
	"github.com/pomelo-go/pomelo/runtime/client"
)

func TestOnAnyPushSeesThePushesOfEveryRouteAfterTheRoutesOwnSubscribers(t *testing.T) {
	forEach(t, func(t *testing.T, tr string, ser runtime.Serializer) {
		_, c := setup(t, tr, fakeConfig{}, client.Config{Serializer: ser})
		ctx := testCtx(t)
		got := make(chan string, 10)
		c.OnPush("onPush", func([]byte) { got <- "own onPush" })
		c.OnAnyPush(func(route string, body []byte) { got <- "any " + route + " " + string(body) })
		removed := c.OnAnyPush(func(route string, _ []byte) { got <- "removed " + route })
		removed()
		if err := c.Request(ctx, "test.h.push", wrapperspb.String("news"), nil); err != nil {
			t.Fatal(err)
		}
		body, _ := ser.Marshal(nil, wrapperspb.String("news"))
		for _, want := range []string{"own onPush", "any onPush " + string(body), "any onOther " + string(body)} {
			if g := <-got; g != want {
				t.Errorf("got %q, want %q", g, want)
			}
		}
	})
}
