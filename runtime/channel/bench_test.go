package channel_test

import (
	"context"
	"fmt"
	"testing"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/pomelo-go/pomelo/runtime/channel"
	"github.com/pomelo-go/pomelo/runtime/session"
)

// benchFrontends returns frontends with members sessions spread over them,
// on connections that drop what they are sent, and the channel members.
func benchFrontends(b *testing.B, members int, frontends ...string) (map[string]*session.Service, []channel.Member) {
	svcs := make(map[string]*session.Service, len(frontends))
	for _, fe := range frontends {
		svcs[fe] = session.NewService(fe, session.AllowMany)
	}
	ms := make([]channel.Member, members)
	for i := range ms {
		fe := frontends[i%len(frontends)]
		uid := fmt.Sprintf("user-%04d", i)
		s := svcs[fe].Create(&fakeConn{drop: true})
		if err := svcs[fe].Bind(s.ID(), uid); err != nil {
			b.Fatal(err)
		}
		ms[i] = channel.Member{UID: uid, FrontendID: fe}
	}
	return svcs, ms
}

func routeBy(svcs map[string]*session.Service) channel.Delivery {
	local := make(map[string]channel.Delivery, len(svcs))
	for fe, svc := range svcs {
		local[fe] = channel.LocalDelivery(svc)
	}
	return channel.DeliveryFunc(func(c context.Context, fe, route string, msg proto.Message, uids []string) ([]string, error) {
		return local[fe].PushToUIDs(c, fe, route, msg, uids)
	})
}

func benchChannel(b *testing.B, svc *channel.Service, members []channel.Member) *channel.Channel {
	c := svc.GetOrCreate("room", channel.ChannelConfig{})
	for _, m := range members {
		if err := c.Add(m.UID, m.FrontendID); err != nil {
			b.Fatal(err)
		}
	}
	return c
}

// BenchmarkChannelPush1000 pushes one message to a channel of 1,000 members
// on one frontend.
func BenchmarkChannelPush1000(b *testing.B) {
	svcs, members := benchFrontends(b, 1000, "fe-1")
	svc := channel.NewService(channel.LocalDelivery(svcs["fe-1"]), channel.Config{})
	defer svc.Close()
	c := benchChannel(b, svc, members)
	msg := wrapperspb.String("hello, room")
	b.ReportAllocs()
	for b.Loop() {
		if failed, err := c.PushMessage(ctx, "onChat", msg); err != nil || failed != nil {
			b.Fatal(failed, err)
		}
	}
}

// BenchmarkChannelPush1000TwoFrontends is the same push with the members on
// two frontends: two deliveries, run concurrently.
func BenchmarkChannelPush1000TwoFrontends(b *testing.B) {
	svcs, members := benchFrontends(b, 1000, "fe-1", "fe-2")
	svc := channel.NewService(routeBy(svcs), channel.Config{})
	defer svc.Close()
	c := benchChannel(b, svc, members)
	msg := wrapperspb.String("hello, room")
	b.ReportAllocs()
	for b.Loop() {
		if failed, err := c.PushMessage(ctx, "onChat", msg); err != nil || failed != nil {
			b.Fatal(failed, err)
		}
	}
}

// BenchmarkChannelPushExcept1000 pushes to all members but one.
func BenchmarkChannelPushExcept1000(b *testing.B) {
	svcs, members := benchFrontends(b, 1000, "fe-1")
	svc := channel.NewService(channel.LocalDelivery(svcs["fe-1"]), channel.Config{})
	defer svc.Close()
	c := benchChannel(b, svc, members)
	msg := wrapperspb.String("hello, room")
	b.ReportAllocs()
	for b.Loop() {
		if failed, err := c.PushMessageExcept(ctx, "onChat", msg, "user-0500"); err != nil || failed != nil {
			b.Fatal(failed, err)
		}
	}
}

// BenchmarkSessionPushToUIDs1000 is the session service's own cost for the
// same push, without the channel, for comparison.
func BenchmarkSessionPushToUIDs1000(b *testing.B) {
	svcs, members := benchFrontends(b, 1000, "fe-1")
	uids := make([]string, len(members))
	for i, m := range members {
		uids[i] = m.UID
	}
	msg := wrapperspb.String("hello, room")
	b.ReportAllocs()
	for b.Loop() {
		if failed, err := svcs["fe-1"].PushToUIDs("onChat", msg, uids); err != nil || failed != nil {
			b.Fatal(failed, err)
		}
	}
}

// BenchmarkPushToMembers1000 pushes by an explicit member list (Pomelo's
// pushMessageByUids), which groups on every call.
func BenchmarkPushToMembers1000(b *testing.B) {
	svcs, members := benchFrontends(b, 1000, "fe-1")
	svc := channel.NewService(channel.LocalDelivery(svcs["fe-1"]), channel.Config{})
	defer svc.Close()
	msg := wrapperspb.String("hello, room")
	b.ReportAllocs()
	for b.Loop() {
		if failed, err := svc.PushToMembers(ctx, "onChat", msg, members); err != nil || failed != nil {
			b.Fatal(failed, err)
		}
	}
}

// BenchmarkChannelChurn1000 adds and removes one member between pushes, so
// that every push regroups the 1,000 members.
func BenchmarkChannelChurn1000(b *testing.B) {
	svcs, members := benchFrontends(b, 1000, "fe-1")
	svc := channel.NewService(channel.LocalDelivery(svcs["fe-1"]), channel.Config{})
	defer svc.Close()
	c := benchChannel(b, svc, members)
	msg := wrapperspb.String("hello, room")
	b.ReportAllocs()
	for b.Loop() {
		_ = c.Leave("user-0001")
		_ = c.Add("user-0001", "fe-1")
		if failed, err := c.PushMessage(ctx, "onChat", msg); err != nil || failed != nil {
			b.Fatal(failed, err)
		}
	}
}
