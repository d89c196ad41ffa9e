package bench

import (
	"bytes"
	"context"
	"fmt"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
)

// Fanout runs the fan-out scenario: Clients clients enter one room, and
// InFlight senders (sender j on client j % Clients) each send Routes.Send
// with target "*" and wait for its response before sending the next. Every
// member, the sender too, receives each accepted message as a Routes.Push
// push; an operation is one such delivery. The message carries its send
// time, so the latency is from the send to each delivery. After the window
// the senders stop and the run waits (at most Config.Drain) until
// Totals.Deliveries reaches Totals.Expected = Totals.Received x Clients.
func Fanout(ctx context.Context, cfg Config) (*Result, error) {
	if err := cfg.defaults(); err != nil {
		return nil, err
	}
	var w window
	var err error
	if w.before, err = readProcs(cfg.PIDs); err != nil {
		return nil, err
	}
	room := cfg.Name + "-room"
	cfg.Logf("connecting %d clients to %s, room %s", cfg.Clients, cfg.Target.String(), room)
	conns, err := cfg.Target.dialAll(ctx, cfg.Clients, cfg.Parallel, cfg.Name, func(int) string { return room })
	if err != nil {
		return nil, err
	}
	defer closeAll(conns, cfg.Parallel)

	var (
		sent, received, deliveries, ops, measuredMsgs atomic.Int64
		undecodable                                   atomic.Int64
		errs                                          errCounter
		wg                                            sync.WaitGroup
	)
	epoch := time.Now()
	hists := make([]*lockedHist, len(conns))
	for i, c := range conns {
		h := newLockedHist()
		hists[i] = h
		c.c.OnPush(cfg.Target.Routes.Push, func(body []byte) {
			at := time.Since(epoch)
			deliveries.Add(1)
			ts, ok := sendTime(body)
			if !ok {
				undecodable.Add(1)
				return
			}
			if w.measuring() {
				ops.Add(1)
				h.record(at - ts)
			}
		})
	}
	sendHist := newLockedHist()
	for j := 0; j < cfg.InFlight; j++ {
		c := conns[j%len(conns)]
		wg.Add(1)
		go func() {
			defer wg.Done()
			var body []byte
			for !w.done() && c.c.Err() == nil {
				t0 := time.Now()
				body = fmt.Appendf(body[:0], `{"content":"%d","target":"*"}`, int64(t0.Sub(epoch)))
				sent.Add(1)
				rctx, cancel := context.WithTimeout(context.Background(), cfg.Target.RequestTimeout)
				resp, isErr, err := c.c.RequestRaw(rctx, cfg.Target.Routes.Send, body)
				d := time.Since(t0)
				cancel()
				if err == nil && (isErr || !bytes.Contains(resp, []byte("200"))) {
					err = fmt.Errorf("send answered %s", truncate(resp, 200))
					isErr = true
				}
				if err != nil {
					kind := classify(err)
					if isErr || kind == ErrKindConnect {
						kind = ErrKindResponse
					}
					errs.add(kind, err)
					continue
				}
				received.Add(1)
				if w.measuring() {
					measuredMsgs.Add(1)
					sendHist.record(d)
				}
			}
		}()
	}
	werr := w.run(ctx, &cfg)
	wg.Wait()
	if werr != nil {
		return nil, werr
	}
	expected := received.Load() * int64(len(conns))
	deadline := time.Now().Add(cfg.Drain)
	for deliveries.Load() < expected && time.Now().Before(deadline) && ctx.Err() == nil {
		time.Sleep(10 * time.Millisecond)
	}
	r := w.result(&cfg, "fanout", "deliveries", "delivery", ops.Load())
	r.Messages = measuredMsgs.Load()
	if r.Seconds > 0 {
		r.MessagesPerSecond = float64(r.Messages) / r.Seconds
	}
	r.Latency = mergeAll(hists).Summary()
	r.SendLatency = sendHist.h.Summary()
	r.Totals = Totals{Sent: sent.Load(), Received: received.Load(), Deliveries: deliveries.Load(), Expected: expected}
	r.Errors, r.ErrorSamples = errs.snapshot(), errs.samples()
	if n := undecodable.Load(); n > 0 {
		errs.addN(ErrKindResponse, n, fmt.Errorf("%d pushes without a send time in msg", n))
		r.Errors, r.ErrorSamples = errs.snapshot(), errs.samples()
	}
	for _, c := range conns {
		if c.c.Err() != nil {
			r.Totals.Dropped++
		}
	}
	return r, nil
}

// sendTime reads the send time that Fanout put in a message: the digits
// of the push body's "msg" string.
func sendTime(body []byte) (time.Duration, bool) {
	i := bytes.Index(body, []byte(`"msg"`))
	if i < 0 {
		return 0, false
	}
	rest := body[i+5:]
	j := bytes.IndexByte(rest, '"')
	if j < 0 {
		return 0, false
	}
	rest = rest[j+1:]
	k := bytes.IndexByte(rest, '"')
	if k < 0 {
		return 0, false
	}
	n, err := strconv.ParseInt(string(rest[:k]), 10, 64)
	if err != nil {
		return 0, false
	}
	return time.Duration(n), true
}
