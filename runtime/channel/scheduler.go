package channel

import (
	"cmp"
	"context"
	"fmt"
	"slices"
	"sync"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/pomelo-go/pomelo/internal/batchq"
	"github.com/pomelo-go/pomelo/runtime"
)

// Scheduler decides when a delivery happens (Pomelo's pushScheduler). A
// Service hands it every per-frontend part of every push. A Scheduler must
// be safe for concurrent use; the Service that is given one owns it and
// closes it in Service.Close.
type Scheduler interface {
	// Schedule delivers msg under route to the uids held by frontend
	// frontendID through d, now or later. A scheduler that delivers before
	// returning returns the Delivery's result; one that queues returns nil,
	// nil once the push is queued, and reports failures in its own way.
	// uids and msg must not be modified; a scheduler may keep them until
	// the delivery is done.
	Schedule(ctx context.Context, frontendID, route string, msg proto.Message, uids []string, d Delivery) (failed []string, err error)
	// Close delivers or drops what is pending, as the scheduler documents,
	// and releases its resources. Schedule fails after Close.
	Close() error
}

// queueing is implemented by schedulers whose Schedule only queues work and
// returns at once, so that a push to several frontends need not call
// Schedule on several goroutines.
type queueing interface {
	queues()
}

// DirectScheduler returns the scheduler that delivers every push at once,
// on the pushing goroutine (Pomelo's "direct" scheduler). It is the default.
// Schedule returns the Delivery's result.
func DirectScheduler() Scheduler { return directScheduler{} }

type directScheduler struct{}

func (directScheduler) Schedule(ctx context.Context, frontendID, route string, msg proto.Message, uids []string, d Delivery) ([]string, error) {
	return d.PushToUIDs(ctx, frontendID, route, msg, uids)
}

func (directScheduler) Close() error { return nil }

// DefaultFlushInterval is the flush interval of a BatchScheduler whose
// BatchConfig.FlushInterval is not positive: Pomelo's buffer scheduler
// flushes every 20ms.
const DefaultFlushInterval = 20 * time.Millisecond

// DefaultBatchTimeout is the time limit of each delivery a BatchScheduler
// makes, unless BatchConfig.Timeout says otherwise.
const DefaultBatchTimeout = 5 * time.Second

// DeliveryFailure describes a queued push that did not reach all of its
// receivers, as reported by BatchScheduler to BatchConfig.OnFailure.
type DeliveryFailure struct {
	// FrontendID is the frontend the push was for.
	FrontendID string
	// Route is the push route.
	Route string
	// Msg is the pushed message, read-only.
	Msg proto.Message
	// Failed lists the uids that were not reached.
	Failed []string
	// Err is the Delivery's error, or nil when only some uids had no
	// session.
	Err error
}

// BatchConfig configures a BatchScheduler. Its zero value is the default
// configuration: Pomelo's buffer scheduler.
type BatchConfig struct {
	// FlushInterval is how long after the first push arrives in an empty
	// queue the queue is flushed (not positive: DefaultFlushInterval).
	FlushInterval time.Duration

	// MaxBatch, when positive, flushes the queue as soon as that many
	// pushes are waiting (not positive: only FlushInterval flushes).
	MaxBatch int

	// OnFailure, when set, learns about queued pushes that failed in part
	// or in full, since Schedule has returned long before. It runs on the
	// scheduler's goroutines, possibly concurrently for different
	// frontends; it must not block for long and must not call Close.
	OnFailure func(DeliveryFailure)

	// Timeout is the time limit of each Delivery call (or PushBatch call)
	// the scheduler makes (0: DefaultBatchTimeout; negative: none).
	// Deliveries do not use the pusher's context, which may well be
	// cancelled by then: they use a context with its values but without its
	// cancellation, plus this limit.
	Timeout time.Duration

	// MaxPending bounds the number of pushes queued or being delivered (per
	// frontend part). When the bound is reached, Schedule waits for room
	// until its context is done. Not positive: 1024, or 4*MaxBatch when
	// that is larger.
	MaxPending int
}

