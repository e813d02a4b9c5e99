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
// rest.
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
	// to free keys.
	freeOK, freeRefused atomic.Int32
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
		tier, ok := c.tiers[r.Header.Get("X-API-Key")]
		if !ok {
			w.WriteHeader(http.StatusUnauthorized)
			return
		}
		status, _ := c.view(i)
		limit := map[string]int{"free": 20, "pro": 150}[tier]
		if status == health.Degraded {
			limit = map[string]int{"free": 2, "pro": 100}[tier]
		}
		w.Header().Set("X-RateLimit-Limit", fmt.Sprint(limit))
		if tier == "free" && status == health.Degraded {
			c.freeRefused.Add(1)
			w.WriteHeader(http.StatusTooManyRequests)
			return
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
		"tiers":          map[string]any{"free": map[string]int{"limit": 10, "burst": 20, "degraded": 2}, "pro": map[string]int{"limit": 100, "burst": 150}},
		"api_keys":       keys,
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
		"-poll", "10ms", "-out", out,
	}, noEnv, &stderr)
	require.NoError(t, err, "run: %s", stderr.String())
	assert.Contains(t, stderr.String(), "free: 3 keys, 6.667 req/s each = 400 per key per 1m0s window: over the NORMAL limit 20, over the DEGRADED limit 2")
	assert.Contains(t, stderr.String(), "every node reported it")

	rec, err := timeline.ReadFile(out)
	require.NoError(t, err)
	assert.Equal(t, 3, rec.Seconds)
	assert.Equal(t, 60, rec.WindowSeconds)
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
	for s := range 3 {
		assert.Equal(t, 20, free.Admitted[s]+free.Refused[s], "free requests due in second %d", s)
		assert.Equal(t, 10, pro.Admitted[s], "pro admitted in second %d", s)
	}
	// Whether a free request due near a phase's end reached its node
	// before or after the next POST is the machine's business, so the
	// split of each second is not asserted: the record must hold what the
	// nodes answered, and each state must have reached the load while it
	// was in force.
	assert.Equal(t, int(c.freeOK.Load()), sum(free.Admitted), "free 200s recorded, against the nodes' count")
	assert.Equal(t, int(c.freeRefused.Load()), sum(free.Refused), "free 429s recorded, against the nodes' count")
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
	for _, tc := range []struct {
		name       string
		keys, rate map[string]float64
		want       string
	}{
		{"too many keys", map[string]float64{"free": 4}, map[string]float64{"free": 1}, "asks for 4 keys"},
		{"rate without keys", map[string]float64{"free": 1}, map[string]float64{"free": 1, "pro": 1}, "tier pro: give both"},
		{"unknown tier", map[string]float64{"gold": 1}, map[string]float64{"gold": 1}, `no tier "gold"`},
		{"fraction of a key", map[string]float64{"free": 1.5}, map[string]float64{"free": 1}, "whole number"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, _, err := loadTiers(path, tc.keys, tc.rate)
			require.Error(t, err)
			assert.Contains(t, err.Error(), tc.want)
		})
	}
	_, loads, err := loadTiers(path, map[string]float64{"pro": 2, "free": 3}, map[string]float64{"pro": 10, "free": 20})
	require.NoError(t, err)
	require.Len(t, loads, 2)
	assert.Equal(t, "free", loads[0].tier.Name, "tiers in the file's (sorted) order")
	assert.Equal(t, []string{"free-0", "free-1", "free-2"}, loads[0].keys)
	assert.Equal(t, []string{"pro-0", "pro-1"}, loads[1].keys, "the first keys in sorted order")
	assert.Equal(t, 150, loads[1].tier.Burst)
	assert.Equal(t, 100, loads[1].tier.Degraded, "degraded defaults to limit")
}
