package tierlimit

import (
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/tierlimit/tierlimit/api"
)

// TestLoadSignalCountsTheWorkInFlight: with a capacity, the load signal is
// the admitted requests whose handler runs over it, in GET /system/health
// and in the metrics; refused requests are not work; without a capacity
// there is no signal.
func TestLoadSignalCountsTheWorkInFlight(t *testing.T) {
	lim, _ := newSingle(t, tenSecondTiers, func(c *Config) { c.Capacity = 2 })
	release := make(chan struct{})
	started := make(chan struct{}, 3)
	h := lim.Middleware(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		started <- struct{}{}
		<-release
	}))
	done := make(chan int, 3)
	for range 3 {
		go func() {
			r := httptest.NewRequestWithContext(t.Context(), http.MethodGet, "/v1/x", nil)
			r.Header.Set("X-API-Key", "pro-1")
			w := httptest.NewRecorder()
			h.ServeHTTP(w, r)
			done <- w.Code
		}()
	}
	for range 3 {
		<-started
	}
	codes := map[int]int{}
	for range 7 {
		codes[hit(t, lim, "free-1").Code]++ // each ends at once; the refused never start
	}
	assert.Equal(t, map[int]int{http.StatusOK: 5, http.StatusTooManyRequests: 2}, codes)
	load, ok := lim.Load()
	require.True(t, ok)
	assert.Equal(t, api.Load{InFlight: 3, Capacity: 2, Signal: 1.5}, load, "three at work on two GPUs: the work queues")

	r := httptest.NewRequestWithContext(t.Context(), http.MethodGet, "/system/health", nil)
	r.Header.Set("Authorization", "Bearer "+testToken)
	w := httptest.NewRecorder()
	lim.AdminHandler().ServeHTTP(w, r)
	var got api.HealthResponse
	require.NoError(t, json.Unmarshal(w.Body.Bytes(), &got))
	require.NotNil(t, got.Load)
	assert.Equal(t, 1.5, got.Load.Signal)

	close(release)
	for range 3 {
		require.Equal(t, http.StatusOK, <-done)
	}
	load, _ = lim.Load()
	assert.Equal(t, api.Load{Capacity: 2}, load, "nothing in flight")

	none, _ := newSingle(t, tenSecondTiers, nil)
	_, ok = none.Load()
	assert.False(t, ok, "no capacity, no signal")
}

func TestCapacityIsChecked(t *testing.T) {
	for _, c := range []int{-1, 1_000_001} {
		_, err := New(Config{TiersFile: writeTiers(t, t.TempDir()+"/tiers.json", tenSecondTiers), NodeName: "n", Capacity: c})
		var ce *ConfigError
		require.True(t, errors.As(err, &ce), "%v", err)
		assert.Equal(t, "Capacity", ce.Field)
		assert.Contains(t, err.Error(), "-capacity")
	}
}

