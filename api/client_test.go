package api_test

import (
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/dunglas/httpsfv"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/tierlimit/tierlimit/api"
	"github.com/tierlimit/tierlimit/bucket"
	"github.com/tierlimit/tierlimit/config"
	"github.com/tierlimit/tierlimit/health"
)

// The clients below schedule on the headers alone, over a real server. The
// limiter's clock is a fake one that only they move, so "waiting until
// Reset" is setting the clock to it: exact, and no sleep.

// fakeClock is a clock that the test sets and the server's goroutines read.
type fakeClock struct{ ns atomic.Int64 }

func (c *fakeClock) Now() time.Time      { return time.Unix(0, c.ns.Load()) }
func (c *fakeClock) set(t time.Time)     { c.ns.Store(t.UnixNano()) }
func (c *fakeClock) add(d time.Duration) { c.ns.Add(int64(d)) }

// answer is what a client reads from one response.
type answer struct {
	status     int
	limit      int
	remaining  int
	reset      time.Time // X-RateLimit-Reset
	retryAfter int64     // seconds; 0 when absent
	r, t       int64     // the RateLimit item's parameters; t is -1 when absent
}

// limitedServer serves the middleware in front of a 200 on a real socket,
// with tiers.json, for one free key (burst 20 a minute), on clock.
func limitedServer(t *testing.T, clock *fakeClock) string {
	t.Helper()
	tiers, err := config.Parse([]byte(`{"window_seconds":60,
		"tiers":{"free":{"limit":10,"burst":20,"degraded":2}},
		"api_keys":{"free-key":"free"}}`))
	require.NoError(t, err)
	lim := api.NewLimiter(api.Config{
		Keys: tiers, Checker: api.Local{Store: bucket.New(bucket.Config{Window: tiers.Window})},
		Health: health.NewHolder("node-1"), Window: tiers.Window, Now: clock.Now,
	})
	srv := httptest.NewServer(lim.Middleware(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusOK)
	})))
	t.Cleanup(srv.Close)
	return srv.URL
}

// get sends one request for the free key and reads the rate-limit fields
// as a client would, RateLimit with a structured-field parser.
func get(t *testing.T, url string) answer {
	t.Helper()
	req, err := http.NewRequestWithContext(t.Context(), http.MethodGet, url, nil)
	require.NoError(t, err)
	req.Header.Set("X-API-Key", "free-key")
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	_, _ = io.Copy(io.Discard, resp.Body)
	require.NoError(t, resp.Body.Close())

	a := answer{status: resp.StatusCode, t: -1}
	integer := func(name string) int64 {
		t.Helper()
		n, err := strconv.ParseInt(resp.Header.Get(name), 10, 64)
		require.NoError(t, err, "GET %s: %s", url, name)
		return n
	}
	a.limit = int(integer(api.HeaderLimit))
	a.remaining = int(integer(api.HeaderRemaining))
	a.reset = time.Unix(integer(api.HeaderReset), 0)
	if resp.Header.Get(api.HeaderRetryAfter) != "" {
		a.retryAfter = integer(api.HeaderRetryAfter)
	}
	list, err := httpsfv.UnmarshalList(resp.Header.Values(api.HeaderRateLimit))
	require.NoError(t, err, "GET %s: RateLimit: %q", url, resp.Header.Values(api.HeaderRateLimit))
	require.Len(t, list, 1, "GET %s: RateLimit: %v", url, list)
	item, ok := list[0].(httpsfv.Item)
	require.True(t, ok, "GET %s: RateLimit member is %T, want an Item", url, list[0])
	assert.Equal(t, "free", item.Value, "GET %s: RateLimit names the policy", url)
	r, _ := item.Params.Get("r")
	a.r, ok = r.(int64)
	require.True(t, ok, "GET %s: RateLimit r = %v, want an Integer", url, r)
	if v, found := item.Params.Get("t"); found {
		a.t, ok = v.(int64)
		require.True(t, ok, "GET %s: RateLimit t = %v, want an Integer", url, v)
	}
	return a
}

// useUp sends requests at the clock's time until one is refused, and
// returns the refusal.
func useUp(t *testing.T, url string) answer {
	t.Helper()
	for range 100 {
		if a := get(t, url); a.status == http.StatusTooManyRequests {
			return a
		}
	}
	require.FailNow(t, "the key was never refused")
	return answer{}
}

