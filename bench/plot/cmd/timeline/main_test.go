package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/tierlimit/tierlimit/api"
	"github.com/tierlimit/tierlimit/bench/plot/timeline"
	"github.com/tierlimit/tierlimit/health"
)

const token = "test-token"

// fakeCluster is a cluster of nodes that share one health state, which
// node i adopts i × spread after it was set (gossip, in a test), and a
// limiter that refuses every free request in DEGRADED and admits the
// rest: that of key free-2 on its cost, with a 429 body that says so, the
// others on their requests.
type fakeCluster struct {
	spread time.Duration
	tiers  map[string]string // API key -> tier

	// mu guards the fields below.
	mu      sync.Mutex
	status  health.Status
	prev    health.Status
	version uint64
	setAt   time.Time

	posts atomic.Int32
	// freeOK and freeRefused count the 200s and 429s the nodes answered
	// to free keys, freeByCost the 429s that named the cost limit.
	freeOK, freeRefused, freeByCost atomic.Int32
	// jobs maps "tier estimate cost work" (Tierlimit-Cost, ?cost=,
	// ?work=) to how many requests came with them.
	jobs sync.Map
}

// job counts one request's job as jobs keeps them.
func (c *fakeCluster) job(tier string, r *http.Request) {
	k := strings.Join([]string{tier, r.Header.Get("Tierlimit-Cost"), r.URL.Query().Get("cost"), r.URL.Query().Get("work")}, " ")
	n, _ := c.jobs.LoadOrStore(k, new(atomic.Int32))
	n.(*atomic.Int32).Add(1)
}

// jobsSeen returns jobs as a plain map.
func (c *fakeCluster) jobsSeen() map[string]int {
	out := map[string]int{}
	c.jobs.Range(func(k, v any) bool {
		out[k.(string)] = int(v.(*atomic.Int32).Load())
		return true
	})
	return out
}

func (c *fakeCluster) view(i int) (health.Status, uint64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if time.Since(c.setAt) < time.Duration(i)*c.spread {
		return c.prev, c.version - 1
	}
	return c.status, c.version
}

func (c *fakeCluster) set(s health.Status) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.prev, c.status = c.status, s
	c.version++
	c.setAt = time.Now()
}

func (c *fakeCluster) node(t *testing.T, i int) *httptest.Server {
	name := fmt.Sprintf("n%d", i+1)
	mux := http.NewServeMux()
	mux.HandleFunc("GET /test", func(w http.ResponseWriter, r *http.Request) {
		key := r.Header.Get("X-API-Key")
		tier, ok := c.tiers[key]
		if !ok {
			w.WriteHeader(http.StatusUnauthorized)
			return
		}
		c.job(tier, r)
		status, _ := c.view(i)
		limit := map[string]int{"free": 20, "pro": 150}[tier]
		if status == health.Degraded {
			limit = map[string]int{"free": 2, "pro": 100}[tier]
		}
		w.Header().Set("X-RateLimit-Limit", fmt.Sprint(limit))
		if tier == "free" && status == health.Degraded {
			c.freeRefused.Add(1)
			limit := "requests"
			if key == "free-2" {
				limit = "cost"
				c.freeByCost.Add(1)
			}
			w.WriteHeader(http.StatusTooManyRequests)
			_, _ = io.WriteString(w, `{"error":{"code":"rate_limited","limit":"`+limit+`","message":"..."}}`)
			return
		}
		if work, err := time.ParseDuration(r.URL.Query().Get("work")); err == nil {
			time.Sleep(work)
		}
		if tier == "free" {
			c.freeOK.Add(1)
		}
		_, _ = io.WriteString(w, `{"ok":true}`)
	})
	mux.HandleFunc("/system/health", func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Authorization") != "Bearer "+token {
			w.WriteHeader(http.StatusUnauthorized)
			return
		}
		if r.Method == http.MethodPost {
			var body struct {
				Status health.Status `json:"status"`
			}
			if err := json.NewDecoder(r.Body).Decode(&body); err != nil {
				w.WriteHeader(http.StatusBadRequest)
				return
			}
			c.set(body.Status)
			c.posts.Add(1)
		}
		status, version := c.view(i)
		if r.Method == http.MethodPost {
			status, version = c.view(0) // the node posted to has it at once
		}
		_ = json.NewEncoder(w).Encode(api.HealthResponse{Status: status, Version: version, Origin: "n1", Node: name})
	})
	s := httptest.NewServer(mux)
	t.Cleanup(s.Close)
	return s
}

