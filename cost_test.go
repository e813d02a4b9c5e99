package tierlimit

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/tierlimit/tierlimit/config"
)

const costTiers = `{"window_seconds": 60, "cost_unit": "audio-seconds",
	"tiers": {"free": {"limit": 10, "burst": 20, "degraded": 2,
	                   "cost": {"limit": 300, "burst": 600, "degraded": 60, "default_estimate": 30},
	                   "concurrency": {"limit": 1, "burst": 2, "degraded": 1}},
	          "pro": {"limit": 100}},
	"api_keys": {"free-1": "free", "pro-1": "pro"}}`

// TestSingleNodeCountsCost: the Middleware reserves the estimate, the
// handler's ReportCost settles it, and a request the cost refuses spends
// nothing.
func TestSingleNodeCountsCost(t *testing.T) {
	lim, _ := newSingle(t, costTiers, nil)
	job := func(estimate, actual int) *httptest.ResponseRecorder {
		r := httptest.NewRequestWithContext(t.Context(), http.MethodPost, "/v1/transcribe", nil)
		r.Header.Set("X-API-Key", "free-1")
		if estimate >= 0 {
			r.Header.Set("Tierlimit-Cost", strconv.Itoa(estimate))
		}
		w := httptest.NewRecorder()
		lim.Middleware(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if actual >= 0 {
				require.True(t, ReportCost(r.Context(), actual))
			}
			w.WriteHeader(http.StatusOK)
		})).ServeHTTP(w, r)
		return w
	}
	costLeft := func(w *httptest.ResponseRecorder) string {
		return w.Header().Get("RateLimit")
	}
	w := job(100, 40) // reserves 100, settles at 40
	require.Equal(t, http.StatusOK, w.Code)
	assert.Contains(t, costLeft(w), `"free-cost";r=500;`, "100 reserved of 600")
	w = job(-1, -1) // the default estimate, 30, stands
	require.Equal(t, http.StatusOK, w.Code)
	assert.Contains(t, costLeft(w), `"free-cost";r=530;`, "the first settled at 40: 600 - 40 - 30")
	w = job(531, -1)
	require.Equal(t, http.StatusTooManyRequests, w.Code, "531 of the 530 left")
	assert.Contains(t, w.Body.String(), `"limit":"cost"`)
	assert.Equal(t, "18", w.Header().Get("X-RateLimit-Remaining"), "the refused request's hit was given back")
	w = job(530, -1)
	require.Equal(t, http.StatusOK, w.Code, "what is left fits")

	// A tier without cost or concurrency is untouched.
	assert.Equal(t, http.StatusOK, hit(t, lim, "pro-1").Code)
	assert.False(t, ReportCost(t.Context(), 1), "no job outside a request")
}

// gpuClusterTiers is costTiers with keys spread over the ring: free-0 to
// free-29, whose requests' limit (20) never binds before their cost (600
// in NORMAL) or their concurrency (2); and pro-0 to pro-29, 12 jobs at
// once, enough for slot leases (1 in DEGRADED), 6000 audio-seconds a
// minute (60 in DEGRADED).
func gpuClusterTiers() string {
	var keys []string
	for i := range 30 {
		keys = append(keys, fmt.Sprintf(`"free-%d": "free"`, i), fmt.Sprintf(`"pro-%d": "pro"`, i))
	}
	return `{"window_seconds": 60, "cost_unit": "audio-seconds",
	"tiers": {"free": {"limit": 10, "burst": 20, "degraded": 2,
	                   "cost": {"limit": 300, "burst": 600, "degraded": 60},
	                   "concurrency": {"limit": 1, "burst": 2, "degraded": 1}},
	          "pro": {"limit": 1000, "cost": {"limit": 6000, "degraded": 60},
	                  "concurrency": {"limit": 12, "degraded": 1}}},
	"api_keys": {` + strings.Join(keys, ", ") + `}}`
}

// startGPUCluster starts n nodes and reloads them onto gpuClusterTiers: a
// member takes a tiers file with cost and concurrency limits, at reload
// too.
func startGPUCluster(t *testing.T, n int) *testCluster {
	t.Helper()
	c := startCluster(t, n, clusterOpts{steady: true})
	writeTiers(t, c.config, gpuClusterTiers())
	for _, nd := range c.nodes {
		require.NoError(t, nd.Reload())
	}
	return c
}