// BatchScheduler returns a scheduler that queues pushes and delivers them
// together (Pomelo's "buffer" scheduler), configured by cfg: every
// cfg.FlushInterval after the first push arrives in an empty queue, or as
// soon as cfg.MaxBatch pushes are waiting.
//
// A flush delivers the queued pushes grouped by frontend, in the order they
// were scheduled for each frontend, one goroutine per frontend. Each push
// still costs one Delivery call, as Delivery carries one route and message:
// what batching buys is that a burst of pushes leaves together, so that the
// connections' writers coalesce them into few frames. When the Delivery also
// implements BatchDelivery, consecutive pushes to one frontend go out in a
// single PushBatch call per flush.
//
// Schedule returns nil, nil once the push is queued: failures are reported
// only through cfg.OnFailure. The message and uids are kept
// until the flush and must not be modified. Close delivers everything still
// queued, then stops the scheduler's goroutine; call it (Service.Close does)
// or the goroutine stays.
func BatchScheduler(cfg BatchConfig) Scheduler {
	flushInterval, maxBatch := cfg.FlushInterval, cfg.MaxBatch
	if flushInterval <= 0 {
		flushInterval = DefaultFlushInterval
	}
	b := &batchScheduler{
		interval: flushInterval,
		maxBatch: maxBatch,
		timeout:  DefaultBatchTimeout,
		done:     make(chan struct{}),
	}
	b.onFailure, b.maxPending = cfg.OnFailure, cfg.MaxPending
	switch {
	case cfg.Timeout > 0:
		b.timeout = cfg.Timeout
	case cfg.Timeout < 0:
		b.timeout = 0 // none
	}
	b.q = batchq.New(batchq.Config[batchJob]{FullAt: maxBatch})
	if b.maxPending <= 0 {
		b.maxPending = max(1024, 4*maxBatch)
	}
	b.slots = make(chan struct{}, b.maxPending)
	go b.run()
	return b
}

type batchJob struct {
	ctx        context.Context
	frontendID string
	route      string
	msg        proto.Message
	uids       []string
	d          Delivery
}

type batchScheduler struct {
	interval   time.Duration
	maxBatch   int
	maxPending int
	timeout    time.Duration
	onFailure  func(DeliveryFailure)

	slots chan struct{} // one token per push queued or in delivery
	done  chan struct{} // closed when run returns

	// q holds the pushes waiting for a flush: Ready when one arrived in an
	// empty queue, Full when maxBatch wait, Done once Close was called.
	q *batchq.Queue[batchJob]

	spare []batchJob // owned by run
}

var errSchedulerClosed = runtime.Errorf(runtime.ErrClosed, "push scheduler is closed")

func (b *batchScheduler) queues() {}

// Schedule implements Scheduler.
func (b *batchScheduler) Schedule(ctx context.Context, frontendID, route string, msg proto.Message, uids []string, d Delivery) ([]string, error) {
	if len(uids) == 0 {
		return nil, nil
	}
	select {
	case b.slots <- struct{}{}:
	default:
		select {
		case b.slots <- struct{}{}:
		case <-b.q.Done():
			return slices.Clone(uids), errSchedulerClosed
		case <-ctx.Done():
			return slices.Clone(uids), fmt.Errorf("push %s to frontend %s: waiting for the batch queue: %w", route, frontendID, ctx.Err())
		}
	}
	if b.q.Push(batchJob{ctx: ctx, frontendID: frontendID, route: route, msg: msg, uids: uids, d: d}) != nil {
		<-b.slots
		return slices.Clone(uids), errSchedulerClosed
	}
	return nil, nil
}

// Close implements Scheduler: it delivers everything queued, stops the
// scheduler's goroutine and waits for it. Closing twice is harmless.
func (b *batchScheduler) Close() error {
	b.q.Close()
	<-b.done
	return nil
}

func (b *batchScheduler) run() {
	defer close(b.done)
	timer := time.NewTimer(b.interval)
	timer.Stop()
	for {
		<-b.q.Ready() // a push arrived, or Close
		select {
		case <-b.q.Done():
		default:
			timer.Reset(b.interval)
			select {
			case <-timer.C:
			case <-b.q.Full():
				timer.Stop()
			case <-b.q.Done():
				timer.Stop()
			}
		}
		if b.flush() {
			return
		}
	}
}

