// Package channel is Pomelo's ChannelService: named groups of users kept on
// one server (a frontend or a backend), and pushes to them.
//
// A channel records, for each member uid, the id of the frontend server that
// holds the user's connection. Pushing a message to a channel groups the
// members by frontend and hands each group to a Delivery, one call per
// frontend per push. On a frontend, LocalDelivery serves the frontend's own
// sessions; the App supplies a Delivery that reaches the other
// frontends over their push streams (internal/node): App.Channels of the root
// package (github.com/pomelo-go/pomelo) is the server's Service, built with
// it, so applications take their channels from there. Every frontend receives the
// same proto.Message value and encodes it once per serializer for all of its
// receiving sessions.
//
// A Scheduler decides when a delivery happens: DirectScheduler delivers at
// once (the default), BatchScheduler queues deliveries and flushes them
// together on a timer, like Pomelo's "buffer" push scheduler.
//
// A channel created with ChannelConfig.LeaveOnClose drops a member when its session
// closes, once the service is told of the close (Service.SessionClosed; the
// App tells it of every close its server hears of). Other channels keep
// their members until they leave.
//
// Channels are local to the server that created them: two servers do not
// share channels. All types of this package are safe for concurrent use.
//
// Differences from Pomelo:
//   - Membership is a set: adding a uid twice never makes it receive a
//     message twice, and adding it with another frontend id moves it.
//   - Operations on a destroyed channel return an error wrapping
//     runtime.ErrClosed instead of silently doing nothing.
package channel
