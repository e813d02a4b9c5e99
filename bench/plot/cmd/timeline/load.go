package main

import (
	"context"
	"encoding/json"
	"io"
	"math"
	"net/http"
	"net/url"
	"strconv"
	"time"

	"github.com/tierlimit/tierlimit/api"
	"github.com/tierlimit/tierlimit/bench/plot/internal/loadrun"
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
	// Senders bound the requests in flight (one that finds no slot is not
	// sent and counts as failed) and keep how late they left.
	*loadrun.Senders
	client *http.Client
	count  *timeline.Counter
	work   time.Duration // each job's length, GET /test?work=; 0 for none
}

// run sends tl's load for d from l.Start(): tl.rate requests per second, the
// i-th at l.Start() + phase + i/rate with tl.keys[i % len(keys)]. It returns
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
		if !l.WaitDue(ctx, timer, at) {
			return
		}
		key := keys[i%len(keys)]
		if !l.Go(func() { l.send(ctx, tl, path, key, at) }) {
			l.count.Add(tier, timeline.Offset(at), timeline.Outcome{Status: timeline.NoResponse})
		}
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
	target := l.Leave(due)
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
