package tierlimit

import (
	"encoding/json"
	"fmt"
	"math"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/tierlimit/tierlimit/api"
	"github.com/tierlimit/tierlimit/bucket"
)

// signal is a load signal a test sets (Config.LoadSignal).
type signal struct{ bits atomic.Uint64 }

func (s *signal) set(v float64) { s.bits.Store(math.Float64bits(v)) }
func (s *signal) read() float64 { return math.Float64frombits(s.bits.Load()) }
func newSignals(n int) []*signal {
	out := make([]*signal, n)
	for i := range out {
		out[i] = new(signal)
	}
	return out
}

// fastAuto tunes node i to read sigs[i] with short holds.
func fastAuto(sigs []*signal, down time.Duration) func(int, *Config) {
	return func(i int, c *Config) {
		c.LoadSignal = sigs[i].read
		c.AutoUpHold, c.AutoDownHold = 500*time.Millisecond, down
	}
}

// healthOf returns GET /system/health of nd.
func healthOf(t *testing.T, h http.Handler) api.HealthResponse {
	t.Helper()
	r := httptest.NewRequestWithContext(t.Context(), http.MethodGet, "/system/health", nil)
	r.Header.Set("Authorization", "Bearer "+testToken)
	w := httptest.NewRecorder()
	h.ServeHTTP(w, r)
	require.Equal(t, http.StatusOK, w.Code)
	var got api.HealthResponse
	require.NoError(t, json.Unmarshal(w.Body.Bytes(), &got))
	return got
}

// postAdmin POSTs body to path on h and returns the status code.
func postAdmin(t *testing.T, h http.Handler, path, body string) int {
	t.Helper()
	r := httptest.NewRequestWithContext(t.Context(), http.MethodPost, path, strings.NewReader(body))
	r.Header.Set("Authorization", "Bearer "+testToken)
	w := httptest.NewRecorder()
	h.ServeHTTP(w, r)
	return w.Code
}

// allIn waits until every node holds status.
func allIn(t *testing.T, nodes []*node, status Status, why string) {
	t.Helper()
	require.Eventually(t, func() bool {
		for _, nd := range nodes {
			if nd.Health().Status != status {
				return false
			}
		}
		return true
	}, 15*time.Second, 20*time.Millisecond, "not every node is %v: %s", status, why)
}

// switches sums the automatic writes the nodes made.
func switches(nodes []*node) uint64 {
	var n uint64
	for _, nd := range nodes {
		n += nd.auto.Switches(Normal) + nd.auto.Switches(Degraded)
	}
	return n
}

// TestClusterSwitchesByItself: three nodes whose load goes above the high
// mark go DEGRADED by one write of the first member by name, and back to
// NORMAL, once each; /system/health shows why, the mode and each member's
// signal; a person's write pins the state until {"mode":"auto"}.
func TestClusterSwitchesByItself(t *testing.T) {
	sigs := newSignals(3)
	c := startCluster(t, 3, clusterOpts{steady: true, tune: fastAuto(sigs, 2*time.Second)})
	for _, s := range sigs {
		s.set(0.4)
	}
	require.Eventually(t, func() bool {
		v := healthOf(t, c.nodes[2].handler).Cluster
		return v != nil && v.Known == 3 && math.Abs(v.Saturation-0.4) < 1e-9
	}, 10*time.Second, 20*time.Millisecond, "node-2 hears every member's load")
	got := healthOf(t, c.nodes[2].handler)
	assert.Equal(t, api.ModeAuto, got.Mode)
	assert.Equal(t, "node-0", got.Cluster.Writer)
	assert.InDelta(t, 0.4, got.Cluster.Saturation, 1e-9)
	require.Len(t, got.Cluster.Members, 3)
	for i, m := range got.Cluster.Members {
		assert.Equal(t, fmt.Sprintf("node-%d", i), m.Name)
		assert.True(t, m.Fresh)
		assert.Less(t, m.AgeMS, int64(2000))
	}
	assert.Equal(t, Normal, c.nodes[0].Health().Status)

	for _, s := range sigs {
		s.set(1.5)
	}
	allIn(t, c.nodes, Degraded, "load 1.5 on a high mark of 1")
	s := c.nodes[1].Health()
	assert.Equal(t, "node-0", s.Origin, "the writer wrote it")
	assert.False(t, s.Pinned)
	assert.Contains(t, s.Why, "auto: demand 1.50 >= high 1.00")

	for _, s := range sigs {
		s.set(0.2)
	}
	allIn(t, c.nodes, Normal, "load 0.2 under a low mark of 0.75")
	assert.Contains(t, c.nodes[2].Health().Why, "auto: demand 0.20 <= low 0.75")
	assert.Equal(t, uint64(2), switches(c.nodes), "one write each way")

	// A person pins DEGRADED: the low load does not move it.
	require.Equal(t, http.StatusOK, postAdmin(t, c.nodes[2].handler, "/system/health", `{"status":"DEGRADED"}`))
	allIn(t, c.nodes, Degraded, "the admin's write")
	assert.Equal(t, api.ModeManual, healthOf(t, c.nodes[0].handler).Mode)
	assert.Never(t, func() bool { return c.nodes[0].Health().Status != Degraded }, 4*time.Second, 50*time.Millisecond,
		"pinned: twice the down hold at load 0.2 moves nothing")
	// Handed back: the switch brings it down after the hold.
	require.Equal(t, http.StatusOK, postAdmin(t, c.nodes[1].handler, "/system/health", `{"mode":"auto"}`))
	allIn(t, c.nodes, Normal, "handed back at load 0.2")
	assert.Equal(t, api.ModeAuto, healthOf(t, c.nodes[1].handler).Mode)
	assert.Equal(t, uint64(3), switches(c.nodes))
	assert.Contains(t, scrape(t, c.nodes[0]), `tierlimit_auto_switches_total{status="NORMAL"} 2`)
}