// TestClientWaitingUntilResetIsAdmitted: a client that, refused, waits until
// the moment X-RateLimit-Reset names is admitted at once, and one that comes
// back a little before is refused, round after round through the decay of
// the sliding window. Retry-After and RateLimit's t name the same moment.
func TestClientWaitingUntilResetIsAdmitted(t *testing.T) {
	for _, start := range []time.Time{time.Unix(1_800_000_000, 0), time.Unix(1_800_000_000, 437_000_000)} {
		t.Run(start.Format(".000"), func(t *testing.T) {
			clock := &fakeClock{}
			clock.set(start)
			url := limitedServer(t, clock)
			for round := range 16 {
				refused := useUp(t, url)
				now := clock.Now()
				name := "round " + strconv.Itoa(round) + " at start+" + now.Sub(start).String()
				require.True(t, refused.reset.After(now), "%s: Reset %v is not after now", name, refused.reset)
				assert.Equal(t, 0, refused.remaining, "%s: Remaining on a 429", name)
				assert.Equal(t, refused.retryAfter, refused.t, "%s: RateLimit t and Retry-After", name)
				// Both are rounded up, each on its own grid: they agree within a second.
				byRetryAfter := now.Add(time.Duration(refused.retryAfter) * time.Second)
				assert.Less(t, absDuration(byRetryAfter.Sub(refused.reset)), time.Second,
					"%s: Retry-After %d s points at %v, Reset at %v", name, refused.retryAfter, byRetryAfter, refused.reset)

				// Reset is the moment rounded up to a second: a second
				// before it is before the moment.
				clock.set(refused.reset.Add(-time.Second))
				early := get(t, url)
				assert.Equal(t, http.StatusTooManyRequests, early.status, "%s: GET a second before Reset %v", name, refused.reset)
				assert.Equal(t, refused.reset, early.reset, "%s: Reset moved while nothing was admitted", name)

				clock.set(refused.reset)
				assert.Equal(t, http.StatusOK, get(t, url).status, "%s: GET at Reset %v", name, refused.reset)

				// Idle a while, so the next round starts elsewhere in the window.
				clock.add(time.Duration(round) * 7 * time.Second)
			}
		})
	}
}

// TestClientWaitingUntilResetOnTheSecond: when the moment a request fits
// is a whole second, Reset is that moment exactly, and a millisecond
// before it the request is still refused.
func TestClientWaitingUntilResetOnTheSecond(t *testing.T) {
	start := time.Unix(1_800_000_000, 0)
	clock := &fakeClock{}
	clock.set(start)
	url := limitedServer(t, clock)
	refused := useUp(t, url) // 20 at start: one more fits 63 s on, ceil(20×57/60) = 19
	assert.Equal(t, start.Add(63*time.Second), refused.reset)
	assert.Equal(t, int64(63), refused.retryAfter)
	clock.set(refused.reset.Add(-time.Millisecond))
	assert.Equal(t, http.StatusTooManyRequests, get(t, url).status, "GET a millisecond before Reset")
	clock.set(refused.reset)
	assert.Equal(t, http.StatusOK, get(t, url).status, "GET at Reset")
}

// TestClientWaitingForRateLimitTGetsMore: after a 200 with r left, a client
// that waits t seconds finds more than r requests admitted at once.
func TestClientWaitingForRateLimitTGetsMore(t *testing.T) {
	clock := &fakeClock{}
	clock.set(time.Unix(1_800_000_000, 0))
	url := limitedServer(t, clock)
	for round, burst := range []int{1, 5, 20, 3, 12, 20, 1, 2} {
		var last answer
		for i := range burst {
			a := get(t, url)
			if a.status != http.StatusOK {
				if i == 0 { // the key is used up: wait as told, then begin
					clock.add(time.Duration(a.retryAfter) * time.Second)
					a = get(t, url)
					require.Equal(t, http.StatusOK, a.status, "round %d: GET after Retry-After", round)
				} else {
					break
				}
			}
			last = a
		}
		require.Positive(t, last.t, "round %d: RateLimit t", round)
		clock.add(time.Duration(last.t) * time.Second)
		for i := range last.r + 1 {
			assert.Equal(t, http.StatusOK, get(t, url).status,
				"round %d: request %d of r+1 = %d, %d s after a 200 with r=%d;t=%d", round, i+1, last.r+1, last.t, last.r, last.t)
		}
	}
}

// TestClientWaitingUntilResetOfA200HasTheWholeLimit: X-RateLimit-Reset on a
// 200 is the moment by which the whole limit is free again.
func TestClientWaitingUntilResetOfA200HasTheWholeLimit(t *testing.T) {
	clock := &fakeClock{}
	clock.set(time.Unix(1_800_000_000, 250_000_000))
	url := limitedServer(t, clock)
	for round, burst := range []int{20, 1, 7, 30} {
		var last answer
		for i := range burst {
			if a := get(t, url); a.status == http.StatusOK {
				last = a
			}
			clock.add(time.Duration(i) * 900 * time.Millisecond)
		}
		require.Equal(t, http.StatusOK, last.status, "round %d: nothing admitted", round)
		clock.set(last.reset)
		full := get(t, url)
		assert.Equal(t, http.StatusOK, full.status, "round %d: GET at the Reset of the last 200", round)
		assert.Equal(t, full.limit-1, full.remaining, "round %d: Remaining at the Reset of the last 200, after this request", round)
	}
}

func absDuration(d time.Duration) time.Duration { return max(d, -d) }