// job sends a request of key with a cost estimate to nd, whose handler
// runs work (nil: nothing) and reports actual (negative: no report).
func job(t *testing.T, nd *node, key string, estimate, actual int, work func()) *httptest.ResponseRecorder {
	t.Helper()
	r := httptest.NewRequestWithContext(t.Context(), http.MethodPost, "/v1/transcribe", nil)
	r.Header.Set("X-API-Key", key)
	r.Header.Set("Tierlimit-Cost", strconv.Itoa(estimate))
	w := httptest.NewRecorder()
	nd.Middleware(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if work != nil {
			work()
		}
		if actual >= 0 {
			ReportCost(r.Context(), actual)
		}
		w.WriteHeader(http.StatusOK)
	})).ServeHTTP(w, r)
	return w
}

// TestClusterCountsCostAtTheKeysOwner: one key's cost spread over three
// nodes is admitted up to its limit and never past it, for keys owned by
// each node, with no local decision; what stays unadmitted is at most what
// two nodes' leases could not spend (less than one job each).
func TestClusterCountsCostAtTheKeysOwner(t *testing.T) {
	c := startGPUCluster(t, 3)
	const cost, limit = 50, 600
	for o, key := range c.keysOwnedByEach("free", 30) {
		admitted := 0
		for r := range 18 {
			w := job(t, c.nodes[r%3], key, cost, -1, nil)
			switch w.Code {
			case http.StatusOK:
				admitted++
			case http.StatusTooManyRequests:
				assert.Contains(t, w.Body.String(), `"limit":"cost"`)
			default:
				t.Fatalf("key %s: status %d: %s", key, w.Code, w.Body)
			}
		}
		assert.LessOrEqual(t, admitted*cost, limit, "key %s owned by node-%d: never past the limit", key, o)
		assert.GreaterOrEqual(t, admitted*cost, limit-2*(cost-1), "key %s owned by node-%d: admitted %d jobs", key, o, admitted)
	}
	for _, n := range c.nodes {
		assert.Zero(t, n.fallback.Len(), "%s decided something locally", n.name)
	}
}

// TestClusterSettlesCostAtTheOwner: a job reported cheaper than its
// estimate gives the difference back and one reported dearer charges it,
// wherever it ran; the key's owner counts the result.
func TestClusterSettlesCostAtTheOwner(t *testing.T) {
	c := startGPUCluster(t, 3)
	key := "free-0"
	o := c.owner(key)
	other := c.nodes[(o+1)%3]
	costAt := func() int { // what the owner counted of key's cost, leases included
		d := c.nodes[o].store.Take(time.Now(), config.CostKey(key), 0, 1<<30)
		return 1<<30 - d.Remaining
	}
	require.Equal(t, http.StatusOK, job(t, c.nodes[o], key, 100, 40, nil).Code)
	assert.Equal(t, 40, costAt(), "at the owner: 100 reserved, 60 given back")
	require.Equal(t, http.StatusOK, job(t, c.nodes[o], key, 10, 70, nil).Code)
	assert.Equal(t, 110, costAt(), "at the owner: 10 reserved, 60 more charged")

	// At another node, the reservation may come from a lease, whose hits
	// are counted at the owner when granted; the lease gives back what it
	// does not spend when it ends.
	require.Equal(t, http.StatusOK, job(t, other, key, 100, 100, nil).Code)
	before := costAt()
	require.GreaterOrEqual(t, before, 210)
	require.Equal(t, http.StatusOK, job(t, other, key, 50, 450, nil).Code)
	require.Eventually(t, func() bool { return costAt() >= 610 }, 10*time.Second, 10*time.Millisecond,
		"the charge beyond the estimate reaches the owner (it is over the limit of 600, and counts)")
	w := job(t, other, key, 1, -1, nil)
	require.Equal(t, http.StatusTooManyRequests, w.Code, "the key's cost is spent: %s", w.Body)
	assert.Contains(t, w.Body.String(), `"limit":"cost"`)
}