// TestClusterStaleMemberIsUnknownAndTheWriterCanDie: a member that stops
// reporting is left out, not counted as idle; when the writer dies the
// next member by name writes.
func TestClusterStaleMemberIsUnknownAndTheWriterCanDie(t *testing.T) {
	sigs := newSignals(3)
	c := startCluster(t, 3, clusterOpts{steady: true, tune: fastAuto(sigs, 2*time.Second)})
	sigs[0].set(1.2)
	sigs[1].set(1.2)
	sigs[2].set(0)
	require.Eventually(t, func() bool {
		v := healthOf(t, c.nodes[0].handler).Cluster
		return v != nil && v.Known == 3
	}, 10*time.Second, 20*time.Millisecond)
	assert.Never(t, func() bool { return c.nodes[0].Health().Status != Normal }, 2*time.Second, 50*time.Millisecond,
		"counted, the idle member holds the mean at 0.8")
	// node-2 stops reporting (its signal is no number): unknown, so the
	// two that report, both full, are the cluster.
	sigs[2].set(math.NaN())
	allIn(t, c.nodes, Degraded, "node-2 unknown, the others at 1.2")
	v := healthOf(t, c.nodes[1].handler).Cluster
	assert.Equal(t, 2, v.Known)
	assert.Equal(t, 1, v.Unknown)
	assert.InDelta(t, 1.2, v.Saturation, 1e-9)
	assert.Positive(t, c.nodes[2].auto.refused.Load())

	// The writer dies; node-1 takes over once the ring drops it.
	c.nodes[0].kill()
	sigs[1].set(0.1)
	sigs[2].set(0.1)
	allIn(t, c.nodes[1:], Normal, "node-0 dead, the rest idle")
	assert.Equal(t, "node-1", c.nodes[2].Health().Origin)
}

// TestClusterPartitionSidesDecideAndConverge: cut off, each side decides
// from the members it sees; healed, the later write wins everywhere.
func TestClusterPartitionSidesDecideAndConverge(t *testing.T) {
	sigs := newSignals(3)
	c := startCluster(t, 3, clusterOpts{tune: fastAuto(sigs, 2*time.Second)})
	for _, s := range sigs {
		s.set(0.3)
	}
	require.Eventually(t, func() bool {
		v := healthOf(t, c.nodes[0].handler).Cluster
		return v != nil && v.Known == 3
	}, 10*time.Second, 20*time.Millisecond)
	a, b := c.nodes[:1], c.nodes[1:]
	c.cut(a, b)
	c.waitMembers(1, a...)
	c.waitMembers(2, b...)
	sigs[1].set(2)
	sigs[2].set(2)
	allIn(t, b, Degraded, "the side of two is full")
	assert.Equal(t, "node-1", b[1].Health().Origin, "its first member by name writes")
	assert.Equal(t, Normal, a[0].Health().Status, "the side of one is idle and hears nothing")

	c.partition.Heal()
	c.grpcCut.Heal()
	c.waitMembers(3)
	// Healed, the mean is (0.3 + 2 + 2) / 3: the cluster stays DEGRADED,
	// one state on every node.
	allIn(t, c.nodes, Degraded, "healed, the later write wins")
	require.Eventually(t, func() bool {
		s := c.nodes[0].Health()
		return s == c.nodes[1].Health() && s == c.nodes[2].Health()
	}, 10*time.Second, 20*time.Millisecond, "one state everywhere")
}