// TestQueueServesPaidFirstAndShedsWaitingFreeOnDegraded: with QueueWait,
// capacity 1: while a job runs, a free request and then a paid one wait
// (both are in the load signal); the cluster going DEGRADED refuses the
// waiting free one at once with a 503, and the paid one runs next.
func TestQueueServesPaidFirstAndShedsWaitingFreeOnDegraded(t *testing.T) {
	reg := prometheus.NewRegistry()
	lim, _ := newSingle(t, tenSecondTiers, func(c *Config) {
		c.Capacity, c.QueueWait, c.Registerer = 1, time.Minute, reg
	})
	release := make(chan struct{})
	h := lim.Middleware(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { <-release }))
	type answer struct {
		key  string
		code int
		err  string
	}
	done := make(chan answer, 3)
	send := func(key string) {
		go func() {
			r := httptest.NewRequestWithContext(t.Context(), http.MethodGet, "/v1/x", nil)
			r.Header.Set("X-API-Key", key)
			w := httptest.NewRecorder()
			h.ServeHTTP(w, r)
			var body api.ErrorBody
			_ = json.Unmarshal(w.Body.Bytes(), &body)
			done <- answer{key, w.Code, body.Error.Code}
		}()
	}
	releaseOne := func() { // ends the job running now, failing the test if none runs
		t.Helper()
		select {
		case release <- struct{}{}:
		case <-time.After(5 * time.Second):
			require.FailNow(t, "no job runs to end")
		}
	}
	inFlight := func(n int64) func() bool {
		return func() bool { l, _ := lim.Load(); return l.InFlight == n }
	}
	send("pro-1")
	require.Eventually(t, inFlight(1), 5*time.Second, time.Millisecond)
	send("free-1")
	require.Eventually(t, func() bool {
		return metricValue(t, reg, "tierlimit_queue_waiting", "class", "sheddable") == 1
	}, 5*time.Second, time.Millisecond)
	send("pro-1")
	require.Eventually(t, func() bool {
		return metricValue(t, reg, "tierlimit_queue_waiting", "class", "protected") == 1
	}, 5*time.Second, time.Millisecond)
	load, _ := lim.Load()
	assert.Equal(t, 3.0, load.Signal, "waiting requests are load: three on one slot")

	_, err := lim.SetHealth(Degraded)
	require.NoError(t, err)
	assert.Equal(t, answer{"free-1", http.StatusServiceUnavailable, "shed"}, <-done)
	assert.Equal(t, 1.0, metricValue(t, reg, "tierlimit_queue_refused_total", "reason", "shed"))
	assert.Equal(t, 0.0, metricValue(t, reg, "tierlimit_queue_waiting", "class", "sheddable"))

	releaseOne()
	assert.Equal(t, answer{"pro-1", http.StatusOK, ""}, <-done)
	// A free request admitted in DEGRADED (free-2's one of the window)
	// waits behind the running job; a later write that keeps DEGRADED (the
	// hand-back to the switch) sheds nothing.
	send("free-2")
	require.Eventually(t, func() bool {
		return metricValue(t, reg, "tierlimit_queue_waiting", "class", "sheddable") == 1
	}, 5*time.Second, time.Millisecond)
	_, err = lim.ResumeAuto()
	require.NoError(t, err)
	assert.Equal(t, Degraded, lim.Health().Status)
	assert.Equal(t, 1.0, metricValue(t, reg, "tierlimit_queue_waiting", "class", "sheddable"), "still waiting")
	releaseOne()
	assert.Equal(t, answer{"pro-1", http.StatusOK, ""}, <-done)
	releaseOne()
	assert.Equal(t, answer{"free-2", http.StatusOK, ""}, <-done)
	assert.Equal(t, 1.0, metricValue(t, reg, "tierlimit_queue_refused_total", "reason", "shed"))
	assert.Equal(t, 1.0, metricValue(t, reg, "tierlimit_queue_wait_seconds", "class", "protected"), "pro-1's second request waited")
	assert.Equal(t, 1.0, metricValue(t, reg, "tierlimit_queue_wait_seconds", "class", "sheddable"), "free-2 waited")
	require.Eventually(t, inFlight(0), 5*time.Second, time.Millisecond)
}

func TestQueueWaitIsChecked(t *testing.T) {
	for _, tc := range []struct {
		capacity int
		wait     time.Duration
		why      string
	}{
		{1, -time.Second, "is not from 0"},
		{1, time.Hour + 1, "is not from 0"},
		{0, time.Second, "without Capacity"},
	} {
		_, err := New(Config{TiersFile: writeTiers(t, t.TempDir()+"/tiers.json", tenSecondTiers), NodeName: "n",
			Capacity: tc.capacity, QueueWait: tc.wait})
		var ce *ConfigError
		require.True(t, errors.As(err, &ce), "%v", err)
		assert.Equal(t, "QueueWait", ce.Field)
		assert.Contains(t, err.Error(), "-queue-wait")
		assert.Contains(t, err.Error(), tc.why)
	}
}