// TestClusterConcurrencyIsHeldAtTheOwner: a key's jobs running on three
// nodes are held to its concurrency limit at once; a job's end frees its
// slot for any node; and the slots of a node that dies are given back
// when the cluster sees it fail.
func TestClusterConcurrencyIsHeldAtTheOwner(t *testing.T) {
	c := startGPUCluster(t, 3)
	key := c.keysOwnedByEach("free", 30)[0]
	var running, most atomic.Int64
	hold := func(release <-chan struct{}) func() {
		return func() {
			most.Store(max(most.Load(), running.Add(1)))
			<-release
			running.Add(-1)
		}
	}
	type started struct {
		release chan struct{}
		done    chan *httptest.ResponseRecorder
	}
	start := func(nd *node) started {
		s := started{release: make(chan struct{}), done: make(chan *httptest.ResponseRecorder, 1)}
		go func() { s.done <- job(t, nd, key, 0, -1, hold(s.release)) }()
		return s
	}
	// Jobs on node-1 and node-2, neither of which owns the key.
	a, b := start(c.nodes[1]), start(c.nodes[2])
	require.Eventually(t, func() bool { return running.Load() == 2 }, 10*time.Second, 5*time.Millisecond)
	for _, nd := range c.nodes {
		w := job(t, nd, key, 0, -1, nil)
		require.Equal(t, http.StatusTooManyRequests, w.Code, "a third job on %s", nd.name)
		assert.Contains(t, w.Body.String(), `"limit":"concurrency"`)
		assert.Equal(t, "1", w.Header().Get("Retry-After"))
	}
	close(a.release)
	require.Equal(t, http.StatusOK, (<-a.done).Code)
	require.Eventually(t, func() bool { return job(t, c.nodes[0], key, 0, -1, nil).Code == http.StatusOK },
		10*time.Second, 10*time.Millisecond, "node-1's job ended: its slot is free at the owner")

	// node-2 dies holding its slot: the owner gives it back when it sees
	// node-2 fail.
	c.nodes[2].kill()
	c2 := start(c.nodes[0])
	require.Eventually(t, func() bool { return running.Load() == 2 }, 10*time.Second, 5*time.Millisecond)
	require.Equal(t, http.StatusTooManyRequests, job(t, c.nodes[1], key, 0, -1, nil).Code, "node-2's job and c2 hold both slots")
	require.Eventually(t, func() bool { return c.nodes[0].owner.SlotsFreed() == 1 }, 20*time.Second, 10*time.Millisecond,
		"the owner gives a dead node's slot back")
	require.Equal(t, http.StatusOK, job(t, c.nodes[1], key, 0, -1, nil).Code, "node-2's slot is free")
	close(c2.release)
	close(b.release)
	require.Equal(t, http.StatusOK, (<-c2.done).Code)
	assert.Equal(t, int64(2), most.Load(), "never more jobs at once than the limit")
}

// TestClusterSlotsMoveWithTheirKey: when a key's owner leaves (a rolling
// deploy), the slots of the key's running jobs go with the key to its new
// owner: the limit still holds, and the jobs' ends free them there.
func TestClusterSlotsMoveWithTheirKey(t *testing.T) {
	c := startGPUCluster(t, 3)
	key := c.keysOwnedByEach("free", 30)[2]
	type started struct {
		release chan struct{}
		done    chan *httptest.ResponseRecorder
	}
	var running atomic.Int64
	start := func(nd *node) started {
		s := started{release: make(chan struct{}), done: make(chan *httptest.ResponseRecorder, 1)}
		go func() {
			s.done <- job(t, nd, key, 0, -1, func() { running.Add(1); <-s.release; running.Add(-1) })
		}()
		return s
	}
	a, b := start(c.nodes[0]), start(c.nodes[1])
	require.Eventually(t, func() bool { return running.Load() == 2 }, 10*time.Second, 5*time.Millisecond)

	require.NoError(t, c.nodes[2].Close(t.Context()))
	survivors := c.nodes[:2]
	c.waitMembers(2, survivors...)
	owner, _ := c.nodes[0].ring.Owner(key)
	require.NotEqual(t, "node-2", owner)
	for _, nd := range survivors {
		if nd.name == owner {
			assert.Equal(t, 2, nd.slots.Held(time.Now(), key), "the new owner holds both jobs' slots")
		}
		w := job(t, nd, key, 0, -1, nil)
		require.Equal(t, http.StatusTooManyRequests, w.Code, "on %s: the two running jobs hold the new owner's slots", nd.name)
		assert.Contains(t, w.Body.String(), `"limit":"concurrency"`)
	}
	close(a.release)
	require.Equal(t, http.StatusOK, (<-a.done).Code)
	require.Equal(t, http.StatusOK, job(t, c.nodes[1], key, 0, -1, nil).Code, "a job's end frees its slot at the new owner")
	close(b.release)
	require.Equal(t, http.StatusOK, (<-b.done).Code)
}

