package tierlimit

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil/promlint"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/tierlimit/tierlimit/api"
	"github.com/tierlimit/tierlimit/forward"
	"github.com/tierlimit/tierlimit/tierlimittest"
)

// labelSets returns the label sets of the series called name in g, each as
// "k=v,k=v" in label order, sorted; it fails the test on an empty label
// value anywhere in g.
func labelSets(t *testing.T, g prometheus.Gatherer, name string) []string {
	t.Helper()
	families, err := g.Gather()
	require.NoError(t, err)
	var out []string
	for _, f := range families {
		for _, m := range f.GetMetric() {
			var pairs []string
			for _, l := range m.GetLabel() {
				assert.NotEmpty(t, l.GetValue(), "%s: label %s is empty", f.GetName(), l.GetName())
				pairs = append(pairs, l.GetName()+"="+l.GetValue())
			}
			if f.GetName() == name {
				out = append(out, strings.Join(pairs, ","))
			}
		}
	}
	sort.Strings(out)
	return out
}

// clusterPaths are the decision-time series of a cluster member.
var clusterPaths = []string{"path=blocked", "path=cached", "path=fallback", "path=forwarded", "path=lease", "path=local"}

func TestMetricsArePresentFromTheStart(t *testing.T) {
	t.Run("single node", func(t *testing.T) {
		reg := prometheus.NewRegistry()
		newSingle(t, tenSecondTiers, func(c *Config) { c.Registerer = reg })
		// No request yet.
		assert.Equal(t, []string{
			"outcome=allowed,tier=free", "outcome=allowed,tier=pro",
			"outcome=limited,tier=free", "outcome=limited,tier=pro",
			"outcome=unauthenticated,tier=none",
		}, labelSets(t, reg, "tierlimit_decisions_total"))
		assert.Equal(t, []string{"path=blocked", "path=local"}, labelSets(t, reg, "tierlimit_decision_duration_seconds"))
		assert.Equal(t, []string{"result=error", "result=ok"}, labelSets(t, reg, "tierlimit_config_reloads_total"))
		for _, name := range []string{"tierlimit_health_degraded", "tierlimit_health_version", "tierlimit_store_keys", "tierlimit_store_evictions_total"} {
			assert.Equal(t, []string{""}, labelSets(t, reg, name), "%s: one series without labels", name)
		}
	})
	t.Run("cluster member", func(t *testing.T) {
		c := startCluster(t, 1, clusterOpts{})
		reg := c.nodes[0].cfg.Registerer.(prometheus.Gatherer)
		assert.Equal(t, clusterPaths, labelSets(t, reg, "tierlimit_decision_duration_seconds"))
		assert.Len(t, labelSets(t, reg, "tierlimit_decisions_total"), 3*2+1, "three tiers, allowed and limited, and unauthenticated")
		assert.Equal(t, []string{"reason=breaker_open", "reason=canceled", "reason=closed", "reason=error", "reason=no_peer", "reason=timeout"},
			labelSets(t, reg, "tierlimit_local_fallbacks_total"))
		for _, name := range []string{"tierlimit_overlimit_cache_hits_total", "tierlimit_lease_decisions_total", "tierlimit_cluster_members", "tierlimit_leases"} {
			assert.Equal(t, []string{""}, labelSets(t, reg, name), "%s: one series without labels", name)
		}
	})
}

