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
	"github.com/tierlimit/tierlimit/bench/plot/internal/loadrun"
	"github.com/tierlimit/tierlimit/bench/plot/surge"
	"github.com/tierlimit/tierlimit/health"
)

const token = "test-token"

// fakeCluster is three nodes that share one health state and answer GET
// /test by it: in DEGRADED every free request is refused, the rest are
// admitted and held for their ?work=. Unless the state is pinned (a POST
// of a status), it switches by counts, not by time: the switchAt-th free
// request (and every one after it) finds it DEGRADED, and once freeTotal
// free requests have come, the backAfter-th paid request after them puts
// NORMAL back.
type fakeCluster struct {
	tiers                          map[string]string // API key -> tier
	capacity                       int               // reported as the load's; 0 for none
	switchAt, freeTotal, backAfter int

	// mu guards the fields below.
	mu                sync.Mutex
	status            health.Status
	pinned            bool
	version           uint64
	why               string
	updated           time.Time
	free, paidAfter   int
	admitted, refused map[string]int // per tier
	posts             []string
}

// admittedOf returns the requests of tier the nodes admitted.
func (c *fakeCluster) admittedOf(tier string) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.admitted[tier]
}

func (c *fakeCluster) setLocked(s health.Status, why string) {
	c.status, c.why, c.updated = s, why, time.Now()
	c.version++
}

// test answers GET /test.
func (c *fakeCluster) test(w http.ResponseWriter, r *http.Request) {
	tier, ok := c.tiers[r.Header.Get("X-API-Key")]
	if !ok {
		w.WriteHeader(http.StatusUnauthorized)
		return
	}
	c.mu.Lock()
	if tier == "free" {
		c.free++
		if !c.pinned && c.status == health.Normal && c.switchAt > 0 && c.free >= c.switchAt {
			c.setLocked(health.Degraded, "auto: fake demand")
		}
	} else if !c.pinned && c.status == health.Degraded && c.free >= c.freeTotal {
		c.paidAfter++
		if c.paidAfter >= c.backAfter {
			c.setLocked(health.Normal, "auto: fake calm")
		}
	}
	refuse := tier == "free" && c.status == health.Degraded
	if refuse {
		c.refused[tier]++
	} else {
		c.admitted[tier]++
	}
	c.mu.Unlock()
	if refuse {
		w.WriteHeader(http.StatusTooManyRequests)
		return
	}
	if work, err := time.ParseDuration(r.URL.Query().Get("work")); err == nil {
		time.Sleep(work)
	}
	_, _ = io.WriteString(w, `{"ok":true}`)
}

// health answers GET and POST /system/health as node name.
func (c *fakeCluster) health(name string) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Authorization") != "Bearer "+token {
			w.WriteHeader(http.StatusUnauthorized)
			return
		}
		c.mu.Lock()
		defer c.mu.Unlock()
		if r.Method == http.MethodPost {
			body, _ := io.ReadAll(r.Body)
			c.posts = append(c.posts, string(body))
			var b struct {
				Status health.Status `json:"status"`
			}
			if err := json.Unmarshal(body, &b); err != nil {
				w.WriteHeader(http.StatusBadRequest)
				return
			}
			c.pinned = true
			c.setLocked(b.Status, "admin")
		}
		h := api.HealthResponse{Status: c.status, Version: c.version, Origin: "n1", UpdatedAt: c.updated, Node: name, Why: c.why, Mode: api.ModeAuto}
		if c.pinned {
			h.Mode = api.ModeManual
		}
		if c.capacity > 0 {
			h.Load = &api.Load{Capacity: c.capacity, Signal: 0.5}
			h.Cluster = &api.ClusterLoad{Saturation: 0.5, Demand: 0.5, Known: 3, Writer: "n1", High: 1, Low: 0.75, UpHold: "2s", DownHold: "15s"}
		}
		_ = json.NewEncoder(w).Encode(h)
	}
}