// TestRefusedDemandHoldsDegraded: on one node with -capacity 1, two held
// requests switch DEGRADED; once they end the work drains, but free
// requests that DEGRADED refuses, and NORMAL would admit, still count, so
// the state holds until they stop.
func TestRefusedDemandHoldsDegraded(t *testing.T) {
	const doc = `{"window_seconds": 60,
	"tiers": {"free": {"limit": 100, "burst": 1000, "degraded": 1}, "pro": {"limit": 50}},
	"api_keys": {"free-1": "free", "free-2": "free", "pro-1": "pro"}}`
	lim, _ := newSingle(t, doc, func(c *Config) {
		c.Capacity = 1
		c.AutoUpHold, c.AutoDownHold = 500*time.Millisecond, 1500*time.Millisecond
	})
	release := make(chan struct{})
	started := make(chan struct{}, 2)
	h := lim.Middleware(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		started <- struct{}{}
		<-release
	}))
	var held sync.WaitGroup
	for range 2 {
		held.Go(func() {
			r := httptest.NewRequestWithContext(t.Context(), http.MethodGet, "/v1/x", nil)
			r.Header.Set("X-API-Key", "pro-1")
			h.ServeHTTP(httptest.NewRecorder(), r)
		})
	}
	<-started
	<-started
	require.Eventually(t, func() bool { return lim.Health().Status == Degraded }, 10*time.Second, 20*time.Millisecond,
		"two jobs on one GPU")
	close(release)
	held.Wait()

	// Free clients keep asking, 40 a second, within their NORMAL limit.
	stop := make(chan struct{})
	var asking sync.WaitGroup
	asking.Go(func() {
		tick := time.NewTicker(25 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-stop:
				return
			case <-tick.C:
				hit(t, lim, "free-1")
			}
		}
	})
	assert.Never(t, func() bool { return lim.Health().Status != Degraded }, 4*time.Second, 50*time.Millisecond,
		"the work drained, but the refused demand is still there")
	v := healthOf(t, lim.AdminHandler()).Cluster
	require.NotNil(t, v)
	assert.Less(t, v.Saturation, 0.1, "nothing runs")
	assert.Greater(t, v.Demand, 0.75, "the demand DEGRADED refuses")
	close(stop)
	asking.Wait()
	require.Eventually(t, func() bool { return lim.Health().Status == Normal }, 10*time.Second, 20*time.Millisecond,
		"the surge is over")
	assert.Equal(t, uint64(1), lim.auto.Switches(Degraded))
	assert.Equal(t, uint64(1), lim.auto.Switches(Normal))
}

