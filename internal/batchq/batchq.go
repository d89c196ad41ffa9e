// Package batchq is the framework's one internal batching queue: many
// producers append without blocking, one consumer takes everything queued
// since its last take in one swap.
//
// The consumer hands back the batch it has finished with on each Take, and
// the queue appends the next items into that array: in steady state two
// arrays alternate and nothing is allocated per item. Ready is a channel
// the consumer selects on beside its context or other signals; it is ready
// when something was queued since the last Take, and once the queue is
// closed.
// Close loses nothing accepted: the consumer's next Take returns what is
// left and reports the queue closed.
package batchq

import (
	"errors"
	"sync"
)

// ErrClosed is returned by the Push methods after Close (or Discard).
var ErrClosed = errors.New("batchq: queue closed")

// ErrFull is returned by Push when the item would take the queue over its
// Limit.
var ErrFull = errors.New("batchq: queue full")

// Config configures a Queue. The zero Config is an unbounded queue.
type Config[T any] struct {
	// Limit bounds the total Weight of the items queued and not yet taken;
	// Push refuses an item that would exceed it (ErrFull), PushUnbounded
	// does not. Zero or less means no limit.
	Limit int
	// Weight is an item's share of Limit; nil counts 1 per item.
	Weight func(T) int
	// FullAt, when positive, makes Full ready once FullAt items wait.
	FullAt int
}

// Queue is a multi-producer, single-consumer batching queue. Create one
// with New.
type Queue[T any] struct {
	cfg   Config[T]
	ready chan struct{} // a token: something to take
	full  chan struct{} // a token: FullAt items wait; nil without FullAt
	done  chan struct{} // closed by Close

	mu     sync.Mutex
	items  []T
	weight int
	woken  bool // ready was signalled since the last Take
	closed bool
}

// New returns an empty queue configured by cfg.
func New[T any](cfg Config[T]) *Queue[T] {
	q := &Queue[T]{cfg: cfg, ready: make(chan struct{}, 1), done: make(chan struct{})}
	if cfg.FullAt > 0 {
		q.full = make(chan struct{}, 1)
	}
	return q
}

func signal(c chan struct{}) {
	select {
	case c <- struct{}{}:
	default:
	}
}

func drain(c chan struct{}) {
	select {
	case <-c:
	default:
	}
}

// Push appends v, unless the queue is closed (ErrClosed) or v would take
// it over its Limit (ErrFull). It never blocks.
func (q *Queue[T]) Push(v T) error { return q.push(v, true, false) }

// PushUnbounded appends v even when that takes the queue over its Limit
// (control messages that must not be refused); it fails only after Close.
func (q *Queue[T]) PushUnbounded(v T) error { return q.push(v, false, false) }

// PushAndClose appends v, ignoring the Limit, and closes the queue in the
// same step: v is the last item the consumer takes. It fails when the
// queue is already closed.
func (q *Queue[T]) PushAndClose(v T) error { return q.push(v, false, true) }

func (q *Queue[T]) push(v T, bounded, andClose bool) error {
	w := 1
	if q.cfg.Weight != nil && q.cfg.Limit > 0 {
		w = q.cfg.Weight(v)
	}
	q.mu.Lock()
	if q.closed {
		q.mu.Unlock()
		return ErrClosed
	}
	if bounded && q.cfg.Limit > 0 && q.weight+w > q.cfg.Limit {
		q.mu.Unlock()
		return ErrFull
	}
	q.items = append(q.items, v)
	q.weight += w
	// The consumer is woken once per Take, outside mu so that it does not
	// wake into a held lock.
	wake := !q.woken
	q.woken = true
	full := q.full != nil && len(q.items) == q.cfg.FullAt
	if andClose {
		q.closeLocked()
	}
	q.mu.Unlock()
	if wake {
		signal(q.ready)
	}
	if full {
		signal(q.full)
	}
	return nil
}

// Close closes the queue: Push fails from now on, and the consumer's next
// Take returns what is still queued and reports closed. It reports whether
// this call closed the queue.
func (q *Queue[T]) Close() bool {
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.closed {
		return false
	}
	q.closeLocked()
	return true
}

func (q *Queue[T]) closeLocked() {
	q.closed = true
	close(q.done)
	signal(q.ready)
}

// Discard closes the queue and drops what it holds: a consumer that is
// gone calls it to release the items.
func (q *Queue[T]) Discard() {
	q.mu.Lock()
	defer q.mu.Unlock()
	if !q.closed {
		q.closeLocked()
	}
	clear(q.items)
	q.items, q.weight = nil, 0
}

// Len returns how many items wait to be taken (for metrics: the answer
// may be stale at once).
func (q *Queue[T]) Len() int {
	q.mu.Lock()
	defer q.mu.Unlock()
	return len(q.items)
}

// Ready is ready while items were queued since the last Take, and once
// the queue is closed. Rarely (a Push signalling just after a Take that
// took its item) it is ready with nothing to take: Take then returns an
// empty batch. Only the consumer receives from it.
func (q *Queue[T]) Ready() <-chan struct{} { return q.ready }

// Full is ready once FullAt items wait (since the last Take; rarely, as
// Ready, with fewer); it is nil, never ready, without FullAt.
func (q *Queue[T]) Full() <-chan struct{} { return q.full }

// Done is closed when the queue is closed.
func (q *Queue[T]) Done() <-chan struct{} { return q.done }

// Take returns every item queued since the last Take, in the order they
// were pushed, and whether the queue is closed (then nothing follows the
// items returned). done is the batch the consumer has finished with (the
// previous Take's result, or nil): Take clears it and queues the next items
// into it, so the caller must not use it any more. Only one goroutine, the
// consumer, calls Take.
func (q *Queue[T]) Take(done []T) (batch []T, closed bool) {
	clear(done) // let the items go
	q.mu.Lock()
	defer q.mu.Unlock()
	batch, closed = q.items, q.closed
	q.woken = false
	if !closed {
		q.items = done[:0]
		drain(q.ready)
	} else {
		q.items = nil
		signal(q.ready) // stays ready: there is nothing more to wait for
	}
	if q.full != nil {
		drain(q.full)
	}
	q.weight = 0
	return batch, closed
}
