package api

import (
	"container/list"
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"time"
)

// Queue lets at most a fixed number of admitted requests run at once (the
// jobs an instance's GPUs run at once) and holds the others until a slot
// is free, the paid ones first: a request of a sheddable tier (one whose
// DEGRADED limit is below its base limit, config.Tier.Sheddable) waits
// behind every request of the others, and each class waits in the order it
// came. A waiting request is refused when it has waited MaxWait, and a
// sheddable one when Shed is called (the cluster went DEGRADED): work
// admitted before the switch does not run ahead of the paid tiers'.
//
// A Queue is safe for concurrent use. The Middleware uses it when
// Config.Queue is set.
type Queue struct {
	maxWait time.Duration
	waited  func(sheddable bool, d time.Duration) // nil: none; see ObserveWaits

	mu      sync.Mutex
	free    int           // slots no request holds
	waiting [2]*list.List // of *waiter, by class: protected, then sheddable

	ran      atomic.Int64 // requests that got a slot after waiting
	timedOut atomic.Int64
	shed     atomic.Int64
}

// waiter is one request waiting for a slot. got receives nil when the slot
// is handed to it, or the reason it is refused.
type waiter struct{ got chan error }

// Classes of a Queue's waiters.
const (
	classProtected = iota
	classSheddable
)

var (
	// ErrQueueTimeout is Enter's refusal of a request that waited MaxWait.
	ErrQueueTimeout = errors.New("api: waited too long for a slot")
	// ErrShed is Enter's refusal of a sheddable request when Shed is called.
	ErrShed = errors.New("api: shed while waiting for a slot")
)

// NewQueue returns a Queue of capacity slots whose requests wait at most
// maxWait. It panics if either is not positive, a programming error.
func NewQueue(capacity int, maxWait time.Duration) *Queue {
	if capacity <= 0 || maxWait <= 0 {
		panic("api: NewQueue needs a positive capacity and wait")
	}
	return &Queue{maxWait: maxWait, free: capacity, waiting: [2]*list.List{list.New(), list.New()}}
}

// ObserveWaits has f called with the class and the wait of every request
// that gets a slot after waiting for it, as it gets it. Call it before the
// Queue is used.
func (q *Queue) ObserveWaits(f func(sheddable bool, waited time.Duration)) { q.waited = f }

// MaxWait is how long a request waits for a slot at most.
func (q *Queue) MaxWait() time.Duration { return q.maxWait }

// Enter takes a slot, waiting for one as long as it must, up to MaxWait.
// It returns nil when the caller holds a slot, which it gives back with
// Leave; else ErrQueueTimeout, ErrShed (sheddable only) or ctx's error, and
// the caller holds nothing.
func (q *Queue) Enter(ctx context.Context, sheddable bool) error {
	class := classProtected
	if sheddable {
		class = classSheddable
	}
	q.mu.Lock()
	if q.free > 0 {
		q.free--
		q.mu.Unlock()
		return nil
	}
	w := &waiter{got: make(chan error, 1)}
	e := q.waiting[class].PushBack(w)
	q.mu.Unlock()
	start := time.Now()

	t := time.NewTimer(q.maxWait)
	defer t.Stop()
	var why error
	select {
	case err := <-w.got:
		if err == nil {
			q.ran.Add(1)
			if q.waited != nil {
				q.waited(sheddable, time.Since(start))
			}
		}
		return err
	case <-t.C:
		why = ErrQueueTimeout
	case <-ctx.Done():
		why = ctx.Err()
	}
	q.mu.Lock()
	waiting := e.Value != nil // nothing was handed to it
	if waiting {
		q.waiting[class].Remove(e)
		e.Value = nil
	}
	q.mu.Unlock()
	if !waiting {
		// Handed a slot or refused in the same moment: a slot goes back.
		if err := <-w.got; err != nil {
			return err
		}
		q.Leave()
	}
	if why == ErrQueueTimeout { // counted once, however it ended
		q.timedOut.Add(1)
	}
	return why
}

// Leave gives back the slot Enter took: to the first waiter of the first
// class that has one, else to the free slots.
func (q *Queue) Leave() {
	q.mu.Lock()
	defer q.mu.Unlock()
	for _, l := range q.waiting {
		if e := l.Front(); e != nil {
			w := e.Value.(*waiter)
			l.Remove(e)
			e.Value = nil
			w.got <- nil
			return
		}
	}
	q.free++
}

// Shed refuses, with ErrShed, every sheddable request waiting now, and
// returns how many.
func (q *Queue) Shed() int {
	q.mu.Lock()
	defer q.mu.Unlock()
	l := q.waiting[classSheddable]
	n := l.Len()
	for e := l.Front(); e != nil; e = l.Front() {
		l.Remove(e).(*waiter).got <- ErrShed
		e.Value = nil
	}
	q.shed.Add(int64(n))
	return n
}

// QueueStats are a Queue's counts.
type QueueStats struct {
	// Waiting is the requests waiting now, by class: the tiers DEGRADED
	// leaves alone, then those it sheds.
	Waiting, WaitingSheddable int
	// Ran counts the requests that got a slot after waiting; TimedOut and
	// Shed those refused.
	Ran, TimedOut, Shed int64
}

// Stats returns q's counts.
func (q *Queue) Stats() QueueStats {
	q.mu.Lock()
	s := QueueStats{Waiting: q.waiting[classProtected].Len(), WaitingSheddable: q.waiting[classSheddable].Len()}
	q.mu.Unlock()
	s.Ran, s.TimedOut, s.Shed = q.ran.Load(), q.timedOut.Load(), q.shed.Load()
	return s
}
