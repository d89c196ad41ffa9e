package node

import (
	"context"
	"slices"
	"sync"

	"connectrpc.com/connect"
	"google.golang.org/protobuf/proto"

	sysv1 "github.com/pomelo-go/pomelo/gen/pomelo/sys/v1"
	"github.com/pomelo-go/pomelo/internal/tracing"
	"github.com/pomelo-go/pomelo/runtime"
	"github.com/pomelo-go/pomelo/runtime/cluster"
)

// PushToFrontend pushes msg under route to the uids' sessions on one
// frontend, returning the uids without a session there. It implements
// channel.Delivery, so channels on any server reach members on every
// frontend with one delivery per frontend per push. Another frontend is
// reached on this server's one push stream to it: the push shares a
// stream message with the others queued meanwhile, and the call returns
// when the frontend's ack arrives (the failed uids, as by a call), or with
// every uid failed and UNAVAILABLE when the frontend is not a member, the
// stream breaks before the ack (the push may have been delivered) or too
// many pushes are queued for it, TIMEOUT after CallTimeout.
func (n *Node) PushToFrontend(ctx context.Context, frontendID, route string, msg proto.Message, uids []string) (failed []string, err error) {
	n.metrics.Pushed()
	ctx, span := n.tracer.StartPush(ctx, route, frontendID, len(uids))
	failed, err = n.pushToFrontend(ctx, frontendID, route, msg, uids)
	tracing.End(span, err)
	return failed, err
}

func (n *Node) pushToFrontend(ctx context.Context, frontendID, route string, msg proto.Message, uids []string) ([]string, error) {
	if frontendID == n.cfg.Self.ID && n.srv.Frontend() {
		return n.srv.Sessions().PushToUIDs(route, msg, uids)
	}
	p, err := newPayload(msg)
	if err != nil {
		return slices.Clone(uids), err
	}
	ack, err := n.pushes.push(ctx, frontendID, &sysv1.StreamedPush{Route: route, Payload: p, Uids: packUIDs(uids), TraceContext: n.tracer.Carry(ctx)})
	if err != nil {
		return slices.Clone(uids), err
	}
	return ack.FailedUids, nil
}

// SetLocator makes PushToUIDs, and KickByUID for every frontend, call only
// the frontends that l says hold the uids. When l fails they ask every
// frontend, as without a locator. A nil l removes the locator.
func (n *Node) SetLocator(l cluster.Locator) {
	if l == nil {
		n.locator.Store(nil)
		return
	}
	n.locator.Store(&l)
}

// locate groups uids by the frontends holding them, by the locator; ok is
// false without a locator or when it fails.
func (n *Node) locate(ctx context.Context, uids []string) (groups map[string][]string, ok bool) {
	l := n.locator.Load()
	if l == nil {
		return nil, false
	}
	groups, err := (*l)(ctx, uids)
	if err != nil {
		n.log.Warn("locating uids failed; asking every frontend", "error", err)
		return nil, false
	}
	return groups, true
}

// PushToUIDs implements runtime.Pusher. With a locator (SetLocator) it
// calls only the frontends holding the uids, one call per frontend;
// without one it asks every frontend, concurrently. A uid fails when no
// frontend has it.
func (n *Node) PushToUIDs(ctx context.Context, route string, msg proto.Message, uids []string) ([]string, error) {
	groups, ok := n.locate(ctx, uids)
	if !ok {
		groups = map[string][]string{}
		for _, s := range n.Members("") {
			if s.Frontend {
				groups[s.ID] = uids
			}
		}
		if len(groups) == 0 {
			return slices.Clone(uids), runtime.Errorf(runtime.ErrUnavailable, "no frontend in the cluster")
		}
	}
	tries := map[string]int{} // uid -> frontends asked for it
	for _, g := range groups {
		for _, u := range g {
			tries[u]++
		}
	}
	var (
		mu       sync.Mutex
		misses   = map[string]int{}
		firstErr error
		wg       sync.WaitGroup
	)
	for fid, g := range groups {
		wg.Add(1)
		go func() {
			defer wg.Done()
			failed, err := n.PushToFrontend(ctx, fid, route, msg, g)
			mu.Lock()
			defer mu.Unlock()
			if err != nil && firstErr == nil {
				firstErr = err
			}
			for _, u := range failed {
				misses[u]++
			}
		}()
	}
	wg.Wait()
	var failed []string
	for _, u := range uids {
		if misses[u] == tries[u] {
			failed = append(failed, u)
		}
	}
	return failed, firstErr
}

// Broadcast implements runtime.Pusher: every frontend of frontendType
// pushes msg to its sessions.
func (n *Node) Broadcast(ctx context.Context, frontendType, route string, msg proto.Message, opts runtime.BroadcastOptions) error {
	fronts := n.Members(frontendType)
	if len(fronts) == 0 {
		return runtime.Errorf(runtime.ErrUnavailable, "no server of type %q", frontendType)
	}
	p, err := newPayload(msg)
	if err != nil {
		return err
	}
	req := &sysv1.BroadcastRequest{Route: route, Payload: p, BoundOnly: opts.BoundOnly, Filter: opts.Filter, FilterParam: opts.FilterParam}
	errs := make([]error, len(fronts))
	var wg sync.WaitGroup
	for i, f := range fronts {
		wg.Add(1)
		go func() {
			defer wg.Done()
			n.metrics.Pushed()
			p, err := n.peer(f.ID)
			if err == nil {
				cctx, cancel := n.callCtx(ctx)
				_, err = p.channel.Broadcast(cctx, connect.NewRequest(req))
				cancel()
			}
			errs[i] = asUnavailable(f.ID, err)
		}()
	}
	wg.Wait()
	return firstErr(errs...)
}

var _ runtime.Pusher = (*Node)(nil)