// flush delivers everything queued and reports whether the scheduler is
// closed (nothing more will come). It runs on the run goroutine only.
func (b *batchScheduler) flush() (closed bool) {
	jobs, closed := b.q.Take(b.spare)
	if len(jobs) > 0 {
		b.deliver(jobs)
		for range jobs {
			<-b.slots
		}
	}
	clear(jobs) // let the messages go
	b.spare = jobs[:0]
	return closed
}

func (b *batchScheduler) deliver(jobs []batchJob) {
	// Group by frontend, keeping each frontend's order.
	slices.SortStableFunc(jobs, func(x, y batchJob) int { return cmp.Compare(x.frontendID, y.frontendID) })
	var wg sync.WaitGroup
	for len(jobs) > 0 {
		n := 1
		for n < len(jobs) && jobs[n].frontendID == jobs[0].frontendID {
			n++
		}
		run := jobs[:n]
		jobs = jobs[n:]
		if len(jobs) == 0 {
			b.deliverFrontend(run) // the last one on this goroutine
			break
		}
		wg.Go(func() { b.deliverFrontend(run) })
	}
	wg.Wait()
}

// deliverFrontend delivers jobs, all for one frontend, in order.
func (b *batchScheduler) deliverFrontend(jobs []batchJob) {
	for len(jobs) > 0 {
		if bd, ok := jobs[0].d.(BatchDelivery); ok {
			n := 1
			for n < len(jobs) && sameDelivery(jobs[0].d, jobs[n].d) {
				n++
			}
			if n > 1 {
				b.deliverBatch(bd, jobs[:n])
				jobs = jobs[n:]
				continue
			}
		}
		b.deliverOne(&jobs[0])
		jobs = jobs[1:]
	}
}

// sameDelivery reports whether a and b are the same Delivery, without
// panicking on Delivery types that are not comparable.
func sameDelivery(a, b Delivery) (same bool) {
	defer func() {
		if recover() != nil {
			same = false
		}
	}()
	return a == b
}

func (b *batchScheduler) context(parent context.Context) (context.Context, context.CancelFunc) {
	ctx := context.WithoutCancel(parent)
	if b.timeout > 0 {
		return context.WithTimeout(ctx, b.timeout)
	}
	return ctx, func() {}
}

func (b *batchScheduler) deliverOne(j *batchJob) {
	ctx, cancel := b.context(j.ctx)
	defer cancel()
	failed, err := func() (failed []string, err error) {
		defer func() {
			if p := recover(); p != nil {
				failed, err = j.uids, runtime.Errorf(runtime.ErrInternal, "push delivery panicked: %v", p)
			}
		}()
		return j.d.PushToUIDs(ctx, j.frontendID, j.route, j.msg, j.uids)
	}()
	b.report(j, failed, err)
}

func (b *batchScheduler) deliverBatch(bd BatchDelivery, jobs []batchJob) {
	pushes := make([]Push, len(jobs))
	for i := range jobs {
		pushes[i] = Push{Route: jobs[i].route, Msg: jobs[i].msg, UIDs: jobs[i].uids}
	}
	ctx, cancel := b.context(context.Background())
	defer cancel()
	failed, err := func() (failed [][]string, err error) {
		defer func() {
			if p := recover(); p != nil {
				failed, err = nil, runtime.Errorf(runtime.ErrInternal, "push delivery panicked: %v", p)
			}
		}()
		return bd.PushBatch(ctx, jobs[0].frontendID, pushes)
	}()
	for i := range jobs {
		var f []string
		if i < len(failed) {
			f = failed[i]
		} else if err != nil {
			f = jobs[i].uids
		}
		b.report(&jobs[i], f, err)
	}
}

func (b *batchScheduler) report(j *batchJob, failed []string, err error) {
	if b.onFailure == nil || (len(failed) == 0 && err == nil) {
		return
	}
	b.onFailure(DeliveryFailure{FrontendID: j.frontendID, Route: j.route, Msg: j.msg, Failed: failed, Err: err})
}