// start returns a 3-node fake cluster, its targets and a tiers file with
// its keys: 3 free, 2 pro.
func start(t *testing.T) (*fakeCluster, string, string) {
	t.Helper()
	c := &fakeCluster{tiers: map[string]string{}, capacity: 4, version: 1, updated: time.Now(),
		admitted: map[string]int{}, refused: map[string]int{}}
	for _, tier := range []string{"free", "pro"} {
		for i := range map[string]int{"free": 3, "pro": 2}[tier] {
			c.tiers[fmt.Sprintf("%s-%d", tier, i)] = tier
		}
	}
	var targets []string
	for i := range 3 {
		mux := http.NewServeMux()
		mux.HandleFunc("/test", c.test)
		mux.HandleFunc("/system/health", c.health(fmt.Sprintf("n%d", i+1)))
		s := httptest.NewServer(mux)
		t.Cleanup(s.Close)
		targets = append(targets, s.URL)
	}
	doc, err := json.Marshal(map[string]any{
		"window_seconds": 60,
		"tiers": map[string]any{
			"free": map[string]int{"limit": 150, "burst": 150, "degraded": 2},
			"pro":  map[string]int{"limit": 1000},
		},
		"api_keys": c.tiers,
	})
	require.NoError(t, err)
	path := filepath.Join(t.TempDir(), "tiers.json")
	require.NoError(t, os.WriteFile(path, doc, 0o644))
	return c, strings.Join(targets, ","), path
}

func noEnv(string) string { return "" }

func sum(xs []int) int {
	n := 0
	for _, x := range xs {
		n += x
	}
	return n
}

// args are a short run's: 2 s calm, a 1 s surge of 20 free requests, 1 s
// calm; pro at 20 a second throughout; jobs of 10 ms.
func args(targets, tiers, mode, out string) []string {
	return []string{"-targets", targets, "-admin-token", token, "-config", tiers, "-mode", mode,
		"-keys", "free=3,pro=2", "-base", "pro=20", "-surge", "free=20", "-paid", "pro",
		"-before", "2s", "-surge-for", "1s", "-after", "1s", "-work", "10ms", "-timeout", "2s",
		"-poll", "10ms", "-wait", "2s", "-settle", "5s", "-commit", "abc1234", "-out", out}
}

func TestRunAuto(t *testing.T) {
	c, targets, tiers := start(t)
	c.switchAt, c.freeTotal, c.backAfter = 5, 20, 5
	out := filepath.Join(t.TempDir(), "auto.json")
	var stderr strings.Builder
	require.NoError(t, run(t.Context(), args(targets, tiers, surge.ModeAuto, out), noEnv, &stderr), stderr.String())
	assert.Empty(t, c.posts, "auto posts nothing")
	for _, want := range []string{
		"cluster: 3 nodes x 4 slots, jobs of 10ms: 1200 jobs/s\n",
		"surge 2-3 s: free=20 pro=20 = 40 req/s, 0.03 of capacity\n",
		"  free: 3 keys, 6.667 requests per key in 1s: within the NORMAL limit 150, over the DEGRADED limit 2 per 1m0s\n",
		"wrote " + out,
		"state changes: 2 (1 to DEGRADED, 1 to NORMAL)",
	} {
		assert.Contains(t, stderr.String(), want)
	}

	f, err := surge.ReadFile(out)
	require.NoError(t, err)
	assert.Equal(t, "abc1234", f.Commit)
	require.Len(t, f.Runs, 1)
	r := f.Runs[0]
	assert.Equal(t, "auto", r.Name)
	assert.Equal(t, surge.ModeAuto, r.Mode)
	assert.Equal(t, 4, r.Seconds)
	assert.Equal(t, 4, r.Capacity)
	assert.Equal(t, 60, r.WindowSeconds)
	assert.Equal(t, &surge.Settings{High: 1, Low: 0.75, UpHold: "2s", DownHold: "15s"}, r.Settings)
	assert.Equal(t, []string{"pro"}, r.Paid)
	require.Len(t, r.Phases, 3)
	assert.Equal(t, map[string]float64{"free": 20, "pro": 20}, r.Phases[1].Rates)

	free, pro := r.Tier("free"), r.Tier("pro")
	require.NotNil(t, free)
	require.NotNil(t, pro)
	assert.Equal(t, 2, free.Degraded)
	assert.Equal(t, []int{0, 0, 4, 0}, free.Admitted, "the 5th free request found DEGRADED")
	assert.Equal(t, []int{0, 0, 16, 0}, free.Refused)
	assert.Equal(t, []int{20, 20, 20, 20}, pro.Admitted)
	assert.Equal(t, 80, c.admittedOf("pro"), "the record holds what the nodes answered")
	assert.Zero(t, sum(pro.Failed)+sum(pro.Unsent)+sum(pro.Refused))
	for s := range 4 {
		assert.Len(t, pro.Latency[s], 20, "second %d: a latency per request", s)
		for _, l := range pro.Latency[s] {
			assert.GreaterOrEqual(t, l, 10.0, "a job of 10 ms takes at least as long")
		}
	}
	assert.Nil(t, free.Latency, "free is not paid")

	require.Len(t, r.Nodes, 3)
	for _, n := range r.Nodes {
		var statuses []string
		for _, ch := range n.Changes {
			statuses = append(statuses, ch.Status)
		}
		assert.Equal(t, []string{"NORMAL", "DEGRADED", "NORMAL"}, statuses, n.Name)
		assert.Equal(t, "n1", n.Writer)
		assert.Zero(t, n.PollErrors)
		assert.Equal(t, 0.5, n.Saturation[1])
	}
	require.NotNil(t, r.Summary)
	s := *r.Summary
	assert.Equal(t, 2, s.Switches)
	assert.Equal(t, "auto: fake demand", s.DegradedWhy)
	assert.Equal(t, "auto: fake calm", s.NormalWhy)
	assert.GreaterOrEqual(t, s.ToDegraded, 0.0)
	assert.GreaterOrEqual(t, s.DegradedWritten, 0.0)
	assert.Equal(t, surge.Totals{Tier: "free", Due: 20, Admitted: 4, Refused: 16}, s.Tiers[0])
}

