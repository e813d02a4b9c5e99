package main

import (
	"context"
	"errors"
	"io"
	"math"
	"net/http"
	"net/url"
	"sync"
	"sync/atomic"
	"time"

	"github.com/tierlimit/tierlimit/bench/plot/surge"
)

// load sends GET /test open-loop: each tier's requests leave on a fixed
// schedule per phase whatever the answers, its keys taking turns, and
// every request goes to the next target in turn, as a round-robin load
// balancer sends them. Outcomes go to count by the second each request
// was due, and its latency runs from then: a stall of this process shows
// as latency, and how late requests left is kept apart (lagMax, late).
type load struct {
	client  *http.Client
	targets []string
	start   time.Time
	count   *surge.Counter
	path    string        // GET /test?work=
	timeout time.Duration // the longest a request waits for its answer
	// slots bounds the requests in flight; one due when none is free is
	// not sent, and counts as unsent.
	slots chan struct{}

	next   atomic.Uint64 // the next target, modulo len(targets)
	lagMax atomic.Int64  // the latest a request left after it was due, ns
	late   atomic.Int64  // requests that left more than lateAfter late
	wg     sync.WaitGroup
}

// lateAfter is how late a request may leave before it counts as late.
const lateAfter = 50 * time.Millisecond

// jobPath returns GET /test's path and query for jobs of work.
func jobPath(work time.Duration) string {
	if work <= 0 {
		return "/test"
	}
	return "/test?" + url.Values{"work": {work.String()}}.Encode()
}

// dueTimes returns the offsets at which a tier's requests are due in a
// phase [start, end) at rate per second: the i-th at start + shift/rate +
// i/rate, shift in [0, 1) (tiers a fraction of an interval apart, so that
// their requests do not all leave at once).
func dueTimes(start, end time.Duration, rate, shift float64) []time.Duration {
	if rate <= 0 {
		return nil
	}
	var out []time.Duration
	for i := 0; ; i++ {
		// Each from i itself, so that rounding does not add up.
		at := start + time.Duration(math.Round((float64(i)+shift)*float64(time.Second)/rate))
		if at >= end {
			return out
		}
		out = append(out, at)
	}
}

// run sends tl's load over phases, the tier being the i-th of n. It
// returns when its last request has left; wait waits for the answers.
func (l *load) run(ctx context.Context, tl tierLoad, phases []surge.Phase, i, n int) {
	timer := time.NewTimer(time.Hour) // reset before every wait
	defer timer.Stop()
	k := 0 // the next key
	for _, p := range phases {
		for _, at := range dueTimes(p.Start.Duration(), p.End.Duration(), p.Rates[tl.name], float64(i)/float64(n)) {
			timer.Reset(time.Until(l.start.Add(at)))
			select {
			case <-ctx.Done():
				return
			case <-timer.C:
			}
			key := tl.keys[k%len(tl.keys)]
			k++
			select {
			case l.slots <- struct{}{}:
			default:
				l.count.Add(tl.name, surge.Offset(at), surge.Outcome{Unsent: true, Latency: time.Since(l.start.Add(at))})
				continue
			}
			l.wg.Add(1)
			go func() {
				defer l.wg.Done()
				defer func() { <-l.slots }()
				l.send(ctx, tl.name, key, at)
			}()
		}
	}
}

// send sends one request of tier with key, due at offset due, and counts
// what came of it, unless ctx ended first (an interrupted run counts
// nothing more).
func (l *load) send(ctx context.Context, tier, key string, due time.Duration) {
	target := l.targets[(l.next.Add(1)-1)%uint64(len(l.targets))]
	dueAt := l.start.Add(due)
	if lag := time.Since(dueAt); lag > 0 {
		if lag > lateAfter {
			l.late.Add(1)
		}
		storeMax(&l.lagMax, int64(lag))
	}
	o := l.do(ctx, target, key)
	if ctx.Err() != nil {
		return
	}
	o.Latency = time.Since(dueAt)
	l.count.Add(tier, surge.Offset(due), o)
}

// do sends the request and reads its answer within the timeout.
func (l *load) do(ctx context.Context, target, key string) surge.Outcome {
	reqCtx, cancel := context.WithTimeout(ctx, l.timeout)
	defer cancel()
	failed := func(err error) surge.Outcome {
		return surge.Outcome{Status: surge.NoResponse, TimedOut: errors.Is(err, context.DeadlineExceeded) || reqCtx.Err() == context.DeadlineExceeded}
	}
	req, err := http.NewRequestWithContext(reqCtx, http.MethodGet, target+l.path, nil)
	if err != nil {
		return failed(err)
	}
	req.Header.Set("X-API-Key", key)
	resp, err := l.client.Do(req)
	if err != nil {
		return failed(err)
	}
	defer resp.Body.Close()
	// The whole answer, so that the connection is reused and the latency
	// covers it.
	if _, err := io.Copy(io.Discard, io.LimitReader(resp.Body, 1<<20)); err != nil {
		return failed(err)
	}
	return surge.Outcome{Status: resp.StatusCode}
}

// wait waits until every request sent has been answered or has failed.
func (l *load) wait() { l.wg.Wait() }

// storeMax sets a to v if v is larger.
func storeMax(a *atomic.Int64, v int64) {
	for {
		old := a.Load()
		if v <= old || a.CompareAndSwap(old, v) {
			return
		}
	}
}
