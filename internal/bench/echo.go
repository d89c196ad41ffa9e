package bench

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// Echo runs the echo scenario: Clients clients, each entered in a room of
// its own, each with InFlight requests of Routes.Echo in flight, each
// request sent once the previous one of its slot was answered. An operation
// is a round trip whose response came back, not an error, with the
// request's sequence number. After the window every request in flight is
// waited for (at most Target.RequestTimeout), so Totals.Sent ==
// Totals.Received + the errors.
func Echo(ctx context.Context, cfg Config) (*Result, error) {
	if err := cfg.defaults(); err != nil {
		return nil, err
	}
	var w window
	var err error
	if w.before, err = readProcs(cfg.PIDs); err != nil {
		return nil, err
	}
	cfg.Logf("connecting %d clients to %s", cfg.Clients, cfg.Target.String())
	conns, err := cfg.Target.dialAll(ctx, cfg.Clients, cfg.Parallel, cfg.Name, func(i int) string {
		return fmt.Sprintf("%s-echo-%d", cfg.Name, i)
	})
	if err != nil {
		return nil, err
	}
	defer closeAll(conns, cfg.Parallel)

	pad := strings.Repeat("x", cfg.Size)
	var (
		sent, received, ops atomic.Int64
		errs                errCounter
		wg                  sync.WaitGroup
	)
	hists := make([]*lockedHist, len(conns))
	for i, c := range conns {
		hists[i] = newLockedHist()
		for k := 0; k < cfg.InFlight; k++ {
			wg.Add(1)
			go func(h *lockedHist, seq int64) {
				defer wg.Done()
				var body []byte
				for !w.done() && c.c.Err() == nil {
					seq++
					body = fmt.Appendf(body[:0], `{"seq":%d,"pad":%q}`, seq, pad)
					sent.Add(1)
					rctx, cancel := context.WithTimeout(context.Background(), cfg.Target.RequestTimeout)
					t0 := time.Now()
					resp, isErr, err := c.c.RequestRaw(rctx, cfg.Target.Routes.Echo, body)
					d := time.Since(t0)
					cancel()
					if err == nil && isErr {
						err = fmt.Errorf("error response %s", truncate(resp, 200))
					}
					if err == nil {
						var r struct {
							Seq int64 `json:"seq"`
						}
						if json.Unmarshal(resp, &r) != nil || r.Seq != seq {
							err = fmt.Errorf("echo answered %s to seq %d", truncate(resp, 200), seq)
						}
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
						ops.Add(1)
						h.record(d)
					}
				}
			}(hists[i], int64(k)<<40)
		}
	}
	werr := w.run(ctx, &cfg)
	wg.Wait()
	if werr != nil {
		return nil, werr
	}
	r := w.result(&cfg, "echo", "round trips", "round trip", ops.Load())
	r.Latency = mergeAll(hists).Summary()
	r.Totals = Totals{Sent: sent.Load(), Received: received.Load()}
	r.Errors, r.ErrorSamples = errs.snapshot(), errs.samples()
	for _, c := range conns {
		if c.c.Err() != nil {
			r.Totals.Dropped++
		}
	}
	return r, nil
}