// start returns a 3-node fake cluster, its targets, and a tiers file with
// its keys.
func start(t *testing.T) (*fakeCluster, string, string) {
	t.Helper()
	c := &fakeCluster{spread: 20 * time.Millisecond, tiers: map[string]string{}, version: 1}
	keys := map[string]string{}
	for _, tier := range []string{"free", "pro"} {
		for i := range 3 {
			k := fmt.Sprintf("%s-%d", tier, i)
			c.tiers[k], keys[k] = tier, tier
		}
	}
	var targets []string
	for i := range 3 {
		targets = append(targets, c.node(t, i).URL)
	}
	doc, err := json.Marshal(map[string]any{
		"window_seconds": 60,
		"cost_unit":      "audio-seconds",
		"tiers": map[string]any{
			"free": map[string]any{"limit": 10, "burst": 20, "degraded": 2,
				"cost":        map[string]int{"limit": 300, "burst": 600, "degraded": 60, "default_estimate": 30},
				"concurrency": map[string]int{"limit": 1, "burst": 2, "degraded": 1}},
			"pro": map[string]any{"limit": 100, "burst": 150,
				"cost": map[string]int{"limit": 6000, "burst": 9000, "default_estimate": 60}},
			"enterprise": map[string]int{"limit": 1000},
		},
		"api_keys": keys,
	})
	require.NoError(t, err)
	path := filepath.Join(t.TempDir(), "tiers.json")
	require.NoError(t, os.WriteFile(path, doc, 0o644))
	return c, strings.Join(targets, ","), path
}

func noEnv(string) string { return "" }

// sum returns the total of per-second counts.
func sum(counts []int) int {
	n := 0
	for _, c := range counts {
		n += c
	}
	return n
}