// TestLoadReportsAreCheckedAndCount: the app behind a node reports its
// load on POST /system/load; bad reports get 400 and change nothing.
func TestLoadReportsAreCheckedAndCount(t *testing.T) {
	lim, _ := newSingle(t, tenSecondTiers, func(c *Config) {
		c.AutoUpHold, c.AutoDownHold = 500*time.Millisecond, time.Second
	})
	h := lim.AdminHandler()
	assert.Equal(t, api.ModeOff, healthOf(t, h).Mode, "no signal yet")
	for _, body := range []string{``, `{}`, `{"signal": -1}`, `{"signal": 11}`, `{"signal": "1"}`, `{"signal": 1, "in_flight": 2, "capacity": 4}`,
		`{"in_flight": 3}`, `{"in_flight": 3, "capacity": 0}`, `{"in_flight": -1, "capacity": 4}`, `{"signal": NaN}`, `{"signal": 1} {}`, `{"load": 1}`} {
		assert.Equal(t, http.StatusBadRequest, postAdmin(t, h, "/system/load", body), body)
	}
	r := httptest.NewRequestWithContext(t.Context(), http.MethodGet, "/system/load", nil)
	r.Header.Set("Authorization", "Bearer "+testToken)
	w := httptest.NewRecorder()
	h.ServeHTTP(w, r)
	assert.Equal(t, http.StatusMethodNotAllowed, w.Code)
	r = httptest.NewRequestWithContext(t.Context(), http.MethodPost, "/system/load", strings.NewReader(`{"signal": 5}`))
	w = httptest.NewRecorder()
	h.ServeHTTP(w, r)
	assert.Equal(t, http.StatusUnauthorized, w.Code, "no token, no report")
	assert.Equal(t, Normal, lim.Health().Status)

	// An app that reports 3 jobs on its 2 GPUs, twice a second.
	stop := make(chan struct{})
	var reporting sync.WaitGroup
	reporting.Go(func() {
		tick := time.NewTicker(250 * time.Millisecond)
		defer tick.Stop()
		for {
			assert.Equal(t, http.StatusOK, postAdmin(t, h, "/system/load", `{"in_flight": 3, "capacity": 2}`))
			select {
			case <-stop:
				return
			case <-tick.C:
			}
		}
	})
	require.Eventually(t, func() bool { return lim.Health().Status == Degraded }, 10*time.Second, 20*time.Millisecond)
	got := healthOf(t, h)
	assert.Equal(t, api.ModeAuto, got.Mode)
	assert.InDelta(t, 1.5, got.Cluster.Saturation, 1e-9)
	// A report's answer is the state in force: the app learns of the switch.
	r = httptest.NewRequestWithContext(t.Context(), http.MethodPost, "/system/load", strings.NewReader(`{"signal": 1.5}`))
	r.Header.Set("Authorization", "Bearer "+testToken)
	w = httptest.NewRecorder()
	h.ServeHTTP(w, r)
	require.Equal(t, http.StatusOK, w.Code)
	var answer api.LoadReportResponse
	require.NoError(t, json.Unmarshal(w.Body.Bytes(), &answer))
	assert.Equal(t, api.LoadReportResponse{Status: Degraded, Version: lim.Health().Version}, answer)
	// The app stops reporting: its report goes stale, the load is unknown,
	// and the node goes back to its configured limits after the hold.
	close(stop)
	reporting.Wait()
	require.Eventually(t, func() bool { return lim.Health().Status == Normal }, 10*time.Second, 20*time.Millisecond)
	assert.Contains(t, lim.Health().Why, "load unknown")
}

// TestNoSignalLeavesNoAutomaticDegraded: with no load signal anywhere, a
// DEGRADED handed to the switch goes back to NORMAL after the down hold,
// while one a person pinned, or one from a writer that knew no switch,
// stays.
func TestNoSignalLeavesNoAutomaticDegraded(t *testing.T) {
	lim, _ := newSingle(t, tenSecondTiers, func(c *Config) { c.AutoDownHold = 500 * time.Millisecond })
	h := lim.AdminHandler()
	require.Equal(t, http.StatusOK, postAdmin(t, h, "/system/health", `{"status":"DEGRADED"}`))
	assert.Never(t, func() bool { return lim.Health().Status != Degraded }, 1500*time.Millisecond, 20*time.Millisecond, "pinned")
	lim.health.Set(Degraded, time.Now()) // as a node of an earlier version writes: no why
	assert.Never(t, func() bool { return lim.Health().Status != Degraded }, 1500*time.Millisecond, 20*time.Millisecond, "no why")
	require.Equal(t, http.StatusOK, postAdmin(t, h, "/system/health", `{"status":"DEGRADED","mode":"auto"}`))
	require.Eventually(t, func() bool { return lim.Health().Status == Normal }, 10*time.Second, 20*time.Millisecond)
	assert.Contains(t, lim.Health().Why, "auto: load unknown")
	assert.Equal(t, api.ModeOff, healthOf(t, h).Mode)
}

// TestShedCountsAtMostWhatNormalWouldAdmit: per key and window, a node
// counts at most its share of burst - degraded; a tier DEGRADED does not
// lower counts nothing.
func TestShedCountsAtMostWhatNormalWouldAdmit(t *testing.T) {
	c := shedCounter{keys: bucket.New(bucket.Config{Window: time.Minute, MaxKeys: 10})}
	now := time.Date(2026, 12, 7, 12, 0, 0, 0, time.UTC)
	free := Tier{Name: "free", Limit: 10, Burst: 20, Degraded: 2}
	for range 50 {
		c.count("a", free, now, 3) // ceil(18 / 3) = 6
		c.count("b", free, now, 1) // 18
		c.count("p", Tier{Name: "pro", Limit: 100, Burst: 100, Degraded: 100}, now, 1)
	}
	assert.Equal(t, int64(6+18), c.total.Load())
	c.count("a", free, now.Add(2*time.Minute), 3)
	assert.Equal(t, int64(6+18+1), c.total.Load(), "a new window, a new share")
}
