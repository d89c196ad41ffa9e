package client

import (
	"fmt"
	"slices"
	"sync"

	"google.golang.org/protobuf/proto"

	"github.com/pomelo-go/pomelo/runtime"
)

// pushItem is one push waiting to be delivered.
type pushItem struct {
	route string
	body  []byte
}

// subscriber receives the pushes of one route, through fn or, for Pushes, a channel.
type subscriber struct {
	fn  func(body []byte)
	any func(route string, body []byte) // OnAnyPush
	ch  chan []byte
}

// pushes queues the pushes received by the read goroutine for the dispatch goroutine, which
// runs the subscribers in arrival order. The queue is unbounded so that a slow subscriber
// never stalls reading (and with it responses and heartbeats).
type pushes struct {
	mu     sync.Mutex
	queue  []pushItem
	signal chan struct{} // capacity 1: the queue may have grown
	subs   map[string][]*subscriber
	all    []*subscriber // OnAnyPush: every route, after the route's own
	exited bool          // the dispatch goroutine has finished; channels are closed
}

func newPushes() *pushes {
	return &pushes{signal: make(chan struct{}, 1), subs: make(map[string][]*subscriber)}
}

// enqueue adds a push; body must not be used by the caller afterwards.
func (p *pushes) enqueue(route string, body []byte) {
	p.mu.Lock()
	if p.exited {
		p.mu.Unlock()
		return
	}
	p.queue = append(p.queue, pushItem{route: route, body: body})
	p.mu.Unlock()
	select {
	case p.signal <- struct{}{}:
	default:
	}
}

// next pops the oldest push and the subscribers of its route at that moment.
func (p *pushes) next() (pushItem, []*subscriber, bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if len(p.queue) == 0 {
		return pushItem{}, nil, false
	}
	it := p.queue[0]
	p.queue[0] = pushItem{}
	p.queue = p.queue[1:]
	if len(p.queue) == 0 {
		p.queue = nil // let the backing array go
	}
	subs := slices.Clone(p.subs[it.route])
	return it, append(subs, p.all...), true
}

// add registers s for route and returns a function that removes it. It reports false if the
// dispatch goroutine has already finished.
func (p *pushes) add(route string, s *subscriber) (func(), bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.exited {
		return func() {}, false
	}
	p.subs[route] = append(p.subs[route], s)
	return func() {
		p.mu.Lock()
		defer p.mu.Unlock()
		list := p.subs[route]
		if i := slices.Index(list, s); i >= 0 {
			list = slices.Delete(slices.Clone(list), i, i+1)
			if len(list) == 0 {
				delete(p.subs, route)
			} else {
				p.subs[route] = list
			}
		}
	}, true
}

// dispatch runs on its own goroutine: it delivers pushes in arrival order until the connection
// is gone and the queue is empty, then closes the channels of Pushes.
func (c *Client) dispatch() {
	defer c.finishPushes()
	for {
		it, subs, ok := c.pushes.next()
		if !ok {
			select {
			case <-c.pushes.signal:
				continue
			case <-c.done:
				// Deliver what arrived before the connection ended, then stop.
				if it, subs, ok = c.pushes.next(); !ok {
					return
				}
			}
		}
		for i, s := range subs {
			body := it.body
			if i > 0 {
				body = slices.Clone(body) // each subscriber owns its body
			}
			if s.any != nil {
				s.any(it.route, body)
				continue
			}
			if s.ch == nil {
				s.fn(body)
				continue
			}
			select {
			case s.ch <- body:
			case <-c.closeCalled:
			}
		}
	}
}

// finishPushes marks the dispatcher finished and closes the channels of Pushes.
func (c *Client) finishPushes() {
	p := c.pushes
	p.mu.Lock()
	p.exited = true
	p.queue = nil
	var chans []chan []byte
	for _, list := range p.subs {
		for _, s := range list {
			if s.ch != nil {
				chans = append(chans, s.ch)
			}
		}
	}
	p.subs, p.all = nil, nil
	p.mu.Unlock()
	for _, ch := range chans {
		close(ch)
	}
}

// OnPush registers fn for the pushes of route and returns a function that unregisters it.
// route is matched after dictionary decompression, so it is always the route's name, such as
// "onChat". Several functions may be registered for one route; they run in registration
// order. All push callbacks of a Client run on one goroutine, one push at a time, in the
// order the pushes arrived; pushes received before the connection ended are still delivered
// after it. A callback may call Request, but blocks the delivery of later pushes while it
// runs. Pushes of a route with no subscriber are dropped. fn owns body.
func (c *Client) OnPush(route string, fn func(body []byte)) (unsubscribe func()) {
	if fn == nil {
		panic("pomelo client: OnPush with a nil function")
	}
	cancel, _ := c.pushes.add(route, &subscriber{fn: fn})
	return cancel
}

// OnAnyPush registers fn for the pushes of every route, after the route's own
// subscribers, for tools that show whatever arrives (the `pomelo client`
// REPL), and returns a function that unregisters it. The delivery guarantees
// are OnPush's; fn owns body.
func (c *Client) OnAnyPush(fn func(route string, body []byte)) (unsubscribe func()) {
	if fn == nil {
		panic("pomelo client: OnAnyPush with a nil function")
	}
	p := c.pushes
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.exited {
		return func() {}
	}
	s := &subscriber{any: fn}
	p.all = append(p.all, s)
	return func() {
		p.mu.Lock()
		defer p.mu.Unlock()
		if i := slices.Index(p.all, s); i >= 0 {
			p.all = slices.Delete(slices.Clone(p.all), i, i+1)
		}
	}
}

// Pushes returns a channel that receives the raw body of every push of route, for tests. The
// channel has the given buffer; when it is full, the delivery of all pushes of the Client
// waits for the reader (until Close is called). The channel is closed once the connection is
// gone and the pushes received before have been delivered.
func (c *Client) Pushes(route string, buffer int) <-chan []byte {
	ch := make(chan []byte, max(buffer, 0))
	if _, ok := c.pushes.add(route, &subscriber{ch: ch}); !ok {
		close(ch)
	}
	return ch
}

// Subscribe registers fn for the pushes of a typed push route: each body is decoded with the
// client's serializer into a new T. Pushes that do not decode are dropped (and logged). It
// returns a function that unregisters fn. See OnPush for the delivery guarantees. T must be a
// generated message pointer type such as *chatv1.ChatMessage; Subscribe panics otherwise.
func Subscribe[T proto.Message](c *Client, r runtime.PushRoute[T], fn func(T)) (unsubscribe func()) {
	if fn == nil {
		panic("pomelo client: Subscribe with a nil function")
	}
	var zero T
	if any(zero) == nil {
		panic(fmt.Sprintf("pomelo client: Subscribe needs a concrete message type, not %T", (*T)(nil)))
	}
	mt := zero.ProtoReflect().Type()
	return c.OnPush(r.Route, func(body []byte) {
		m := mt.New().Interface().(T)
		if err := c.ser.Unmarshal(body, m); err != nil {
			c.opts.logger.Warn("pomelo client: dropped undecodable push", "route", r.Route, "type", mt.Descriptor().FullName(), "error", err)
			return
		}
		fn(m)
	})
}