func TestRunRecordsTheTimeline(t *testing.T) {
	c, targets, tiers := start(t)
	out := filepath.Join(t.TempDir(), "timeline.json")
	var stderr strings.Builder
	err := run(t.Context(), []string{
		"-targets", targets, "-admin-token", token, "-config", tiers,
		"-phases", "NORMAL=1s,DEGRADED=1s,NORMAL=1s", "-keys", "free=3,pro=2", "-rate", "free=20,pro=10",
		"-estimate", "free=20", "-cost", "free=15,pro=40", "-work", "20ms",
		"-poll", "10ms", "-out", out,
	}, noEnv, &stderr)
	require.NoError(t, err, "run: %s", stderr.String())
	assert.Contains(t, stderr.String(), "free: 3 keys, 6.667 req/s each = 400 per key per 1m0s window: over the NORMAL limit 20, over the DEGRADED limit 2"+
		"; cost 15 audio-seconds a job (reserving 20) = 6000 per key per window: over the NORMAL limit 600, over the DEGRADED limit 60"+
		"; 0.13 jobs at once per key on average (limits 2 NORMAL, 1 DEGRADED)")
	assert.Contains(t, stderr.String(), "pro: 2 keys, 5 req/s each = 300 per key per 1m0s window: over the NORMAL limit 150, over the DEGRADED limit 100"+
		"; cost 40 audio-seconds a job (reserving 60) = 12000 per key per window: over the NORMAL limit 9000, over the DEGRADED limit 6000\n",
		"pro reserves its default_estimate and has no concurrency limit")
	assert.Contains(t, stderr.String(), "every node reported it")

	rec, err := timeline.ReadFile(out)
	require.NoError(t, err)
	assert.Equal(t, 3, rec.Seconds)
	assert.Equal(t, 60, rec.WindowSeconds)
	assert.Equal(t, "audio-seconds", rec.CostUnit)
	assert.Equal(t, 20*time.Millisecond, rec.Work.Duration())
	require.Len(t, rec.Phases, 3)
	assert.Nil(t, rec.Phases[0].Post)
	require.NotNil(t, rec.Phases[1].Post)
	require.NotNil(t, rec.Phases[2].Post)
	ts := strings.Split(targets, ",")
	assert.Equal(t, ts[0], rec.Phases[1].Post.Target, "the first POST goes to the first node")
	assert.Equal(t, ts[1], rec.Phases[2].Post.Target, "the second to the second")
	assert.Equal(t, 200, rec.Phases[1].Post.HTTPStatus)
	assert.Equal(t, "n1", rec.Phases[1].Post.Node)
	assert.Equal(t, int32(2), c.posts.Load())

	free, pro := rec.Tier("free"), rec.Tier("pro")
	require.NotNil(t, free)
	require.NotNil(t, pro)
	assert.Equal(t, 3, free.Keys)
	assert.Equal(t, 20, free.Burst)
	assert.Equal(t, 2, free.Degraded)
	assert.Equal(t, &timeline.Limits{Burst: 600, Limit: 300, Degraded: 60}, free.Cost)
	assert.Equal(t, &timeline.Limits{Burst: 2, Limit: 1, Degraded: 1}, free.Concurrency)
	assert.Equal(t, 20, free.Estimate)
	assert.Equal(t, 15, free.CostPerJob)
	assert.Equal(t, &timeline.Limits{Burst: 9000, Limit: 6000, Degraded: 6000}, pro.Cost)
	assert.Nil(t, pro.Concurrency)
	assert.Equal(t, 60, pro.Estimate, "pro sends no estimate: its default_estimate")
	assert.Equal(t, 40, pro.CostPerJob)
	for s := range 3 {
		assert.Equal(t, 20, free.Admitted[s]+free.Refused[s], "free requests due in second %d", s)
		assert.Equal(t, 15*free.Admitted[s], free.CostAdmitted[s], "free cost admitted in second %d: 15 a job", s)
		assert.Equal(t, 10, pro.Admitted[s], "pro admitted in second %d", s)
		assert.Equal(t, 400, pro.CostAdmitted[s], "pro cost admitted in second %d: 10 jobs of 40", s)
	}
	assert.Equal(t, map[string]int{
		"free 20 15 20ms": 60,
		"pro  40 20ms":    30,
	}, c.jobsSeen(), "every request sent its tier's estimate, cost and work")
	// Whether a free request due near a phase's end reached its node
	// before or after the next POST is the machine's business, so the
	// split of each second is not asserted: the record must hold what the
	// nodes answered, and each state must have reached the load while it
	// was in force.
	assert.Equal(t, int(c.freeOK.Load()), sum(free.Admitted), "free 200s recorded, against the nodes' count")
	assert.Equal(t, int(c.freeRefused.Load()), sum(free.Refused), "free 429s recorded, against the nodes' count")
	assert.Equal(t, 15*int(c.freeOK.Load()), sum(free.CostAdmitted), "free cost admitted, against the nodes' count")
	assert.Equal(t, int(c.freeByCost.Load()), sum(free.RefusedBy["cost"]), "free 429s that named the cost limit")
	assert.Equal(t, int(c.freeRefused.Load()-c.freeByCost.Load()), sum(free.RefusedBy["requests"]), "free 429s that named the requests limit")
	assert.Len(t, free.RefusedBy, 2, "requests and cost, nothing else")
	assert.Nil(t, pro.RefusedBy, "pro: nothing refused")
	assert.Positive(t, free.Admitted[0], "free admitted in NORMAL")
	assert.Equal(t, 20, free.LimitMax[0], "free limit in NORMAL")
	assert.Positive(t, free.Refused[1], "free refused in DEGRADED")
	assert.Equal(t, 2, free.LimitMin[1], "free limit in DEGRADED")
	assert.Positive(t, free.Admitted[2], "free admitted again in NORMAL")
	assert.Equal(t, 20, free.LimitMax[2], "free limit in NORMAL again")
	assert.Equal(t, 100, pro.LimitMin[1], "pro limit in DEGRADED")

	require.Len(t, rec.Nodes, 3)
	s := timeline.Summarize(rec)
	for _, p := range s.Phases[1:] {
		// Agreed is negative unless every node reported the state
		// before the phase ended: the phase is the deadline.
		assert.GreaterOrEqual(t, p.Agreed, time.Duration(0), "%s: every node reported it within the phase", p.Status)
	}
	for _, n := range rec.Nodes {
		assert.Positive(t, n.Polls)
		assert.Zero(t, n.PollErrors)
		require.Len(t, n.Changes, 3, "%s: NORMAL, DEGRADED, NORMAL", n.Name)
		assert.Equal(t, []string{"NORMAL", "DEGRADED", "NORMAL"}, []string{n.Changes[0].Status, n.Changes[1].Status, n.Changes[2].Status})
	}
}

func TestRunWantsTheFirstStateInForce(t *testing.T) {
	c, targets, tiers := start(t)
	c.set(health.Degraded)
	err := run(t.Context(), []string{"-targets", targets, "-admin-token", token, "-config", tiers,
		"-keys", "free=1", "-rate", "free=1", "-out", filepath.Join(t.TempDir(), "t.json")}, noEnv, io.Discard)
	require.Error(t, err)
	assert.Contains(t, err.Error(), "is DEGRADED, the first phase wants NORMAL")
	assert.Equal(t, int32(0), c.posts.Load(), "nothing posted")
}