// TestMetricsOfAClusterMember: after traffic of every kind, a member's
// /metrics passes the linter promtool uses, the breaker of each peer is a
// state label, and the series of a peer that left are gone.
func TestMetricsOfAClusterMember(t *testing.T) {
	c := startCluster(t, 2, clusterOpts{})
	a := c.nodes[0]
	var remote, local string
	for i := range 50 {
		k := fmt.Sprintf("pro-%d", i)
		if c.owner(k) == 1 && remote == "" {
			remote = k
		}
		if c.owner(k) == 0 && local == "" {
			local = k
		}
	}
	require.NotEmpty(t, remote, "no pro key owned by node-1")
	require.NotEmpty(t, local, "no pro key owned by node-0")
	for range 3 {
		code, _ := get(t, a, remote) // forwarded, or from a lease
		require.Equal(t, http.StatusOK, code)
		code, _ = get(t, a, local)
		require.Equal(t, http.StatusOK, code)
	}
	code, _ := get(t, a, "nobody")
	require.Equal(t, http.StatusUnauthorized, code)
	for range 2 * tierlimittest.FreeBurst {
		if code, _ = get(t, a, "free-0"); code == http.StatusTooManyRequests {
			break
		}
	}
	require.Equal(t, http.StatusTooManyRequests, code, "free-0 after twice its burst")

	text := scrape(t, a)
	problems, err := promlint.New(strings.NewReader(text)).Lint()
	require.NoError(t, err)
	assert.Empty(t, problems, "lint problems of /metrics")
	assert.NotContains(t, text, `=""`, "a label with an empty value")
	reg := a.cfg.Registerer.(prometheus.Gatherer)
	assert.Equal(t, []string{"peer=node-1,state=closed", "peer=node-1,state=half_open", "peer=node-1,state=open"},
		labelSets(t, reg, "tierlimit_peer_breaker_state"))
	assert.InDelta(t, 1, metricValue(t, reg, "tierlimit_peer_breaker_state", "peer", "node-1", "state", "closed"), 0)
	assert.Equal(t, []string{"peer=node-1"}, labelSets(t, reg, "tierlimit_forward_duration_seconds"))
	assert.Equal(t, []string{"peer=node-1"}, labelSets(t, reg, "tierlimit_forward_errors_total"))
	assert.Positive(t, metricValue(t, reg, "tierlimit_decisions_total", "tier", "free", "outcome", "limited"))
	assert.InDelta(t, 1, metricValue(t, reg, "tierlimit_decisions_total", "tier", "none", "outcome", "unauthenticated"), 0)
	assert.Regexp(t, `tierlimit_decision_duration_seconds_count\{path="forwarded"\} [1-3]\n`, text, "the checks of the remote key")
	assert.Regexp(t, `tierlimit_decision_duration_seconds_count\{path="local"\} [1-9]`, text)

	// node-1 leaves: its series go with it.
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	require.NoError(t, c.nodes[1].Close(ctx))
	c.waitMembers(1, a)
	text = scrape(t, a)
	assert.NotContains(t, text, `peer="node-1"`, "series of a peer that left")
	for _, name := range []string{"tierlimit_peer_breaker_state", "tierlimit_forward_duration_seconds", "tierlimit_forward_errors_total"} {
		assert.Empty(t, labelSets(t, reg, name), "%s after node-1 left", name)
	}
	assert.True(t, slices.Equal(clusterPaths, labelSets(t, reg, "tierlimit_decision_duration_seconds")), "paths stay")
}

// TestMetricsKnowTheTiersOfAReload: a tier that a reload brings has its
// decision series from the reload on, before its first request.
func TestMetricsKnowTheTiersOfAReload(t *testing.T) {
	reg := prometheus.NewRegistry()
	lim, path := newSingle(t, tenSecondTiers, func(c *Config) { c.Registerer = reg })
	writeTiers(t, path, `{"window_seconds": 10,
		"tiers": {"free": {"limit": 3}, "pro": {"limit": 50}, "gold": {"limit": 500}},
		"api_keys": {"free-1": "free", "gold-1": "gold"}}`)
	require.NoError(t, lim.Reload())
	sets := labelSets(t, reg, "tierlimit_decisions_total")
	assert.Contains(t, sets, "outcome=allowed,tier=gold")
	assert.Contains(t, sets, "outcome=limited,tier=gold")
}

// fakeLimiter answers the series' questions as a test sets it.
type fakeLimiter struct {
	state                     State
	tiers                     []string
	owned, fallback, backups  int
	evictions, refused        uint64
	alive, reachable, leases  int
	credited                  int64
	share                     float64
	members                   []string
	slotsOwned, slotsFallback int
	freed                     int64
	inFlight                  int64
	queue                     api.QueueStats
	breakerStates             map[string]forward.BreakerState
	forwardDeadlines          map[string]time.Duration
}

