package bench

import (
	"context"
	"fmt"
)

// Idle runs the idle scenario: it reads the servers' RSS, opens Clients
// connections (handshake, and with Config.Enter a room entry, 50 clients a
// room), waits the warm-up for the servers to settle, then holds them for
// the window, the clients answering heartbeats. An operation is a
// connection still open at the end; Result.RSSPerConnKB is the servers'
// RSS growth per connection open at the end. Connections that end early count in
// Totals.Dropped and in Errors.
func Idle(ctx context.Context, cfg Config) (*Result, error) {
	if err := cfg.defaults(); err != nil {
		return nil, err
	}
	var w window
	var err error
	if w.before, err = readProcs(cfg.PIDs); err != nil {
		return nil, err
	}
	var room func(int) string
	if cfg.Enter {
		room = func(i int) string { return fmt.Sprintf("%s-idle-%d", cfg.Name, i/50) }
	}
	cfg.Logf("connecting %d clients to %s", cfg.Clients, cfg.Target.String())
	conns, err := cfg.Target.dialAll(ctx, cfg.Clients, cfg.Parallel, cfg.Name, room)
	if err != nil {
		return nil, err
	}
	defer closeAll(conns, cfg.Parallel)
	cfg.Logf("%d connections open", len(conns))
	if err := w.run(ctx, &cfg); err != nil {
		return nil, err
	}
	var errs errCounter
	var open int64
	for _, c := range conns {
		if err := c.c.Err(); err != nil {
			errs.add(classify(err), err)
			continue
		}
		open++
	}
	r := w.result(&cfg, "idle", "connections", "connection", open)
	r.OpsPerSecond = 0
	r.CPUPerOpUS = 0
	r.InFlight = 0
	r.Totals = Totals{Dropped: int64(len(conns)) - open}
	r.Errors, r.ErrorSamples = errs.snapshot(), errs.samples()
	if len(r.Servers) > 0 && open > 0 {
		var grown int64
		for _, s := range r.Servers {
			grown += s.RSSKB - s.RSSBeforeKB
		}
		r.RSSPerConnKB = float64(grown) / float64(open)
	}
	return r, nil
}
