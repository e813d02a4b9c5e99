package forward

import (
	"math/bits"
	"sync/atomic"
	"time"
)

// The adaptive deadline's rule.
const (
	// rttFactor: the deadline is this many times the recent p99 round
	// trip (read from a bucket's upper edge, so 2 to 4 times the true one).
	rttFactor = 2
	// rttMinSamples: fewer round trips than this in the last two periods
	// leave the deadline as it was. Package ownership's Router records
	// its pings too, so a pair of nodes that forwards little (leases spare
	// most round trips) still has a few a second.
	rttMinSamples = 16
	// rttBuckets is the number of power-of-two microsecond buckets: the
	// last one holds everything from about 1 s.
	rttBuckets = 21
)

// Deadline is the adaptive deadline of the checks forwarded to one peer:
// it keeps their recent round trips, in power-of-two buckets for this
// period and the one before, and the deadline they give, twice the p99
// within a minimum and a maximum. Recording is one atomic add; Roll moves
// the periods on. A Deadline is safe for concurrent use; make one with
// NewDeadline.
type Deadline struct {
	min, max time.Duration
	cur      [rttBuckets]atomic.Uint64
	prev     [rttBuckets]uint64 // touched only by Roll, which runs on one goroutine
	deadline atomic.Int64       // nanoseconds
}

// NewDeadline returns a Deadline that stays within [min, max] and starts
// at max, before it has seen any round trip.
func NewDeadline(min, max time.Duration) *Deadline {
	t := &Deadline{min: min, max: max}
	t.deadline.Store(int64(max))
	return t
}

// bucketOf returns the bucket of a round trip of d: bucket i holds round
// trips of up to 2^i µs.
func bucketOf(d time.Duration) int {
	us := uint64(max(d, 0) / time.Microsecond)
	return min(bits.Len64(us), rttBuckets-1)
}

// Record notes one round trip of d. A check that gave up at its deadline
// records the deadline: the round trip took at least that.
func (t *Deadline) Record(d time.Duration) { t.cur[bucketOf(d)].Add(1) }

// Timeout returns the deadline for the next check.
func (t *Deadline) Timeout() time.Duration { return time.Duration(t.deadline.Load()) }

// BackOff doubles the deadline, up to the maximum, after a check gave up at
// the deadline was: a load that comes on suddenly raises it within a few
// checks instead of at the end of the period, as TCP backs off its
// retransmission timer.
func (t *Deadline) BackOff(was time.Duration) {
	next := int64(min(2*was, t.max))
	for {
		cur := t.deadline.Load()
		if cur >= next || t.deadline.CompareAndSwap(cur, next) {
			return
		}
	}
}

// Roll ends the current period: the deadline becomes rttFactor times the
// p99 of this period's and the last one's round trips, within [min, max],
// if there were enough of them. Call it from one goroutine only (package
// ownership's Router does, every second).
func (t *Deadline) Roll() {
	var counts [rttBuckets]uint64
	var n uint64
	for i := range t.cur {
		c := t.cur[i].Swap(0)
		counts[i] = c + t.prev[i]
		t.prev[i] = c
		n += counts[i]
	}
	if n < rttMinSamples {
		return
	}
	// The bucket holding the 99th percentile: fewer than 1% above it.
	above, i := uint64(0), rttBuckets-1
	for ; i > 0; i-- {
		if above+counts[i] > n/100 {
			break
		}
		above += counts[i]
	}
	upper := time.Duration(uint64(1)<<i) * time.Microsecond
	t.deadline.Store(int64(min(max(rttFactor*upper, t.min), t.max)))
}
