package tierlimit

import (
	"context"
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