// TestClusterSlotLeasesHoldTheLimit: a key with room for leases of slots
// (12 jobs at once over 3 nodes) gets them, and 24 jobs sent at once over
// the three nodes never run more than 12 at a time; once they end, every
// slot goes back.
func TestClusterSlotLeasesHoldTheLimit(t *testing.T) {
	c := startGPUCluster(t, 3)
	key := c.keysOwnedByEach("pro", 30)[2]
	var running, most atomic.Int64
	release := make(chan struct{})
	done := make(chan int, 24)
	// Warm: a job on each of the other nodes brings each a lease, once
	// the owner grants again after the ring's last change.
	require.Eventually(t, func() bool { return !c.nodes[2].owner.Settling(time.Now()) }, 10*time.Second, 10*time.Millisecond)
	for _, nd := range c.nodes[:2] {
		require.Equal(t, http.StatusOK, job(t, nd, key, 0, -1, nil).Code)
	}
	assert.Equal(t, 2, c.nodes[2].slots.Held(time.Now(), key), "the jobs ended; each node holds a leased slot")
	for i := range 24 {
		nd := c.nodes[i%3]
		go func() {
			done <- job(t, nd, key, 0, -1, func() {
				n := running.Add(1)
				for m := most.Load(); n > m && !most.CompareAndSwap(m, n); m = most.Load() {
				}
				<-release
				running.Add(-1)
			}).Code
		}()
	}
	refused := 0
	require.Eventually(t, func() bool {
		for {
			select {
			case code := <-done:
				require.Equal(t, http.StatusTooManyRequests, code, "only a refused job ends before the release")
				refused++
				continue
			default:
			}
			return int(running.Load())+refused == 24
		}
	}, 10*time.Second, 5*time.Millisecond)
	assert.LessOrEqual(t, most.Load(), int64(12), "never more than the limit at once")
	assert.GreaterOrEqual(t, most.Load(), int64(6), "leases park some slots, not most")
	close(release)
	for range 24 - refused {
		require.Equal(t, http.StatusOK, <-done)
	}
	owner := c.nodes[2]
	require.Eventually(t, func() bool {
		for _, nd := range c.nodes[:2] {
			nd.router.RevokeLeases()
		}
		return owner.slots.Held(time.Now(), key) == 0
	}, 10*time.Second, 20*time.Millisecond, "every slot back at the owner")
}

// TestClusterDegradedAppliesEveryDimensionAtOnce: DEGRADED brings each
// limit to its degraded value on every node at once: running jobs go on,
// new ones wait (pro: 1 job at once, 60 audio-seconds a minute).
func TestClusterDegradedAppliesEveryDimensionAtOnce(t *testing.T) {
	c := startGPUCluster(t, 3)
	key := c.keysOwnedByEach("pro", 30)[0]
	release := make(chan struct{})
	done := make(chan int, 1)
	started := make(chan struct{})
	go func() {
		done <- job(t, c.nodes[1], key, 10, -1, func() { close(started); <-release }).Code
	}()
	<-started
	require.Equal(t, http.StatusOK, job(t, c.nodes[2], key, 10, -1, nil).Code, "NORMAL: 12 jobs at once")

	setHealth(t, c.nodes[0], "DEGRADED")
	require.Eventually(t, func() bool {
		for _, nd := range c.nodes {
			if nd.Health().Status != Degraded {
				return false
			}
		}
		return true
	}, 10*time.Second, 10*time.Millisecond)
	for _, nd := range c.nodes {
		w := job(t, nd, key, 1, -1, nil)
		require.Equal(t, http.StatusTooManyRequests, w.Code, "DEGRADED on %s: the running job holds the one slot", nd.name)
		assert.Contains(t, w.Body.String(), `"limit":"concurrency"`)
	}
	close(release)
	require.Equal(t, http.StatusOK, <-done, "the running job finished")
	// Its slot goes back to the owner (node 0) by a call of its own, which
	// may land after the answer: the one slot must be free before the next.
	require.Eventually(t, func() bool { return c.nodes[0].slots.Held(time.Now(), key) == 0 },
		10*time.Second, 5*time.Millisecond, "the finished job's slot back at the owner")
	w := job(t, c.nodes[2], key, 41, -1, nil)
	require.Equal(t, http.StatusTooManyRequests, w.Code, "20 of DEGRADED's 60 spent: 41 does not fit")
	assert.Contains(t, w.Body.String(), `"limit":"cost"`)
	w = job(t, c.nodes[2], key, 40, -1, nil)
	require.Equal(t, http.StatusOK, w.Code, "40 fits: %s", w.Body.String())
}

