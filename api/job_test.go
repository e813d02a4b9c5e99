package api

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/tierlimit/tierlimit/bucket"
	"github.com/tierlimit/tierlimit/config"
	"github.com/tierlimit/tierlimit/health"
)

// gpu is a tier that limits requests, cost (audio-seconds) and jobs at once.
var gpu = config.Tier{
	Name: "gpu", Limit: 20, Burst: 20, Degraded: 20,
	Cost: config.Limits{Limit: 100, Burst: 100, Degraded: 20}, CostEstimate: 10,
	Concurrency: config.Limits{Limit: 2, Burst: 2, Degraded: 1},
}

// jobFixture serves /job through a Middleware over a Local with cost and
// slots: the handler holds the request until release is closed (if
// hold), reports ?cost=N if given, and answers ?status=N.
type jobFixture struct {
	clock   *clock
	health  *health.Holder
	local   Local
	handler http.Handler
	release chan struct{}
	started chan struct{}
}

func newJobFixture(t *testing.T, tier config.Tier) *jobFixture {
	t.Helper()
	f := &jobFixture{clock: newClock(), health: health.NewHolder("node-a"), release: make(chan struct{}), started: make(chan struct{}, 16)}
	f.local = Local{
		Store: bucket.New(bucket.Config{Window: time.Minute}),
		Slots: bucket.NewSlots(),
	}
	lim := NewLimiter(Config{
		Keys: fakeKeys{"k": tier, "free-1": free}, Checker: f.local, Spender: f.local, CostUnit: "audio-seconds",
		Health: f.health, Window: time.Minute, Now: f.clock.Now,
	})
	f.handler = lim.Middleware(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		q := r.URL.Query()
		if q.Get("hold") != "" {
			f.started <- struct{}{}
			<-f.release
		}
		if c := q.Get("cost"); c != "" {
			n, err := strconv.Atoi(c)
			require.NoError(t, err)
			require.True(t, ReportCost(r.Context(), n))
		}
		status := http.StatusOK
		if s := q.Get("status"); s != "" {
			status, _ = strconv.Atoi(s)
		}
		if status >= 600 {
			panic("the handler failed")
		}
		w.WriteHeader(status)
	}))
	return f
}

// do sends /job?query with key k and, if estimate >= 0, Tierlimit-Cost.
func (f *jobFixture) do(query string, estimate int) *httptest.ResponseRecorder {
	r := httptest.NewRequest(http.MethodGet, "/job?"+query, nil)
	r.Header.Set("X-API-Key", "k")
	if estimate >= 0 {
		r.Header.Set(HeaderCost, strconv.Itoa(estimate))
	}
	w := httptest.NewRecorder()
	f.handler.ServeHTTP(w, r)
	return w
}

// spent returns the cost and the requests counted for k now.
func (f *jobFixture) spent() (cost, requests int) {
	c := f.local.Store.Take(f.clock.now, config.CostKey("k"), 0, 1<<30)
	r := f.local.Store.Take(f.clock.now, "k", 0, 1<<30)
	return 1<<30 - c.Remaining, 1<<30 - r.Remaining
}

