package loadrun

import (
	"context"
	"sync"
	"sync/atomic"
	"time"
)

// LateAfter is how late a request may leave before it counts as late.
const LateAfter = 50 * time.Millisecond

// Senders keep the books of an open-loop load: requests due on a fixed
// schedule from Start, each to the next target in turn (as a round-robin
// load balancer sends them), at most a bound of them in flight, and how
// late they left. It is safe for concurrent use.
type Senders struct {
	targets []string
	start   time.Time
	// slots bounds the requests in flight.
	slots chan struct{}

	next   atomic.Uint64 // the next target, modulo len(targets)
	lagMax atomic.Int64  // the latest a request left after it was due, ns
	late   atomic.Int64  // requests that left more than LateAfter late
	wg     sync.WaitGroup
}

// NewSenders returns Senders to targets from start with at most
// maxInFlight requests in flight.
func NewSenders(targets []string, start time.Time, maxInFlight int) *Senders {
	return &Senders{targets: targets, start: start, slots: make(chan struct{}, maxInFlight)}
}

// Start returns the time of offset 0.
func (s *Senders) Start() time.Time { return s.start }

// WaitDue waits, on timer, until the request due at offset at is due; it
// reports false if ctx ended first.
func (s *Senders) WaitDue(ctx context.Context, timer *time.Timer, at time.Duration) bool {
	timer.Reset(time.Until(s.start.Add(at)))
	select {
	case <-ctx.Done():
		return false
	case <-timer.C:
		return true
	}
}

// Go runs send in its own goroutine if a request may be in flight, and
// reports whether it did: false if the bound is reached.
func (s *Senders) Go(send func()) bool {
	select {
	case s.slots <- struct{}{}:
	default:
		return false
	}
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		defer func() { <-s.slots }()
		send()
	}()
	return true
}

// Leave returns the target of a request leaving now, due at offset due,
// and notes how late it left.
func (s *Senders) Leave(due time.Duration) string {
	target := s.targets[(s.next.Add(1)-1)%uint64(len(s.targets))]
	if lag := time.Since(s.start.Add(due)); lag > 0 {
		if lag > LateAfter {
			s.late.Add(1)
		}
		storeMax(&s.lagMax, int64(lag))
	}
	return target
}

// Wait waits until every request sent has been answered or has failed.
func (s *Senders) Wait() { s.wg.Wait() }

// LagMax returns the latest a request left after it was due.
func (s *Senders) LagMax() time.Duration { return time.Duration(s.lagMax.Load()) }

// Late returns how many requests left more than LateAfter late.
func (s *Senders) Late() int { return int(s.late.Load()) }

// storeMax sets a to v if v is larger.
func storeMax(a *atomic.Int64, v int64) {
	for {
		old := a.Load()
		if v <= old || a.CompareAndSwap(old, v) {
			return
		}
	}
}