func TestRunManual(t *testing.T) {
	c, targets, tiers := start(t)
	c.switchAt, c.freeTotal, c.backAfter = 5, 20, 5 // pinned: never used
	out := filepath.Join(t.TempDir(), "manual.json")
	var stderr strings.Builder
	a := append(args(targets, tiers, surge.ModeManual, out), "-name", "baseline")
	require.NoError(t, run(t.Context(), a, noEnv, &stderr), stderr.String())
	assert.Equal(t, []string{`{"status":"NORMAL"}`}, c.posts, "one POST, of NORMAL")
	assert.Contains(t, stderr.String(), "state changes: 0 (0 to DEGRADED, 0 to NORMAL)")

	f, err := surge.ReadFile(out)
	require.NoError(t, err)
	r := f.Runs[0]
	assert.Equal(t, "baseline", r.Name)
	assert.Equal(t, surge.ModeManual, r.Mode)
	assert.Equal(t, []int{0, 0, 20, 0}, r.Tier("free").Admitted, "pinned NORMAL: every free request admitted")
	for _, n := range r.Nodes {
		require.Len(t, n.Changes, 1, n.Name)
		assert.Equal(t, "NORMAL", n.Changes[0].Status)
		assert.Equal(t, surge.ModeManual, n.Changes[0].Mode)
	}
	assert.Equal(t, -1.0, r.Summary.ToDegraded)
}

func TestRunAutoWantsAutoMode(t *testing.T) {
	c, targets, tiers := start(t)
	c.pinned, c.why = true, "admin"
	err := run(t.Context(), args(targets, tiers, surge.ModeAuto, filepath.Join(t.TempDir(), "a.json")), noEnv, io.Discard)
	require.Error(t, err)
	assert.Contains(t, err.Error(), `is in manual mode (admin): POST {"mode":"auto"} first, or start a fresh cluster`)
	assert.Empty(t, c.posts)
}

func TestRunWantsALoadSignal(t *testing.T) {
	c, targets, tiers := start(t)
	c.capacity = 0
	err := run(t.Context(), args(targets, tiers, surge.ModeManual, filepath.Join(t.TempDir(), "a.json")), noEnv, io.Discard)
	require.Error(t, err)
	assert.Contains(t, err.Error(), "has no load signal: start the nodes with -capacity")
}

