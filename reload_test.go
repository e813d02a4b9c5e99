package tierlimit

import (
	"net/http"
	"strconv"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestReloadKeepsCountsAndAppliesTheNewFile(t *testing.T) {
	reg := prometheus.NewRegistry()
	lim, path := newSingle(t, tenSecondTiers, func(c *Config) { c.Registerer = reg })
	hashBefore := lim.file.Tiers().Hash()
	require.Equal(t, 5, admitted(t, lim, "free-1", 8), "free-1 uses up its burst of 5")

	steps := []struct {
		name    string
		doc     string
		wantErr string // "" means taken
		// What free-1 (used up: 5 hits), free-2 and pro-1 get next.
		free1, free2, pro1 int // status codes
	}{
		{"burst raised: the used-up key gets exactly the difference, counts kept",
			`{"window_seconds": 10, "tiers": {"free": {"limit": 3, "burst": 6, "degraded": 1}, "pro": {"limit": 50}},
			  "api_keys": {"free-1": "free", "free-2": "free", "pro-1": "pro"}}`, "", 200, 200, 200},
		{"a bad file is refused, naming the field; the last good one stays",
			`{"window_seconds": 10, "tiers": {"free": {"limit": 3, "burst": 6, "degraded": 9}},
			  "api_keys": {"free-1": "free"}}`, "tiers.free.degraded: 9 is more than limit 3", 429, 200, 200},
		{"a new window is refused",
			`{"window_seconds": 60, "tiers": {"free": {"limit": 100}}, "api_keys": {"free-1": "free"}}`,
			"window_seconds: 60 differs from 10", 429, 200, 200},
		{"pro-1 removed, free-1 moved to pro: 401 at once, and the new tier's limit",
			`{"window_seconds": 10, "tiers": {"free": {"limit": 3, "burst": 6, "degraded": 1}, "pro": {"limit": 50}},
			  "api_keys": {"free-1": "pro", "free-2": "free"}}`, "", 200, 200, 401},
	}
	for _, st := range steps {
		writeTiers(t, path, st.doc)
		err := lim.Reload()
		if st.wantErr != "" {
			require.Error(t, err, "%s: Reload", st.name)
			assert.Contains(t, err.Error(), st.wantErr, st.name)
		} else {
			require.NoError(t, err, "%s: Reload", st.name)
		}
		for key, want := range map[string]int{"free-1": st.free1, "free-2": st.free2, "pro-1": st.pro1} {
			assert.Equal(t, want, hit(t, lim, key).Code, "%s: %s", st.name, key)
		}
	}
	// free-1 is now pro (burst 50), and this is its 8th admitted hit in the
	// window: 5 before the reloads, one after the first, one after the last.
	w := hit(t, lim, "free-1")
	assert.Equal(t, "42", w.Header().Get("X-RateLimit-Remaining"), "free-1's count survived every reload")
	assert.NotEqual(t, hashBefore, lim.file.Tiers().Hash())
	assert.InDelta(t, 2, metricValue(t, reg, "tierlimit_config_reloads_total", "result", "ok"), 0)
	assert.InDelta(t, 2, metricValue(t, reg, "tierlimit_config_reloads_total", "result", "error"), 0)
}

func TestClusterReloadIsPerNodeAndPublishesItsHash(t *testing.T) {
	c := startCluster(t, 3, clusterOpts{steady: true})
	// A key owned by node-2, used up through node-0.
	key := ownedBy(t, c, 2, "free")
	for i := range 20 {
		code, limit := get(t, c.nodes[0], key)
		require.Equal(t, http.StatusOK, code, "request %d, limit %s, share %v", i, limit, c.nodes[0].router.Share())
	}
	code, _ := get(t, c.nodes[0], key)
	require.Equal(t, http.StatusTooManyRequests, code)

	// Only node-0 reloads a file that drops the key; the others keep theirs.
	before := c.nodes[0].file.Tiers().Hash()
	writeTiers(t, c.config, `{"window_seconds": 60, "tiers": {"free": {"limit": 10, "burst": 20, "degraded": 2}},
		"api_keys": {"free-0": "free"}}`)
	require.NoError(t, c.nodes[0].Reload())
	after := c.nodes[0].file.Tiers().Hash()
	require.NotEqual(t, before, after)

	code, _ = get(t, c.nodes[0], key)
	assert.Equal(t, http.StatusUnauthorized, code, "node-0 dropped the key")
	code, _ = get(t, c.nodes[1], key)
	assert.Equal(t, http.StatusTooManyRequests, code, "node-1 has not reloaded: the key is known there, and still used up")
	for _, n := range c.nodes {
		require.Eventually(t, func() bool {
			for _, m := range n.Members() {
				if m.Name == "node-0" {
					return m.ConfigHash == after
				}
			}
			return false
		}, 5*time.Second, 10*time.Millisecond, "%s does not see node-0's new config hash", n.name)
	}
}

// ownedBy returns a key of tier whose owner is node i of c.
func ownedBy(t *testing.T, c *testCluster, i int, tier string) string {
	t.Helper()
	for j := range 50 {
		if k := tier + "-" + strconv.Itoa(j); c.owner(k) == i {
			return k
		}
	}
	t.Fatalf("no %s key owned by node-%d", tier, i)
	return ""
}