// TestClusterRefusedJobsSpendNothing: jobs refused for concurrency at nodes
// that do not own their key give back the cost they reserved and their
// request hit, so the key's cost is all there for the jobs admitted later.
func TestClusterRefusedJobsSpendNothing(t *testing.T) {
	c := startGPUCluster(t, 3)
	key := c.keysOwnedByEach("pro", 30)[2]
	const cost = 50
	release := make(chan struct{})
	var running atomic.Int64
	done := make(chan int, 12)
	for i := range 12 {
		nd := c.nodes[i%3]
		go func() {
			done <- job(t, nd, key, cost, -1, func() { running.Add(1); <-release }).Code
		}()
	}
	require.Eventually(t, func() bool { return running.Load() == 12 }, 10*time.Second, 5*time.Millisecond,
		"12 jobs hold the key's 12 slots")
	for i := range 100 {
		w := job(t, c.nodes[i%2], key, cost, -1, nil)
		require.Equal(t, http.StatusTooManyRequests, w.Code)
		require.Contains(t, w.Body.String(), `"limit":"concurrency"`)
	}
	close(release)
	for range 12 {
		require.Equal(t, http.StatusOK, <-done)
	}
	// 600 spent by the 12; 5400 left, less what leases strand (under a
	// job's cost each, at the two other nodes), once the refunds landed.
	admitted := 0
	require.Eventually(t, func() bool {
		w := job(t, c.nodes[admitted%3], key, cost, -1, nil)
		if w.Code == http.StatusOK {
			admitted++
		}
		return w.Code != http.StatusOK && admitted*cost >= 5400-2*(cost-1)
	}, 20*time.Second, time.Millisecond, "admitted %d jobs of %d after the refusals", admitted, cost)
	assert.LessOrEqual(t, admitted*cost, 5400, "never past the limit")
}

// TestClusterSlotsSurviveTheirOwnersCrash: when a key's owner crashes with
// its slot table, the nodes whose jobs hold the key's slots tell the new
// owner, so the limit holds again once the ring has dropped the dead node.
func TestClusterSlotsSurviveTheirOwnersCrash(t *testing.T) {
	c := startGPUCluster(t, 3)
	key := c.keysOwnedByEach("free", 30)[2]
	type started struct {
		release chan struct{}
		done    chan int
	}
	var running atomic.Int64
	start := func(nd *node) started {
		s := started{release: make(chan struct{}), done: make(chan int, 1)}
		go func() {
			s.done <- job(t, nd, key, 0, -1, func() { running.Add(1); <-s.release; running.Add(-1) }).Code
		}()
		return s
	}
	a, b := start(c.nodes[0]), start(c.nodes[1])
	require.Eventually(t, func() bool { return running.Load() == 2 }, 10*time.Second, 5*time.Millisecond)

	c.nodes[2].kill()
	survivors := c.nodes[:2]
	require.Eventually(t, func() bool {
		for _, nd := range survivors {
			if slices.Contains(nd.ring.Members(), "node-2") {
				return false
			}
		}
		return true
	}, 30*time.Second, 10*time.Millisecond, "the survivors drop the dead owner")
	owner, _ := c.nodes[0].ring.Owner(key)
	o := slices.IndexFunc(survivors, func(nd *node) bool { return nd.name == owner })
	require.Eventually(t, func() bool { return survivors[o].slots.Held(time.Now(), key) == 2 },
		10*time.Second, 10*time.Millisecond, "the running jobs' slots are announced to the new owner")
	for _, nd := range survivors {
		w := job(t, nd, key, 0, -1, nil)
		require.Equal(t, http.StatusTooManyRequests, w.Code, "on %s: the two running jobs hold the slots", nd.name)
		assert.Contains(t, w.Body.String(), `"limit":"concurrency"`)
	}
	close(a.release)
	require.Equal(t, http.StatusOK, <-a.done)
	require.Equal(t, http.StatusOK, job(t, c.nodes[1], key, 0, -1, nil).Code, "a job's end frees its slot at the new owner")
	close(b.release)
	require.Equal(t, http.StatusOK, <-b.done)
}