func TestLoadTimeoutAndUnsent(t *testing.T) {
	release := make(chan struct{})
	s := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-r.Context().Done():
		case <-release:
		}
	}))
	t.Cleanup(s.Close)
	t.Cleanup(func() { close(release) })
	count := surge.NewCounter([]surge.Tier{{Name: "pro"}}, 1, 50*time.Millisecond, []string{"pro"})
	l := &load{Senders: loadrun.NewSenders([]string{s.URL}, time.Now(), 1), client: s.Client(), count: count,
		path: jobPath(time.Millisecond), timeout: 50 * time.Millisecond}

	// Nobody answers: the request fails at the timeout.
	l.send(t.Context(), "pro", "k", 0)
	pro := count.Tiers()[0]
	assert.Equal(t, []int{1}, pro.Failed)
	assert.Equal(t, []int{1}, pro.TimedOut)
	require.Len(t, pro.Latency[0], 1)
	assert.GreaterOrEqual(t, pro.Latency[0][0], 50.0, "at the timeout at least")

	// Every slot taken: the requests due are not sent, and count as unsent.
	hold := make(chan struct{})
	require.True(t, l.Go(func() { <-hold }))
	l.run(t.Context(), tierLoad{name: "pro", keys: []string{"k"}},
		[]surge.Phase{{Start: 0, End: surge.Offset(30 * time.Millisecond), Rates: map[string]float64{"pro": 100}}}, 0, 1)
	close(hold)
	l.Wait()
	pro = count.Tiers()[0]
	assert.Equal(t, []int{3}, pro.Unsent)
	assert.Equal(t, []int{1}, pro.Failed, "nothing more sent")
	assert.Len(t, pro.Latency[0], 4, "the unsent count in the latencies too")
	for _, v := range pro.Latency[0] {
		assert.GreaterOrEqual(t, v, 50.0)
	}
}

// TestLoadHonoursRetryAfter: with backoff, a key that got a 429 with
// Retry-After 1 sends nothing for that second; its requests due meanwhile
// count as deferred, another key's go on.
func TestLoadHonoursRetryAfter(t *testing.T) {
	var sent sync.Map // key -> *atomic.Int64
	s := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n, _ := sent.LoadOrStore(r.Header.Get("X-API-Key"), new(atomic.Int64))
		n.(*atomic.Int64).Add(1)
		if r.Header.Get("X-API-Key") == "refused" {
			w.Header().Set("Retry-After", "1")
			w.WriteHeader(http.StatusTooManyRequests)
		}
	}))
	t.Cleanup(s.Close)
	count := surge.NewCounter([]surge.Tier{{Name: "free"}}, 1, time.Second, nil)
	l := &load{Senders: loadrun.NewSenders([]string{s.URL}, time.Now(), 10), client: s.Client(), count: count,
		path: "/test", timeout: time.Second, backoff: make(map[string]time.Duration)}
	// 20 requests over 200 ms, the two keys taking turns.
	l.run(t.Context(), tierLoad{name: "free", keys: []string{"refused", "fine"}},
		[]surge.Phase{{Start: 0, End: surge.Offset(200 * time.Millisecond), Rates: map[string]float64{"free": 100}}}, 0, 1)
	l.Wait()
	free := count.Tiers()[0]
	refused, _ := sent.Load("refused")
	fine, _ := sent.Load("fine")
	assert.Equal(t, int64(10), fine.(*atomic.Int64).Load(), "the other key sends all its requests")
	// The refused key's first request is answered within its 10 ms turn in
	// all but a very slow run; those due before its answer came still left.
	got := refused.(*atomic.Int64).Load()
	assert.GreaterOrEqual(t, got, int64(1))
	assert.Equal(t, []int{int(got)}, free.Refused)
	assert.Equal(t, []int{10 - int(got)}, free.Deferred, "its other requests wait out the Retry-After")
	assert.Equal(t, []int{10}, free.Admitted)
}

func TestLoadInterruptedCountsNothing(t *testing.T) {
	s := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { <-r.Context().Done() }))
	t.Cleanup(s.Close)
	count := surge.NewCounter([]surge.Tier{{Name: "pro"}}, 1, time.Minute, nil)
	l := &load{Senders: loadrun.NewSenders([]string{s.URL}, time.Now(), 1), client: s.Client(), count: count,
		path: "/test", timeout: time.Minute}
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	l.send(ctx, "pro", "k", 0)
	assert.Equal(t, []int{0}, count.Tiers()[0].Failed)
}