func TestJobReservesThenSettles(t *testing.T) {
	f := newJobFixture(t, gpu)
	steps := []struct {
		name         string
		query        string
		estimate     int // -1: no header
		wantCode     int
		wantLimit    string // the 429's "limit"
		wantCost     int    // counted after the request
		wantRequests int
	}{
		{"estimate given, no report: the estimate stands", "", 30, 200, "", 30, 1},
		{"no estimate: the tier's default, 10", "", -1, 200, "", 40, 2},
		{"reported less than estimated: refund", "cost=5", 30, 200, "", 45, 3},
		{"reported more: extra charge", "cost=25", 10, 200, "", 70, 4},
		{"a 5xx gives the reservation back", "status=503", 20, 503, "", 70, 5},
		{"a 5xx that reported its cost pays it", "status=500&cost=4", 20, 500, "", 74, 6},
		{"a panic gives it back", "status=600", 20, 0, "", 74, 7},
		{"too costly: refused by cost, nothing spent", "", 27, 429, LimitCost, 74, 7},
		{"what is left fits", "", 26, 200, "", 100, 8},
		{"a zero estimate at the limit still fits", "", 0, 200, "", 100, 9},
	}
	for _, st := range steps {
		var w *httptest.ResponseRecorder
		if st.wantCode == 0 {
			assert.Panics(t, func() { f.do(st.query, st.estimate) }, st.name)
		} else {
			w = f.do(st.query, st.estimate)
			require.Equal(t, st.wantCode, w.Code, "%s: %s", st.name, w.Body.String())
		}
		if st.wantLimit != "" {
			e := decodeError(t, w)
			assert.Equal(t, st.wantLimit, e.Limit, st.name)
		}
		cost, requests := f.spent()
		assert.Equal(t, st.wantCost, cost, "%s: cost counted", st.name)
		assert.Equal(t, st.wantRequests, requests, "%s: requests counted", st.name)
	}
	f.clock.advance(time.Second)
	w := f.do("cost=40", 0)
	require.Equal(t, http.StatusOK, w.Code, "at the limit, a zero estimate fits")
	assert.Equal(t, 140, func() int { c, _ := f.spent(); return c }(), "charged 40 beyond 100: the work was done")
	w = f.do("", 0)
	require.Equal(t, http.StatusTooManyRequests, w.Code, "over the limit: even a zero estimate is refused")
	assert.Equal(t, LimitCost, decodeError(t, w).Limit)
}

func TestJobHeadersNameEachLimit(t *testing.T) {
	f := newJobFixture(t, gpu)
	w := f.do("", 30)
	require.Equal(t, http.StatusOK, w.Code)
	h := w.Header()
	assert.Equal(t, "20", h.Get(HeaderLimit), "X-RateLimit-* stay about requests")
	assert.Equal(t, "19", h.Get(HeaderRemaining))
	assert.Equal(t, `"gpu";q=20;w=60, "gpu-cost";q=100;w=60;qu="audio-seconds", "gpu-concurrency";q=2;qu="concurrent-requests"`, h.Get(HeaderPolicy))
	// t: until one more than r fits, the sliding window's count decaying
	// over the window after the current one.
	assert.Equal(t, `"gpu";r=19;t=120, "gpu-cost";r=70;t=62, "gpu-concurrency";r=1`, h.Get(HeaderRateLimit))

	w = f.do("", 71)
	require.Equal(t, http.StatusTooManyRequests, w.Code)
	h = w.Header()
	assert.Equal(t, "19", h.Get(HeaderRemaining), "the refused request's hit was given back")
	retry, err := strconv.Atoi(h.Get(HeaderRetryAfter))
	require.NoError(t, err)
	e := decodeError(t, w)
	assert.Equal(t, LimitCost, e.Limit)
	assert.Equal(t, "cost limit of 100 audio-seconds per 60s exceeded for tier gpu", e.Message)
	assert.Equal(t, int64(retry), e.RetryAfterSeconds)
	assert.Equal(t, strconv.FormatInt(t0.Unix()+int64(retry), 10), h.Get(HeaderReset), "X-RateLimit-Reset: when the cost admits it")
	assert.Contains(t, h.Get(HeaderRateLimit), `"gpu-cost";r=70;t=`+strconv.Itoa(retry))

	// Once the 71 fit, Retry-After said true.
	f.clock.advance(time.Duration(retry) * time.Second)
	assert.Equal(t, http.StatusOK, f.do("", 71).Code, "admitted when Retry-After said")
}

func TestJobConcurrency(t *testing.T) {
	f := newJobFixture(t, gpu)
	var wg sync.WaitGroup
	for range 2 {
		wg.Go(func() { assert.Equal(t, http.StatusOK, f.do("hold=1", 0).Code) })
	}
	<-f.started
	<-f.started
	w := f.do("", 0)
	require.Equal(t, http.StatusTooManyRequests, w.Code, "a third job while two run")
	e := decodeError(t, w)
	assert.Equal(t, LimitConcurrency, e.Limit)
	assert.Equal(t, "concurrency limit of 2 requests at once exceeded for tier gpu", e.Message)
	assert.Equal(t, "1", w.Header().Get(HeaderRetryAfter))
	assert.Contains(t, w.Header().Get(HeaderRateLimit), `"gpu-concurrency";r=0`)
	_, requests := f.spent()
	assert.Equal(t, 2, requests, "the refused job's request was given back")
	assert.Equal(t, 2, f.local.Slots.Held(f.clock.now, "k"))

	close(f.release)
	wg.Wait()
	assert.Zero(t, f.local.Slots.Held(f.clock.now, "k"), "ended jobs give their slots back")

	// DEGRADED: one job at once, for new ones.
	_, changed := f.health.Set(health.Degraded, f.clock.now)
	require.True(t, changed)
	f.release = make(chan struct{})
	wg.Go(func() { assert.Equal(t, http.StatusOK, f.do("hold=1", 0).Code) })
	<-f.started
	assert.Equal(t, http.StatusTooManyRequests, f.do("", 0).Code, "degraded: 1 at once")
	close(f.release)
	wg.Wait()
}

