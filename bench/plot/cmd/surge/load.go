package main

import (
	"context"
	"errors"
	"io"
	"math"
	"net/http"
	"net/url"
	"strconv"
	"sync"
	"time"

	"github.com/tierlimit/tierlimit/bench/plot/internal/loadrun"
	"github.com/tierlimit/tierlimit/bench/plot/surge"
)

// load sends GET /test open-loop: each tier's requests leave on a fixed
// schedule per phase whatever the answers, its keys taking turns, and
// every request goes to the next target in turn, as a round-robin load
// balancer sends them. Outcomes go to count by the second each request
// was due, and its latency runs from then: a stall of this process shows
// as latency, and how late requests left is kept apart (lagMax, late).
type load struct {
	// Senders bound the requests in flight (one due when none is free is
	// not sent, and counts as unsent) and keep how late they left.
	*loadrun.Senders
	client  *http.Client
	count   *surge.Counter
	path    string        // GET /test?work=
	timeout time.Duration // the longest a request waits for its answer

	// backoff, if not nil, holds for each key that got a 429 the offset
	// until which it sends nothing (its Retry-After): the client honours
	// Retry-After.
	mu      sync.Mutex
	backoff map[string]time.Duration
}

// waiting reports whether key waits out a Retry-After at offset at.
func (l *load) waiting(key string, at time.Duration) bool {
	if l.backoff == nil {
		return false
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	return at < l.backoff[key]
}

// backOff makes key send nothing until offset until, if that is later
// than it waits already.
func (l *load) backOff(key string, until time.Duration) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.backoff[key] = max(l.backoff[key], until)
}

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
			if !l.WaitDue(ctx, timer, at) {
				return
			}
			key := tl.keys[k%len(tl.keys)]
			k++
			if l.waiting(key, at) {
				l.count.Add(tl.name, surge.Offset(at), surge.Outcome{Deferred: true})
				continue
			}
			if !l.Go(func() { l.send(ctx, tl.name, key, at) }) {
				l.count.Add(tl.name, surge.Offset(at), surge.Outcome{Unsent: true, Latency: time.Since(l.Start().Add(at))})
			}
		}
	}
}

// send sends one request of tier with key, due at offset due, and counts
// what came of it, unless ctx ended first (an interrupted run counts
// nothing more).
func (l *load) send(ctx context.Context, tier, key string, due time.Duration) {
	target := l.Leave(due)
	o := l.do(ctx, target, key)
	if ctx.Err() != nil {
		return
	}
	o.Latency = time.Since(l.Start().Add(due))
	if l.backoff != nil && o.RetryAfter > 0 {
		l.backOff(key, due+o.Latency+time.Duration(o.RetryAfter)*time.Second)
	}
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
	o := surge.Outcome{Status: resp.StatusCode}
	if resp.StatusCode == http.StatusTooManyRequests {
		o.RetryAfter, _ = strconv.Atoi(resp.Header.Get("Retry-After"))
	}
	return o
}