func (f *fakeLimiter) Health() State            { return f.state }
func (f *fakeLimiter) tierNames() []string      { return f.tiers }
func (f *fakeLimiter) storeLen() int            { return f.owned }
func (f *fakeLimiter) fallbackLen() int         { return f.fallback }
func (f *fakeLimiter) evicted() uint64          { return f.evictions }
func (f *fakeLimiter) aliveMembers() int        { return f.alive }
func (f *fakeLimiter) reachableMembers() int    { return f.reachable }
func (f *fakeLimiter) limitShare() float64      { return f.share }
func (f *fakeLimiter) autoPilot() *autopilot    { return &autopilot{} }
func (f *fakeLimiter) backupLen() int           { return f.backups }
func (f *fakeLimiter) refusedStates() uint64    { return f.refused }
func (f *fakeLimiter) leasesHeld() int          { return f.leases }
func (f *fakeLimiter) leaseHitsCredited() int64 { return f.credited }
func (f *fakeLimiter) slotsHeld() (int, int)    { return f.slotsOwned, f.slotsFallback }
func (f *fakeLimiter) slotsFreed() int64        { return f.freed }
func (f *fakeLimiter) Load() (api.Load, bool) {
	return api.Load{InFlight: f.inFlight, Capacity: 4, Signal: float64(f.inFlight) / 4}, true
}
func (f *fakeLimiter) queueStats() api.QueueStats { return f.queue }
func (f *fakeLimiter) peers() []string            { return f.members }
func (f *fakeLimiter) breakers(time.Time) map[string]forward.BreakerState {
	return f.breakerStates
}
func (f *fakeLimiter) deadlines() map[string]time.Duration { return f.forwardDeadlines }

// newFakeMetrics registers the series of a cluster member that reads f on
// a registry of its own, with cfg's forward deadline.
func newFakeMetrics(t *testing.T, cfg Config, f *fakeLimiter) (*metrics, *prometheus.Registry) {
	t.Helper()
	reg := prometheus.NewRegistry()
	cfg.Registerer = reg
	m, err := newMetrics(cfg, f)
	require.NoError(t, err)
	require.NoError(t, m.registerCluster(f))
	return m, reg
}

// TestMetricsReadTheLimiterThroughInterfaces: every gauge reads what the
// Limiter's interfaces answer when scraped, and the series of a peer that
// is no longer in the ring go.
func TestMetricsReadTheLimiterThroughInterfaces(t *testing.T) {
	f := &fakeLimiter{
		state: State{Status: Degraded, Version: 7}, tiers: []string{"free"},
		owned: 11, fallback: 3, backups: 5, evictions: 2, refused: 1, alive: 3, reachable: 1, share: 1.0 / 3, leases: 4, credited: 23, slotsOwned: 6, slotsFallback: 2, freed: 9, inFlight: 6,
		members:          []string{"node-1", "node-2"},
		breakerStates:    map[string]forward.BreakerState{"node-1": forward.BreakerOpen},
		forwardDeadlines: map[string]time.Duration{"node-1": 3 * time.Millisecond},
	}
	m, reg := newFakeMetrics(t, Config{ForwardTimeoutMax: DefaultForwardTimeoutMax, Capacity: 4}, f)
	m.Forwarded("node-1", time.Millisecond, nil)
	m.Forwarded("node-2", time.Millisecond, errors.New("no answer"))

	for _, tt := range []struct {
		name   string
		labels []string
		want   float64
	}{
		{"tierlimit_store_keys", nil, 11},
		{"tierlimit_fallback_store_keys", nil, 3},
		{"tierlimit_backup_keys", nil, 5},
		{"tierlimit_store_evictions_total", nil, 2},
		{"tierlimit_health_degraded", nil, 1},
		{"tierlimit_health_version", nil, 7},
		{"tierlimit_health_states_refused_total", nil, 1},
		{"tierlimit_cluster_members", nil, 3},
		{"tierlimit_cluster_reachable_members", nil, 1},
		{"tierlimit_limit_share", nil, 1.0 / 3},
		{"tierlimit_leases", nil, 4},
		{"tierlimit_lease_hits_credited_total", nil, 23},
		{"tierlimit_slots_held", []string{"table", "owned"}, 6},
		{"tierlimit_slots_held", []string{"table", "fallback"}, 2},
		{"tierlimit_slots_freed_total", nil, 9},
		{"tierlimit_requests_in_flight", nil, 6},
		{"tierlimit_load_signal", nil, 1.5},
		{"tierlimit_peer_breaker_state", []string{"peer", "node-1", "state", "open"}, 1},
		{"tierlimit_peer_breaker_state", []string{"peer", "node-2", "state", "closed"}, 1},
		{"tierlimit_forward_deadline_seconds", []string{"peer", "node-1"}, 0.003},
		{"tierlimit_forward_errors_total", []string{"peer", "node-2"}, 1},
	} {
		assert.InDelta(t, tt.want, metricValue(t, reg, tt.name, tt.labels...), 1e-9, "%s%v", tt.name, tt.labels)
	}
	assert.Equal(t, []string{"outcome=allowed,tier=free", "outcome=limited,tier=free", "outcome=unauthenticated,tier=none"},
		labelSets(t, reg, "tierlimit_decisions_total"), "the tiers the Limiter named")

	f.members = []string{"node-1"} // node-2 left the ring
	assert.Equal(t, []string{"peer=node-1"}, labelSets(t, reg, "tierlimit_forward_duration_seconds"))
	assert.Equal(t, []string{"peer=node-1"}, labelSets(t, reg, "tierlimit_forward_errors_total"))
	assert.Equal(t, []string{"peer=node-1,state=closed", "peer=node-1,state=half_open", "peer=node-1,state=open"},
		labelSets(t, reg, "tierlimit_peer_breaker_state"))
}