// TestJobSlotOutlivesNoHandler: a slot whose job never ends (Admit without
// End) is free again after MaxJobDuration.
func TestJobSlotEndsAtMaxJobDuration(t *testing.T) {
	f := newJobFixture(t, config.Tier{Name: "one", Limit: 100, Burst: 100, Degraded: 100, Concurrency: config.Limits{Limit: 1, Burst: 1, Degraded: 1}})
	lim := NewLimiter(Config{
		Keys:    fakeKeys{"k": {Name: "one", Limit: 100, Burst: 100, Degraded: 100, Concurrency: config.Limits{Limit: 1, Burst: 1, Degraded: 1}}},
		Checker: f.local, Spender: f.local, Health: f.health, Window: time.Minute, Now: f.clock.Now, MaxJobDuration: 10 * time.Minute,
	})
	admit := func() (*Job, bool) {
		r := httptest.NewRequest(http.MethodGet, "/", nil)
		r.Header.Set("X-API-Key", "k")
		return lim.Admit(httptest.NewRecorder(), r)
	}
	j, ok := admit()
	require.True(t, ok)
	require.NotNil(t, j)
	_, ok = admit()
	assert.False(t, ok, "its slot is held")
	f.clock.advance(10 * time.Minute)
	j2, ok := admit()
	assert.True(t, ok, "the lost job's slot ended")
	j.End(context.Background(), false) // a late end releases nothing of the new job's
	assert.Equal(t, 1, f.local.Slots.Held(f.clock.now, "k"))
	j2.End(context.Background(), false)
	j2.End(context.Background(), false)
	assert.Zero(t, f.local.Slots.Held(f.clock.now, "k"))
}

func TestJobBadEstimate(t *testing.T) {
	f := newJobFixture(t, gpu)
	for _, v := range []string{"-1", "1.5", "ten", "1000000001", "99999999999999999999"} {
		r := httptest.NewRequest(http.MethodGet, "/job", nil)
		r.Header.Set("X-API-Key", "k")
		r.Header.Set(HeaderCost, v)
		w := httptest.NewRecorder()
		f.handler.ServeHTTP(w, r)
		require.Equal(t, http.StatusBadRequest, w.Code, v)
		e := decodeError(t, w)
		assert.Equal(t, "invalid_cost", e.Code, v)
		assert.Contains(t, e.Message, "Tierlimit-Cost: want a whole number from 0 to 1000000000", v)
	}
	r := httptest.NewRequest(http.MethodGet, "/job", nil)
	r.Header.Set("X-API-Key", "k")
	r.Header.Add(HeaderCost, "1")
	r.Header.Add(HeaderCost, "2")
	w := httptest.NewRecorder()
	f.handler.ServeHTTP(w, r)
	assert.Equal(t, http.StatusBadRequest, w.Code)
	cost, requests := f.spent()
	assert.Zero(t, cost, "a refused estimate spends nothing")
	assert.Zero(t, requests)
}

// TestJobNeedsASpender: a tier with cost or concurrency is never decided
// as if it had none.
func TestJobNeedsASpender(t *testing.T) {
	lim := NewLimiter(Config{Keys: fakeKeys{"k": gpu}, Checker: Local{Store: bucket.New(bucket.Config{Window: time.Minute})},
		Health: health.NewHolder("n"), Window: time.Minute})
	r := httptest.NewRequest(http.MethodGet, "/", nil)
	r.Header.Set("X-API-Key", "k")
	w := httptest.NewRecorder()
	assert.False(t, lim.Allow(w, r))
	assert.Equal(t, http.StatusInternalServerError, w.Code)
	assert.Equal(t, "limiter_misconfigured", decodeError(t, w).Code)
}