func TestDueTimes(t *testing.T) {
	ms := func(n int) time.Duration { return time.Duration(n) * time.Millisecond }
	assert.Equal(t, []time.Duration{ms(1000), ms(1250), ms(1500), ms(1750)}, dueTimes(ms(1000), ms(2000), 4, 0))
	assert.Equal(t, []time.Duration{ms(1125), ms(1375), ms(1625), ms(1875)}, dueTimes(ms(1000), ms(2000), 4, 0.5))
	assert.Len(t, dueTimes(0, 30*time.Second, 360, 0.5), 10800)
	assert.Nil(t, dueTimes(0, time.Second, 0, 0))
}

func TestJobPath(t *testing.T) {
	assert.Equal(t, "/test?work=100ms", jobPath(100*time.Millisecond))
	assert.Equal(t, "/test", jobPath(0))
}

func TestParseFlagsErrors(t *testing.T) {
	base := []string{"-targets", "http://a", "-admin-token", "x", "-mode", "auto", "-out", "o.json"}
	for _, tc := range []struct {
		name string
		args []string
		want string
	}{
		{"no targets", []string{"-admin-token", "x", "-mode", "auto", "-out", "o"}, "-targets"},
		{"no token", []string{"-targets", "http://a", "-mode", "auto", "-out", "o"}, "-admin-token"},
		{"no mode", []string{"-targets", "http://a", "-admin-token", "x", "-out", "o"}, `-mode "": want manual or auto`},
		{"no out", []string{"-targets", "http://a", "-admin-token", "x", "-mode", "auto"}, "-out is required"},
		{"fraction of a second", append(base, "-surge-for", "1500ms"), "-surge-for 1.5s: want a whole number of seconds"},
		{"no surge", append(base, "-surge-for", "0s"), "-surge-for 0s"},
		{"short calm", append(base, "-before", "1s"), "-before 1s: want at least 2s"},
		{"work past the timeout", append(base, "-work", "10s"), "less than -timeout 10s"},
		{"bad rate", append(base, "-base", "pro=-1"), "-base"},
		{"zero keys", append(base, "-keys", "pro=0"), "-keys"},
		{"paid without keys", append(base, "-paid", "gold"), "-paid gold: not a tier of -keys"},
		{"argument", append(base, "extra"), "unexpected arguments"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := parseFlags(tc.args, noEnv, io.Discard)
			require.Error(t, err)
			assert.Contains(t, err.Error(), tc.want)
		})
	}
	o, err := parseFlags(append(base, "-surge", ""), noEnv, io.Discard)
	require.NoError(t, err)
	assert.Equal(t, "auto", o.name, "the name defaults to the mode")
	assert.Empty(t, o.surge, "no surge rates: allowed (a run with none)")
}

func TestLoadTiersErrors(t *testing.T) {
	_, _, path := start(t)
	type m = map[string]float64
	for _, tc := range []struct {
		name              string
		keys, base, surge m
		want              string
	}{
		{"unknown tier", m{"gold": 1}, m{"gold": 1}, m{}, `-keys: ` + path + ` has no tier "gold"`},
		{"rate without keys", m{"pro": 1}, m{"pro": 1, "free": 1}, m{}, "-base: tier free has no -keys"},
		{"keys without a rate", m{"pro": 1, "free": 1}, m{"pro": 1}, m{}, "-keys: tier free has no rate"},
		{"too many keys", m{"free": 4}, m{}, m{"free": 1}, "asks for 4 keys"},
		{"fraction of a key", m{"free": 1.5}, m{}, m{"free": 1}, "whole number"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, _, err := loadTiers(path, tc.keys, tc.base, tc.surge)
			require.Error(t, err)
			assert.Contains(t, err.Error(), tc.want)
		})
	}
	_, loads, err := loadTiers(path, m{"pro": 2, "free": 3}, m{"pro": 30}, m{"free": 360})
	require.NoError(t, err)
	require.Len(t, loads, 2)
	assert.Equal(t, "free", loads[0].name, "in the file's (sorted) order")
	assert.Equal(t, []string{"free-0", "free-1", "free-2"}, loads[0].keys)
	assert.Equal(t, 1000, loads[1].tier.Degraded)
}