func TestRunInterruptedPutsTheStateBack(t *testing.T) {
	c, targets, tiers := start(t)
	ctx, cancel := context.WithCancel(t.Context())
	time.AfterFunc(1500*time.Millisecond, cancel) // during DEGRADED
	out := filepath.Join(t.TempDir(), "t.json")
	err := run(ctx, []string{"-targets", targets, "-admin-token", token, "-config", tiers,
		"-phases", "NORMAL=1s,DEGRADED=5s,NORMAL=1s", "-keys", "free=1", "-rate", "free=5", "-out", out}, noEnv, io.Discard)
	require.ErrorIs(t, err, context.Canceled)
	status, _ := c.view(0)
	assert.Equal(t, health.Normal, status, "the run put NORMAL back")
	_, statErr := os.Stat(out)
	assert.NoError(t, statErr, "the record so far is written")
}

func TestRunTokenFromEnvironment(t *testing.T) {
	_, targets, tiers := start(t)
	getenv := func(k string) string {
		if k == "ADMIN_TOKEN" {
			return "wrong"
		}
		return ""
	}
	err := run(t.Context(), []string{"-targets", targets, "-config", tiers, "-keys", "free=1", "-rate", "free=1"}, getenv, io.Discard)
	require.Error(t, err)
	assert.Contains(t, err.Error(), "401", "the token from ADMIN_TOKEN was used, and refused")
}

func TestParseFlagsErrors(t *testing.T) {
	for _, tc := range []struct {
		name string
		args []string
		want string
	}{
		{"no targets", []string{"-admin-token", "x"}, "-targets"},
		{"no token", []string{"-targets", "http://a"}, "-admin-token"},
		{"bad phases", []string{"-targets", "http://a", "-admin-token", "x", "-phases", "NORMAL=1.5s"}, "whole number of seconds"},
		{"bad status", []string{"-targets", "http://a", "-admin-token", "x", "-phases", "CALM=1s"}, "want NORMAL or DEGRADED"},
		{"bad keys", []string{"-targets", "http://a", "-admin-token", "x", "-keys", "free"}, "is not TIER=NUMBER"},
		{"bad rate", []string{"-targets", "http://a", "-admin-token", "x", "-rate", "free=-1"}, "want a positive number"},
		{"twice", []string{"-targets", "http://a", "-admin-token", "x", "-rate", "free=1,free=2"}, "given twice"},
		{"bad estimate", []string{"-targets", "http://a", "-admin-token", "x", "-estimate", "free=0"}, "-estimate"},
		{"bad cost", []string{"-targets", "http://a", "-admin-token", "x", "-cost", "free"}, "-cost"},
		{"negative work", []string{"-targets", "http://a", "-admin-token", "x", "-work", "-1s"}, "-work -1s"},
		{"work past the timeout", []string{"-targets", "http://a", "-admin-token", "x", "-work", "2s"}, "less than -timeout 2s"},
		{"argument", []string{"-targets", "http://a", "-admin-token", "x", "extra"}, "unexpected arguments"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := parseFlags(tc.args, noEnv, io.Discard)
			require.Error(t, err)
			assert.Contains(t, err.Error(), tc.want)
		})
	}
}

func TestParsePhases(t *testing.T) {
	got, err := parsePhases("NORMAL=20s, degraded=1m,NORMAL=5s")
	require.NoError(t, err)
	assert.Equal(t, []phaseSpec{{"NORMAL", 20 * time.Second}, {"DEGRADED", time.Minute}, {"NORMAL", 5 * time.Second}}, got)
}

