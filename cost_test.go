package tierlimit

import (
	"errors"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strconv"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
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

// TestClusterRefusesCostUntilCountedAcrossIt: a tiers file that limits
// cost or concurrency is refused by a cluster member, at start and at
// reload (the file in force stays), naming the field.
func TestClusterRefusesCostUntilCountedAcrossIt(t *testing.T) {
	path := writeTiers(t, filepath.Join(t.TempDir(), "tiers.json"), costTiers)
	_, err := New(Config{TiersFile: path, NodeName: "n", AdminToken: testToken,
		GossipAddr: "127.0.0.1:0", GRPCAddr: "127.0.0.1:0"})
	var ce *ConfigError
	require.True(t, errors.As(err, &ce), "%v", err)
	assert.Equal(t, "TiersFile", ce.Field)
	assert.Contains(t, err.Error(), "tiers.free.cost: cost and concurrency limits are counted on a single node only")

	c := startCluster(t, 1, clusterOpts{})
	nd := c.nodes[0]
	before := nd.file.Tiers().Hash()
	writeTiers(t, c.config, costTiers)
	err = nd.Reload()
	require.Error(t, err)
	assert.Contains(t, err.Error(), "tiers.free.cost: cost and concurrency limits are counted on a single node only")
	assert.Equal(t, before, nd.file.Tiers().Hash(), "the file in force stays")
}
