package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"runtime"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
)

// maxBody is how much of a response body is read before the connection is
// given back; the limiter's bodies are a few hundred bytes.
const maxBody = 64 << 10

// progressInterval is how often a progress line is printed.
const progressInterval = time.Second

// loader runs the load: its workers send the requests the plan says, to the
// targets, and record what came back. It is built for one run.
type loader struct {
	opts    options
	plan    *plan
	targets *targetSet
	client  *http.Client

	// seq hands out request sequence numbers, from 0.
	seq atomic.Uint64
	// Running totals for the progress line.
	done, limited, failed atomic.Uint64

	// shards spread the recording of results over a few locks, so that
	// memory (a histogram per shard) does not grow with -c.
	shards []statsShard
}

// statsShard is one lock's worth of stats.
type statsShard struct {
	// mu guards s.
	mu sync.Mutex
	s  *stats
}

// newLoader returns a loader for o, p and ts, with an HTTP client that
// keeps a connection per worker and per target alive.
func newLoader(o options, p *plan, ts *targetSet) *loader {
	transport := &http.Transport{
		// No proxy from the environment: the load goes to the targets.
		Proxy:               nil,
		DialContext:         (&net.Dialer{Timeout: o.timeout, KeepAlive: 30 * time.Second}).DialContext,
		MaxIdleConns:        0, // no total limit; per host below
		MaxIdleConnsPerHost: o.concurrency,
		IdleConnTimeout:     90 * time.Second,
		DisableCompression:  true,
	}
	l := &loader{
		opts:    o,
		plan:    p,
		targets: ts,
		client: &http.Client{
			Transport: transport,
			// A 3xx is an answer to count, not a hop to follow.
			CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
		},
		shards: make([]statsShard, min(o.concurrency, 2*runtime.GOMAXPROCS(0))),
	}
	for i := range l.shards {
		l.shards[i].s = newStats(len(p.tiers), len(p.accuracy))
	}
	return l
}

// run sends the load until -n requests were sent, -d passed, or ctx ends,
// printing progress on progress (nil: none). In-flight requests finish when
// -n or -d ends the run, so every request that reached a node is counted;
// when ctx ends they are cancelled. It returns the merged stats and how
// long the run took.
func (l *loader) run(ctx context.Context, progress io.Writer) (*stats, time.Duration) {
	defer l.client.CloseIdleConnections()
	start := time.Now()
	var deadline time.Time
	if l.opts.duration > 0 {
		deadline = start.Add(l.opts.duration)
	}
	var workers sync.WaitGroup
	for w := range l.opts.concurrency {
		shard := &l.shards[w%len(l.shards)]
		workers.Go(func() { l.work(ctx, start, deadline, shard) })
	}
	stop := make(chan struct{})
	var reporter sync.WaitGroup
	if progress != nil {
		reporter.Go(func() { l.report(start, stop, progress) })
	}
	workers.Wait()
	elapsed := time.Since(start)
	close(stop)
	reporter.Wait()

	total := newStats(len(l.plan.tiers), len(l.plan.accuracy))
	for i := range l.shards {
		total.merge(l.shards[i].s)
	}
	return total, elapsed
}

// work is one worker: it takes sequence numbers until the run ends and
// sends one request for each.
func (l *loader) work(ctx context.Context, start, deadline time.Time, shard *statsShard) {
	for {
		i := l.seq.Add(1) - 1
		if l.opts.requests > 0 && i >= uint64(l.opts.requests) {
			return
		}
		if l.opts.rate > 0 {
			// Request i is due at i / rate seconds: a schedule, not a
			// bucket, so that workers need not talk to each other.
			due := start.Add(time.Duration(float64(i) * float64(time.Second) / l.opts.rate))
			if !deadline.IsZero() && !due.Before(deadline) {
				return
			}
			if !sleepUntil(ctx, due) {
				return
			}
		}
		if ctx.Err() != nil || (!deadline.IsZero() && !time.Now().Before(deadline)) {
			return
		}
		pk := l.plan.pick(i)
		r := l.send(ctx, pk)
		shard.mu.Lock()
		shard.s.record(r)
		shard.mu.Unlock()
		l.done.Add(1)
		switch r.outcome {
		case outcomeLimited:
			l.limited.Add(1)
		case outcomeServerError, outcomeTransport:
			l.failed.Add(1)
		}
	}
}

// sleepUntil waits until t and reports whether ctx was still alive then.
func sleepUntil(ctx context.Context, t time.Time) bool {
	d := time.Until(t)
	if d <= 0 {
		return ctx.Err() == nil
	}
	timer := time.NewTimer(d)
	defer timer.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-timer.C:
		return true
	}
}

// send sends one request and returns what came of it.
func (l *loader) send(ctx context.Context, pk pick) result {
	target := l.targets.at(pk.target)
	r := result{tier: pk.tier, accuracy: pk.accuracy, target: target, limit: -1, remaining: -1}
	rctx, cancel := context.WithTimeout(ctx, l.opts.timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(rctx, l.opts.method, target+l.opts.path, nil)
	if err != nil {
		r.outcome, r.err = outcomeTransport, err.Error()
		return r
	}
	req.Header.Set("X-API-Key", pk.key)
	if l.targets.host != "" {
		req.Host = l.targets.host
	}
	sent := time.Now()
	resp, err := l.client.Do(req)
	if err != nil {
		r.outcome = outcomeTransport
		if ctx.Err() != nil {
			r.outcome = outcomeCanceled
		}
		r.err = transportError(err)
		return r
	}
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, maxBody))
	resp.Body.Close()
	r.latency = time.Since(sent)
	r.outcome = classify(resp.StatusCode)
	r.limit = headerInt(resp.Header, "X-RateLimit-Limit")
	r.remaining = headerInt(resp.Header, "X-RateLimit-Remaining")
	return r
}

// transportError returns the message of err without the method and URL
// that *url.Error adds, so that equal causes count as one kind.
func transportError(err error) string {
	if ue, ok := errors.AsType[*url.Error](err); ok {
		err = ue.Err
	}
	if errors.Is(err, context.DeadlineExceeded) {
		return "timeout (-timeout)"
	}
	return err.Error()
}

// headerInt returns the header's value as a non-negative integer, or -1.
func headerInt(h http.Header, name string) int {
	v, err := strconv.Atoi(h.Get(name))
	if err != nil || v < 0 {
		return -1
	}
	return v
}

// report prints a progress line every progressInterval until stop closes.
func (l *loader) report(start time.Time, stop <-chan struct{}, w io.Writer) {
	t := time.NewTicker(progressInterval)
	defer t.Stop()
	prev, prevAt := uint64(0), start
	for {
		select {
		case <-stop:
			return
		case now := <-t.C:
			done := l.done.Load()
			fmt.Fprintln(w, progressLine(now.Sub(start), done, done-prev, now.Sub(prevAt), l.limited.Load(), l.failed.Load()))
			prev, prevAt = done, now
		}
	}
}

// progressLine formats one progress line: elapsed time, requests done,
// the rate over the last interval (delta requests in dt), 429s and errors
// (5xx and transport errors) so far.
func progressLine(elapsed time.Duration, done, delta uint64, dt time.Duration, limited, failed uint64) string {
	rate := 0.0
	if dt > 0 {
		rate = float64(delta) / dt.Seconds()
	}
	return fmt.Sprintf("[%6.1fs] requests %d  %.0f req/s  429s %d  errors %d", elapsed.Seconds(), done, rate, limited, failed)
}
