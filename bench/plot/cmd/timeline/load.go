package main

import (
	"context"
	"encoding/json"
	"io"
	"math"
	"net/http"
	"net/url"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/tierlimit/tierlimit/api"
	"github.com/tierlimit/tierlimit/bench/plot/timeline"
)

// load sends GET /test open-loop: each tier's requests leave on a fixed
// schedule whatever the answers, its keys taking turns, and every request
// goes to the next target in turn, as a round-robin load balancer sends
// them. Each is a job of its tier's: its estimate in Tierlimit-Cost, its
// cost and the run's work in the query. Outcomes go to count by the time
// each request was due, so a stall of this process (a busy machine) does
// not show as a dip in the load; how late requests left is kept apart
// (lagMax, late).
type load struct {
	client  *http.Client
	targets []string
	start   time.Time
	count   *timeline.Counter
	work    time.Duration // each job's length, GET /test?work=; 0 for none
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

// run sends tl's load for d from l.start: tl.rate requests per second, the
// i-th at l.start + phase + i/rate with tl.keys[i % len(keys)]. It returns
// when the last one has left; wait waits for their answers.
func (l *load) run(ctx context.Context, tl tierLoad, phase, d time.Duration) {
	tier, keys, rate := tl.tier.Name, tl.keys, tl.rate
	path := l.path(tl)
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
			l.send(ctx, tl, path, key, at)
		}(keys[i%len(keys)])
	}
}

// path returns the path and query of tl's requests: GET /test, with the
// run's work and tl's cost if there are.
func (l *load) path(tl tierLoad) string {
	q := url.Values{}
	if l.work > 0 {
		q.Set("work", l.work.String())
	}
	if tl.cost >= 0 {
		q.Set("cost", strconv.Itoa(tl.cost))
	}
	if len(q) == 0 {
		return "/test"
	}
	return "/test?" + q.Encode()
}

// maxBody bounds what is read of a 429's body.
const maxBody = 4 << 10

// send sends one request of tl to path with key, due at offset due, and
// counts its outcome, unless ctx ended first (an interrupted run counts
// nothing more).
func (l *load) send(ctx context.Context, tl tierLoad, path, key string, due time.Duration) {
	tier := tl.tier.Name
	target := l.targets[(l.next.Add(1)-1)%uint64(len(l.targets))]
	if lag := time.Since(l.start) - due; lag > 0 {
		if lag > lateAfter {
			l.late.Add(1)
		}
		storeMax(&l.lagMax, int64(lag))
	}
	sent := timeline.Offset(due)
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, target+path, nil)
	if err != nil {
		l.count.Add(tier, sent, timeline.Outcome{Status: timeline.NoResponse})
		return
	}
	req.Header.Set("X-API-Key", key)
	if tl.estimate > 0 {
		req.Header.Set(api.HeaderCost, strconv.Itoa(tl.estimate))
	}
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
	o := timeline.Outcome{Status: resp.StatusCode}
	o.Limit, _ = strconv.Atoi(resp.Header.Get("X-RateLimit-Limit"))
	switch resp.StatusCode {
	case http.StatusOK:
		o.Cost = tl.charged()
	case http.StatusTooManyRequests:
		o.RefusedBy = refusedBy(io.LimitReader(resp.Body, maxBody))
	}
	_, _ = io.Copy(io.Discard, resp.Body) // so the connection is reused
	resp.Body.Close()
	l.count.Add(tier, sent, o)
}

// refusedBy returns the limit a 429's body names ("limit" in api.ErrorBody),
// empty if it names none or is not JSON.
func refusedBy(body io.Reader) string {
	var b api.ErrorBody
	if err := json.NewDecoder(body).Decode(&b); err != nil {
		return ""
	}
	return b.Error.Limit
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