func TestLoadTiers(t *testing.T) {
	_, _, path := start(t)
	type m = map[string]float64
	for _, tc := range []struct {
		name string
		spec loadSpec
		want string
	}{
		{"too many keys", loadSpec{keys: m{"free": 4}, rate: m{"free": 1}}, "asks for 4 keys, " + path + " has 3 (write more with bench/loadgen -gen-config)"},
		{"rate without keys", loadSpec{keys: m{"free": 1}, rate: m{"free": 1, "pro": 1}}, "tier pro: give both"},
		{"unknown tier", loadSpec{keys: m{"gold": 1}, rate: m{"gold": 1}}, `no tier "gold"`},
		{"fraction of a key", loadSpec{keys: m{"free": 1.5}, rate: m{"free": 1}}, "whole number"},
		{"estimate of an unknown tier", loadSpec{keys: m{"free": 1}, rate: m{"free": 1}, estimate: m{"gold": 1}}, `-estimate: ` + path + ` has no tier "gold"`},
		{"cost of an unknown tier", loadSpec{keys: m{"free": 1}, rate: m{"free": 1}, cost: m{"gold": 1}}, `-cost: ` + path + ` has no tier "gold"`},
		{"fraction of a cost", loadSpec{keys: m{"free": 1}, rate: m{"free": 1}, cost: m{"free": 1.5}}, "-cost free=1.5: want a whole number"},
		{"cost too large", loadSpec{keys: m{"free": 1}, rate: m{"free": 1}, estimate: m{"free": 2e9}}, "-estimate free=2e+09: want a whole number up to 1000000000"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, _, err := loadTiers(path, tc.spec)
			require.Error(t, err)
			assert.Contains(t, err.Error(), tc.want)
		})
	}
	_, loads, err := loadTiers(path, loadSpec{keys: m{"pro": 2, "free": 3}, rate: m{"pro": 10, "free": 20},
		estimate: m{"free": 20, "enterprise": 70}, cost: m{"pro": 40}})
	require.NoError(t, err)
	require.Len(t, loads, 2)
	assert.Equal(t, "free", loads[0].tier.Name, "tiers in the file's (sorted) order")
	assert.Equal(t, []string{"free-0", "free-1", "free-2"}, loads[0].keys)
	assert.Equal(t, []string{"pro-0", "pro-1"}, loads[1].keys, "the first keys in sorted order")
	assert.Equal(t, 150, loads[1].tier.Burst)
	assert.Equal(t, 100, loads[1].tier.Degraded, "degraded defaults to limit")
	assert.Equal(t, 20, loads[0].estimate, "an estimate for a tier not loaded (enterprise) is left alone")
	assert.Equal(t, -1, loads[0].cost, "free: no cost reported")
	assert.Equal(t, 0, loads[1].estimate, "pro: no estimate sent")
	assert.Equal(t, 40, loads[1].cost)
}

func TestJobCost(t *testing.T) {
	_, _, path := start(t)
	_, loads, err := loadTiers(path, loadSpec{keys: map[string]float64{"free": 1, "pro": 1}, rate: map[string]float64{"free": 1, "pro": 1}})
	require.NoError(t, err)
	free, pro := loads[0], loads[1]
	for _, tc := range []struct {
		name              string
		l                 tierLoad
		estimate, cost    int
		reserved, charged int
	}{
		{"estimate and cost", free, 20, 15, 20, 15},
		{"cost only: the default_estimate reserved", free, 0, 15, 30, 15},
		{"estimate only: charged as reserved", free, 20, -1, 20, 20},
		{"neither", free, 0, -1, 30, 30},
		{"a cost of 0", pro, 50, 0, 50, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			l := tc.l
			l.estimate, l.cost = tc.estimate, tc.cost
			assert.Equal(t, tc.reserved, l.reserved(), "reserved")
			assert.Equal(t, tc.charged, l.charged(), "charged")
		})
	}
	// A tier that limits no cost reserves and is charged nothing.
	ent := tierLoad{cost: 60, estimate: 70}
	ent.tier.Name = "enterprise"
	assert.Zero(t, ent.reserved())
	assert.Zero(t, ent.charged())
	assert.Equal(t, []timeline.Tier{{Name: "enterprise"}}, recordTiers([]tierLoad{ent}))
}

func TestJobPath(t *testing.T) {
	l := &load{work: 150 * time.Millisecond}
	assert.Equal(t, "/test?cost=15&work=150ms", l.path(tierLoad{cost: 15}))
	assert.Equal(t, "/test?cost=0&work=150ms", l.path(tierLoad{cost: 0}))
	assert.Equal(t, "/test?work=150ms", l.path(tierLoad{cost: -1}))
	l.work = 0
	assert.Equal(t, "/test", l.path(tierLoad{cost: -1}))
}

func TestRefusedBy(t *testing.T) {
	for body, want := range map[string]string{
		`{"error":{"code":"rate_limited","limit":"cost","message":"cost limit of 60 audio-seconds per 60s exceeded for tier free"}}`: "cost",
		`{"error":{"code":"rate_limited","limit":"concurrency"}}`:                                                                    "concurrency",
		`{"error":{"code":"rate_limited","message":"no limit named"}}`:                                                               "",
		`not json`: "",
		``:         "",
	} {
		assert.Equal(t, want, refusedBy(strings.NewReader(body)), "body %q", body)
	}
}
