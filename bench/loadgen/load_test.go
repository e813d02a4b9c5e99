package main

import (
	"bytes"
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"net/url"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// handlerTransport answers requests in memory with h after delay, or fails
// them when h is nil by waiting for the request's context to end.
type handlerTransport struct {
	h     http.Handler
	delay time.Duration
}

func (tr handlerTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	if tr.h == nil {
		<-req.Context().Done()
		return nil, req.Context().Err()
	}
	time.Sleep(tr.delay)
	rec := httptest.NewRecorder()
	tr.h.ServeHTTP(rec, req)
	return rec.Result(), nil
}

// testLoader returns a loader for args whose requests go to tr, over the
// shipped tiers file and targets a and b.
func testLoader(t *testing.T, tr http.RoundTripper, args ...string) *loader {
	t.Helper()
	o, err := parseOptions(append(args, "-targets", "http://a,http://b"), &bytes.Buffer{})
	require.NoError(t, err)
	tf := shippedTiers(t)
	p, err := newPlan(tf, tf, o.mix, o.keys, o.accuracyKeys)
	require.NoError(t, err)
	l := newLoader(o, p, newStaticTargets(o.targets))
	l.client.Transport = tr
	return l
}

func TestLoaderRateAndDuration(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		em := newEmulator(t, "../../config/tiers.json", 0)
		l := testLoader(t, handlerTransport{h: em, delay: 5 * time.Millisecond},
			"-rate", "100", "-d", "1s", "-c", "4", "-mix", "free=100", "-accuracy-keys", "1")
		s, elapsed := l.run(t.Context(), nil)

		// Due at i × 10 ms for i × 10 ms < 1 s: 100 requests; the last is
		// due at 990 ms and takes 5 ms.
		assert.Equal(t, 995*time.Millisecond, elapsed)
		assert.Equal(t, counts{outcomeOK: 3 * 20, outcomeLimited: 100 - 3*20}, s.outcomes)
		assert.Equal(t, 5*time.Millisecond, s.latency.Quantile(0.5))
		assert.Equal(t, 5*time.Millisecond, s.latency.Quantile(0.999))
		assert.Equal(t, map[string]*counts{
			"http://a": {outcomeOK: 30, outcomeLimited: 20},
			"http://b": {outcomeOK: 30, outcomeLimited: 20},
		}, s.targets)
		assert.Equal(t, keyStats{outcomes: counts{outcomeOK: 20, outcomeLimited: 14}, limits: []int{20}, maxRemaining: 19}, s.keys[0])
	})
}

func TestLoaderMethodAndPath(t *testing.T) {
	var (
		mu   sync.Mutex
		seen []string
	)
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		seen = append(seen, r.Method+" "+r.URL.String()+" key="+r.Header.Get("X-API-Key"))
		mu.Unlock()
	})
	l := testLoader(t, handlerTransport{h: h}, "-n", "2", "-c", "1", "-mix", "pro=100", "-keys", "1",
		"-method", "POST", "-path", "/v1/upload?x=1")
	s, _ := l.run(t.Context(), nil)
	assert.Equal(t, counts{outcomeOK: 2}, s.outcomes)
	assert.Equal(t, []string{"POST http://a/v1/upload?x=1 key=pro-demo-1", "POST http://b/v1/upload?x=1 key=pro-demo-1"}, seen)
}

func TestLoaderCountAndConcurrency(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		em := newEmulator(t, "../../config/tiers.json", 0)
		l := testLoader(t, handlerTransport{h: em, delay: 5 * time.Millisecond}, "-n", "10", "-c", "3")
		s, elapsed := l.run(t.Context(), nil)
		assert.Equal(t, uint64(10), s.outcomes.total())
		assert.Equal(t, 20*time.Millisecond, elapsed, "3 workers, 10 requests of 5 ms: 4 rounds")
	})
}

func TestLoaderDurationWithoutRate(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		em := newEmulator(t, "../../config/tiers.json", 0)
		l := testLoader(t, handlerTransport{h: em, delay: 5 * time.Millisecond}, "-d", "100ms", "-c", "2")
		s, elapsed := l.run(t.Context(), nil)
		assert.Equal(t, uint64(40), s.outcomes.total(), "2 workers × 100 ms / 5 ms")
		assert.Equal(t, 100*time.Millisecond, elapsed)
	})
}

func TestLoaderTimeout(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		l := testLoader(t, handlerTransport{}, "-n", "3", "-c", "1", "-timeout", "50ms")
		s, elapsed := l.run(t.Context(), nil)
		assert.Equal(t, counts{outcomeTransport: 3}, s.outcomes)
		assert.Equal(t, map[string]uint64{"timeout (-timeout)": 3}, s.errors)
		assert.Zero(t, s.latency.Count(), "no response, no latency")
		assert.Equal(t, 150*time.Millisecond, elapsed)
	})
}

func TestLoaderProgress(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		em := newEmulator(t, "../../config/tiers.json", 0)
		l := testLoader(t, handlerTransport{h: em, delay: 3 * time.Millisecond}, "-d", "2500ms", "-c", "1", "-mix", "free=100")
		var progress bytes.Buffer
		l.run(t.Context(), &progress)
		// 3 free keys of limit 20: the first 60 requests are admitted.
		assert.Equal(t, "[   1.0s] requests 333  333 req/s  429s 273  errors 0\n"+
			"[   2.0s] requests 666  333 req/s  429s 606  errors 0\n", progress.String())
	})
}

func TestLoaderCanceled(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		ctx, cancel := context.WithCancel(t.Context())
		l := testLoader(t, handlerTransport{}, "-d", "10s", "-c", "2")
		time.AfterFunc(time.Second, cancel)
		s, elapsed := l.run(ctx, nil)
		assert.Equal(t, counts{outcomeCanceled: 2}, s.outcomes)
		assert.Equal(t, time.Second, elapsed)
	})
}

func TestProgressLine(t *testing.T) {
	assert.Equal(t, "[   3.0s] requests 12345  4100 req/s  429s 200  errors 1",
		progressLine(3*time.Second, 12345, 4100, time.Second, 200, 1))
	assert.Equal(t, "[1234.5s] requests 0  0 req/s  429s 0  errors 0",
		progressLine(1234500*time.Millisecond, 0, 0, 0, 0, 0))
}

func TestHeaderInt(t *testing.T) {
	h := http.Header{}
	h.Set("A", "20")
	h.Set("B", "x")
	h.Set("C", "-3")
	assert.Equal(t, []int{20, -1, -1, -1}, []int{headerInt(h, "A"), headerInt(h, "B"), headerInt(h, "C"), headerInt(h, "D")})
}

func TestTransportError(t *testing.T) {
	assert.Equal(t, "timeout (-timeout)", transportError(&url.Error{Op: "Get", URL: "http://a/test", Err: context.DeadlineExceeded}))
	assert.Equal(t, "connection refused", transportError(&url.Error{Op: "Get", URL: "http://a/test", Err: errors.New("connection refused")}))
	assert.Equal(t, "other", transportError(errors.New("other")))
}

func TestSleepUntil(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		start := time.Now()
		assert.True(t, sleepUntil(t.Context(), start.Add(-time.Second)), "the past is now")
		assert.True(t, sleepUntil(t.Context(), start.Add(time.Second)))
		assert.Equal(t, time.Second, time.Since(start))
		ctx, cancel := context.WithCancel(t.Context())
		cancel()
		assert.False(t, sleepUntil(ctx, time.Now().Add(time.Hour)))
		assert.False(t, sleepUntil(ctx, time.Now()))
	})
}
