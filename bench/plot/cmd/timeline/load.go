package main

import (
	"context"
	"io"
	"math"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/tierlimit/tierlimit/bench/plot/timeline"
)

// load sends GET /test open-loop: each tier's requests leave on a fixed
// schedule whatever the answers, its keys taking turns, and every request
// goes to the next target in turn, as a round-robin load balancer sends
// them. Outcomes go to count by the time each request was due, so a stall
// of this process (a busy machine) does not show as a dip in the load;
// how late requests left is kept apart (lagMax, late).
type load struct {
	client  *http.Client
	targets []string
	start   time.Time
	count   *timeline.Counter
	// slots bounds the requests in flight; one that finds no slot is not
	// sent and counts as failed.
	slots chan struct{}

	next   atomic.Uint64 // the next target, modulo len(targets)
	lagMax atomic.Int64  // the latest a request left after it was due, ns
	late   atomic.Int64  // requests that left more than lateAfter after they were due
	wg     sync.WaitGroup
}

// lateAfter is how late a request may leave before it counts as late.
const lateAfter = 50 * time.Millisecond

// run sends l's share of tier's load for d from l.start: rate requests per
// second, the i-th at l.start + phase + i/rate with keys[i % len(keys)]. It
// returns when the last one has left; wait waits for their answers.
func (l *load) run(ctx context.Context, tier string, keys []string, rate float64, phase, d time.Duration) {
	timer := time.NewTimer(time.Hour) // reset before every wait
	defer timer.Stop()
	for i := 0; ; i++ {
		// Each due time from i itself, so that rounding does not add up
		// (the 60th request at 60/s is due at 1 s, not 16.666666 ms × 60).
		at := phase + time.Duration(math.Round(float64(i)*float64(time.Second)/rate))
		if at >= d {
			return
		}
		timer.Reset(time.Until(l.start.Add(at)))
		select {
		case <-ctx.Done():
			return
		case <-timer.C:
		}
		select {
		case l.slots <- struct{}{}:
		default:
			l.count.Add(tier, timeline.Offset(at), timeline.Outcome{Status: timeline.NoResponse})
			continue
		}
		l.wg.Add(1)
		go func(key string) {
			defer l.wg.Done()
			defer func() { <-l.slots }()
			l.send(ctx, tier, key, at)
		}(keys[i%len(keys)])
	}
}

// send sends one request with key, due at offset due, and counts its
// outcome, unless ctx ended first (an interrupted run counts nothing
// more).
func (l *load) send(ctx context.Context, tier, key string, due time.Duration) {
	target := l.targets[(l.next.Add(1)-1)%uint64(len(l.targets))]
	if lag := time.Since(l.start) - due; lag > 0 {
		if lag > lateAfter {
			l.late.Add(1)
		}
		storeMax(&l.lagMax, int64(lag))
	}
	sent := timeline.Offset(due)
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, target+"/test", nil)
	if err != nil {
		l.count.Add(tier, sent, timeline.Outcome{Status: timeline.NoResponse})
		return
	}
	req.Header.Set("X-API-Key", key)
	resp, err := l.client.Do(req)
	if ctx.Err() != nil {
		if err == nil {
			resp.Body.Close()
		}
		return
	}
	if err != nil {
		l.count.Add(tier, sent, timeline.Outcome{Status: timeline.NoResponse})
		return
	}
	_, _ = io.Copy(io.Discard, resp.Body) // so the connection is reused
	resp.Body.Close()
	limit, _ := strconv.Atoi(resp.Header.Get("X-RateLimit-Limit"))
	l.count.Add(tier, sent, timeline.Outcome{Status: resp.StatusCode, Limit: limit})
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