// TestForwardDurationCoversTheDeadline: a forwarded check that gave up at
// the longest deadline it may get, or noticed it up to a quarter late,
// lands in a finite bucket of tierlimit_forward_duration_seconds, not in
// +Inf; the buckets resolve 25 µs to 25 ms whatever the deadline, the same
// ten for every deadline up to 20 ms.
func TestForwardDurationCoversTheDeadline(t *testing.T) {
	tests := []struct {
		name    string
		cfg     Config
		longest time.Duration
	}{
		{"default adaptive maximum", Config{ForwardTimeoutMin: DefaultForwardTimeoutMin, ForwardTimeoutMax: DefaultForwardTimeoutMax}, DefaultForwardTimeoutMax},
		{"adaptive maximum of 4ms", Config{ForwardTimeoutMin: time.Millisecond, ForwardTimeoutMax: 4 * time.Millisecond}, 4 * time.Millisecond},
		{"adaptive maximum of 20ms", Config{ForwardTimeoutMin: time.Millisecond, ForwardTimeoutMax: 20 * time.Millisecond}, 20 * time.Millisecond},
		{"adaptive maximum of 300ms", Config{ForwardTimeoutMin: time.Millisecond, ForwardTimeoutMax: 300 * time.Millisecond}, 300 * time.Millisecond},
		{"fixed 5ms", Config{ForwardTimeout: 5 * time.Millisecond, ForwardTimeoutMax: DefaultForwardTimeoutMax}, 5 * time.Millisecond},
		{"fixed 80ms above the adaptive maximum", Config{ForwardTimeout: 80 * time.Millisecond, ForwardTimeoutMax: DefaultForwardTimeoutMax}, 80 * time.Millisecond},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m, reg := newFakeMetrics(t, tt.cfg, &fakeLimiter{members: []string{"node-1"}})
			m.Forwarded("node-1", tt.longest, context.DeadlineExceeded)
			m.Forwarded("node-1", tt.longest+tt.longest/4, context.DeadlineExceeded)
			bounds, counts := histogram(t, reg, "tierlimit_forward_duration_seconds")
			require.NotEmpty(t, bounds)
			assert.InDelta(t, 25e-6, bounds[0], 1e-12, "lowest bound")
			assert.GreaterOrEqual(t, bounds[len(bounds)-1], (tt.longest + tt.longest/4).Seconds(), "highest bound, for a deadline of %v", tt.longest)
			assert.Equal(t, uint64(2), counts[len(counts)-1], "forwards at the deadline %v (and a quarter past it) in the highest finite bucket, le=%g", tt.longest, bounds[len(bounds)-1])
			for _, d := range []time.Duration{50 * time.Microsecond, time.Millisecond, 25 * time.Millisecond} {
				assert.Contains(t, bounds, d.Seconds(), "a bucket ending at %v", d)
			}
			if tt.longest <= 20*time.Millisecond {
				assert.Equal(t, []float64{25e-6, 50e-6, 100e-6, 250e-6, 500e-6, 1e-3, 2.5e-3, 5e-3, 10e-3, 25e-3}, bounds)
			}
		})
	}
}

// histogram returns the bucket bounds and cumulative counts of the one
// histogram series called name in g, +Inf left out.
func histogram(t *testing.T, g prometheus.Gatherer, name string) (bounds []float64, counts []uint64) {
	t.Helper()
	families, err := g.Gather()
	require.NoError(t, err)
	for _, f := range families {
		if f.GetName() != name {
			continue
		}
		require.Len(t, f.GetMetric(), 1, "series of %s", name)
		for _, b := range f.GetMetric()[0].GetHistogram().GetBucket() {
			bounds = append(bounds, b.GetUpperBound())
			counts = append(counts, b.GetCumulativeCount())
		}
		return bounds, counts
	}
	t.Fatalf("no %s in the registry", name)
	return nil, nil
}
