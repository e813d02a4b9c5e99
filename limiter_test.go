package tierlimit

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/tierlimit/tierlimit/cluster"
)

// writeTiers writes doc as a tiers file in dir and returns its path.
func writeTiers(t testing.TB, path, doc string) string {
	t.Helper()
	require.NoError(t, os.WriteFile(path, []byte(doc), 0o600))
	return path
}

const tenSecondTiers = `{"window_seconds": 10,
	"tiers": {"free": {"limit": 3, "burst": 5, "degraded": 1}, "pro": {"limit": 50}},
	"api_keys": {"free-1": "free", "free-2": "free", "pro-1": "pro"}}`

// newSingle starts a single-node Limiter on a tiers file written from doc,
// closed when the test ends.
func newSingle(t *testing.T, doc string, edit func(*Config)) (*Limiter, string) {
	t.Helper()
	path := writeTiers(t, filepath.Join(t.TempDir(), "tiers.json"), doc)
	cfg := Config{TiersFile: path, NodeName: "solo", AdminToken: testToken}
	if edit != nil {
		edit(&cfg)
	}
	lim, err := New(cfg)
	require.NoError(t, err)
	t.Cleanup(func() { _ = lim.Close(context.Background()) })
	return lim, path
}

// hit sends one request with key through lim's middleware.
func hit(t *testing.T, lim *Limiter, key string) *httptest.ResponseRecorder {
	t.Helper()
	r := httptest.NewRequestWithContext(t.Context(), http.MethodPost, "/v1/transcribe", nil)
	r.Header.Set("X-API-Key", key)
	w := httptest.NewRecorder()
	lim.Middleware(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusOK)
	})).ServeHTTP(w, r)
	return w
}

// admitted sends n requests with key and returns how many got 200.
func admitted(t *testing.T, lim *Limiter, key string, n int) int {
	t.Helper()
	ok := 0
	for range n {
		if hit(t, lim, key).Code == http.StatusOK {
			ok++
		}
	}
	return ok
}

func TestNewRefusesBadConfig(t *testing.T) {
	good := writeTiers(t, filepath.Join(t.TempDir(), "tiers.json"), tenSecondTiers)
	tests := []struct {
		name  string
		cfg   Config
		field string
		msg   string
	}{
		{"no key store", Config{}, "TiersFile", "nothing maps API keys to tiers"},
		{"file and keys", Config{TiersFile: good, Keys: mapKeys{}}, "TiersFile", "give one"},
		{"fractional window", Config{Keys: mapKeys{}, Window: 1500 * time.Millisecond}, "Window", "whole number of seconds"},
		{"window differs from the file", Config{TiersFile: good, Window: time.Minute}, "Window", "differs from the window_seconds"},
		{"negative max keys", Config{TiersFile: good, MaxKeys: -1}, "MaxKeys", "-1 is negative"},
		{"negative forward timeout", Config{TiersFile: good, ForwardTimeout: -time.Second}, "ForwardTimeout", "negative"},
		{"negative forward timeout floor", Config{TiersFile: good, ForwardTimeoutMin: -time.Second}, "ForwardTimeoutMin", "negative"},
		{"forward timeout ceiling below the floor", Config{TiersFile: good, ForwardTimeoutMin: 30 * time.Millisecond},
			"ForwardTimeoutMax", DefaultForwardTimeoutMax.String() + " is below ForwardTimeoutMin 30ms"},
		{"lease too short", Config{TiersFile: good, LeaseTTL: time.Millisecond}, "LeaseTTL", "1ms is shorter than 10ms"},
		{"gRPC without gossip", Config{TiersFile: good, GRPCAddr: ":9090"}, "GRPCAddr", "without GossipAddr"},
		{"seeds without gossip", Config{TiersFile: good, Join: []string{"a:7946"}}, "Join", "without GossipAddr"},
		{"gossip without gRPC", Config{TiersFile: good, GossipAddr: "127.0.0.1:0"}, "GRPCAddr", "empty"},
		{"gossip address without port", Config{TiersFile: good, GossipAddr: "127.0.0.1", GRPCAddr: ":0"}, "GossipAddr", "not host:port"},
		{"seed without port", Config{TiersFile: good, GossipAddr: "127.0.0.1:0", GRPCAddr: "127.0.0.1:0", Join: []string{"seed"}}, "Join", `"seed" is not host:port`},
		{"open gossip with seeds and no key", Config{TiersFile: good, GossipAddr: ":0", GRPCAddr: "127.0.0.1:0", Join: []string{"10.0.0.1:7946"}},
			"ClusterKey", `GossipAddr "" reaches beyond this host: set -cluster-key (CLUSTER_KEY)`},
		{"gRPC on a public address and no key", Config{TiersFile: good, GossipAddr: "127.0.0.1:0", GRPCAddr: "10.1.2.3:0"},
			"ClusterKey", `GRPCAddr "10.1.2.3" reaches beyond this host`},
		{"advertised beyond this host and no key", Config{TiersFile: good, GossipAddr: "127.0.0.1:0", GRPCAddr: "127.0.0.1:0", AdvertiseAddr: "node-a"},
			"ClusterKey", `AdvertiseAddr "node-a" reaches beyond this host`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			lim, err := New(tt.cfg)
			require.Error(t, err, "New(%+v) = %v", tt.cfg, lim)
			var ce *ConfigError
			require.True(t, errors.As(err, &ce), "New error %q is not a *ConfigError", err)
			assert.Equal(t, tt.field, ce.Field)
			assert.Contains(t, err.Error(), "Config."+tt.field)
			assert.Contains(t, err.Error(), tt.msg)
		})
	}

	_, err := New(Config{TiersFile: filepath.Join(t.TempDir(), "missing.json")})
	assert.ErrorContains(t, err, "missing.json", "a file that cannot be loaded")
	bad := writeTiers(t, filepath.Join(t.TempDir(), "bad.json"), `{"window_seconds":60,"tiers":{"free":{"limit":10,"burst":5}}}`)
	_, err = New(Config{TiersFile: bad})
	assert.ErrorContains(t, err, "tiers.free.burst: 5 is less than limit 10")
}

// TestConfigErrorUnwraps: errors.Is and errors.As reach the error behind a
// ConfigError, also when it is wrapped again, and its message falls back
// on that error's when it has no Reason.
func TestConfigErrorUnwraps(t *testing.T) {
	cause := &fs.PathError{Op: "open", Path: "state.json", Err: fs.ErrPermission}
	tests := []struct {
		name string
		err  *ConfigError
		text string
	}{
		{"reason and cause", &ConfigError{Field: "StateFile", Reason: "cannot open it", Err: cause},
			"tierlimit: Config.StateFile (-state-file): cannot open it"},
		{"cause alone", &ConfigError{Field: "StateFile", Err: cause},
			"tierlimit: Config.StateFile (-state-file): open state.json: permission denied"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			assert.Equal(t, tt.text, tt.err.Error())
			for _, err := range []error{tt.err, fmt.Errorf("start: %w", tt.err)} {
				assert.ErrorIs(t, err, fs.ErrPermission, "errors.Is(%q, fs.ErrPermission)", err)
				var pe *fs.PathError
				if assert.ErrorAs(t, err, &pe, "errors.As(%q, *fs.PathError)", err) {
					assert.Equal(t, "state.json", pe.Path)
				}
			}
		})
	}
	assert.NoError(t, errors.Unwrap(&ConfigError{Field: "Window", Reason: "bad"}), "Unwrap of a ConfigError without Err")
}

func TestSingleNodeCountsWithTheFileWindow(t *testing.T) {
	reg := prometheus.NewRegistry()
	lim, _ := newSingle(t, tenSecondTiers, func(c *Config) { c.Registerer = reg })

	for i := range 5 {
		w := hit(t, lim, "free-1")
		require.Equal(t, http.StatusOK, w.Code, "request %d", i+1)
		assert.Equal(t, `"free";q=5;w=10`, w.Header().Get("RateLimit-Policy"), "the window comes from the file")
		assert.Equal(t, "5", w.Header().Get("X-RateLimit-Limit"), "Header().Get sees the canonical form")
	}
	w := hit(t, lim, "free-1")
	assert.Equal(t, http.StatusTooManyRequests, w.Code)
	assert.Contains(t, w.Body.String(), "rate limit of 5 requests per 10s exceeded for tier free")
	assert.Equal(t, http.StatusUnauthorized, hit(t, lim, "nobody").Code)

	tier, ok := lim.Tier("pro-1")
	assert.True(t, ok)
	assert.Equal(t, Tier{Name: "pro", Limit: 50, Burst: 50, Degraded: 50}, tier)
	assert.NoError(t, lim.Ready())
	assert.Equal(t, []Member{{Name: "solo", State: "alive", Self: true}}, lim.Members())

	s, err := lim.SetHealth(Degraded)
	require.NoError(t, err)
	assert.Equal(t, s, lim.Health())
	assert.Equal(t, 1, admitted(t, lim, "free-2", 3), "DEGRADED applies to the next request")

	assert.InDelta(t, 6, metricValue(t, reg, "tierlimit_decisions_total", "tier", "free", "outcome", "allowed"), 0)
	assert.InDelta(t, 3, metricValue(t, reg, "tierlimit_decisions_total", "tier", "free", "outcome", "limited"), 0)
	n, err := testutil.GatherAndCount(reg, "tierlimit_health_degraded", "tierlimit_config_reloads_total")
	require.NoError(t, err)
	assert.Equal(t, 3, n, "health gauge and both reload results are there from the start")
}

func TestAdminAndReadyHandlers(t *testing.T) {
	lim, _ := newSingle(t, tenSecondTiers, nil)
	mux := http.NewServeMux()
	mux.Handle("/system/", lim.AdminHandler())
	mux.Handle("/readyz", lim.ReadyHandler())
	do := func(method, path, token, body string) *httptest.ResponseRecorder {
		r := httptest.NewRequestWithContext(t.Context(), method, path, strings.NewReader(body))
		if token != "" {
			r.Header.Set("Authorization", "Bearer "+token)
		}
		w := httptest.NewRecorder()
		mux.ServeHTTP(w, r)
		return w
	}
	assert.Equal(t, http.StatusUnauthorized, do(http.MethodPost, "/system/health", "", `{"status":"DEGRADED"}`).Code)
	w := do(http.MethodPost, "/system/health", testToken, `{"status":"DEGRADED"}`)
	require.Equal(t, http.StatusOK, w.Code, w.Body.String())
	assert.Equal(t, Degraded, lim.Health().Status)
	assert.Equal(t, http.StatusBadRequest, do(http.MethodPost, "/system/health", testToken, `{"status":"broken"}`).Code)
	w = do(http.MethodGet, "/system/cluster", testToken, "")
	assert.JSONEq(t, `{"node":"solo","members":[{"name":"solo","state":"alive","self":true}]}`, w.Body.String())

	w = do(http.MethodGet, "/readyz", "", "")
	assert.Equal(t, http.StatusOK, w.Code)
	assert.JSONEq(t, `{"status":"ready"}`, w.Body.String())
	require.NoError(t, lim.Close(t.Context()))
	w = do(http.MethodGet, "/readyz", "", "")
	assert.Equal(t, http.StatusServiceUnavailable, w.Code)
	assert.Contains(t, w.Body.String(), "limiter closed")
	assert.NoError(t, lim.Close(t.Context()), "a second Close")
}

func TestAdminOffWithoutAToken(t *testing.T) {
	lim, _ := newSingle(t, tenSecondTiers, func(c *Config) { c.AdminToken = "" })
	r := httptest.NewRequestWithContext(t.Context(), http.MethodPost, "/system/health", strings.NewReader(`{"status":"DEGRADED"}`))
	r.Header.Set("Authorization", "Bearer ")
	w := httptest.NewRecorder()
	lim.AdminHandler().ServeHTTP(w, r)
	assert.Equal(t, http.StatusUnauthorized, w.Code)
	assert.Equal(t, Normal, lim.Health().Status)
}

func TestLimitersShareNothing(t *testing.T) {
	// Two Limiters in one process, on registries of their own: nothing
	// global collides, and each counts alone.
	a, _ := newSingle(t, tenSecondTiers, func(c *Config) { c.Registerer = prometheus.NewRegistry() })
	b, _ := newSingle(t, tenSecondTiers, func(c *Config) { c.Registerer = prometheus.NewRegistry() })
	assert.Equal(t, 5, admitted(t, a, "free-1", 7))
	assert.Equal(t, 5, admitted(t, b, "free-1", 7))
	a.SetHealth(Degraded)
	assert.Equal(t, Normal, b.Health().Status)
}

// mapKeys is a KeyStore of one's own, with a Reload that a test scripts.
type mapKeys map[string]Tier

func (m mapKeys) Lookup(k string) (Tier, bool) { t, ok := m[k]; return t, ok }

// reloadingKeys is a KeyStore whose Reload swaps in the next table.
type reloadingKeys struct {
	// mu guards cur and next.
	mu        sync.Mutex
	cur, next mapKeys
	err       error
}

func (k *reloadingKeys) Lookup(key string) (Tier, bool) {
	k.mu.Lock()
	defer k.mu.Unlock()
	return k.cur.Lookup(key)
}

func (k *reloadingKeys) Reload() error {
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.err != nil {
		return k.err
	}
	k.cur = k.next
	return nil
}

func TestCustomKeyStore(t *testing.T) {
	gold := Tier{Name: "gold", Limit: 2, Burst: 3, Degraded: 2}
	keys := &reloadingKeys{cur: mapKeys{"cust-1": gold}, next: mapKeys{"cust-2": gold}}
	reg := prometheus.NewRegistry()
	lim, err := New(Config{Keys: keys, NodeName: "solo", Registerer: reg, Logger: slog.New(slog.DiscardHandler)})
	require.NoError(t, err)
	t.Cleanup(func() { _ = lim.Close(context.Background()) })

	w := hit(t, lim, "cust-1")
	assert.Equal(t, `"gold";q=3;w=60`, w.Header().Get("RateLimit-Policy"), "the default window")
	assert.Equal(t, 2, admitted(t, lim, "cust-1", 5))

	keys.err = errors.New("database unreachable")
	require.ErrorContains(t, lim.Reload(), "database unreachable")
	assert.Equal(t, http.StatusTooManyRequests, hit(t, lim, "cust-1").Code, "a failed reload changes nothing")
	keys.err = nil
	require.NoError(t, lim.Reload())
	assert.Equal(t, http.StatusUnauthorized, hit(t, lim, "cust-1").Code, "a key the store dropped")
	assert.Equal(t, http.StatusOK, hit(t, lim, "cust-2").Code)
	assert.InDelta(t, 1, metricValue(t, reg, "tierlimit_config_reloads_total", "result", "ok"), 0)
	assert.InDelta(t, 1, metricValue(t, reg, "tierlimit_config_reloads_total", "result", "error"), 0)

	plain, err := New(Config{Keys: mapKeys{}, NodeName: "plain"})
	require.NoError(t, err)
	t.Cleanup(func() { _ = plain.Close(context.Background()) })
	assert.ErrorContains(t, plain.Reload(), "no Reload method")
}

// metricValue returns the value of the counter or gauge name in g whose
// labels include labelPairs (name, value, name, value…), or the sample
// count of such a histogram; it fails the test if there is none.
func metricValue(t *testing.T, g prometheus.Gatherer, name string, labelPairs ...string) float64 {
	t.Helper()
	families, err := g.Gather()
	require.NoError(t, err)
	for _, f := range families {
		if f.GetName() != name {
			continue
		}
	next:
		for _, m := range f.GetMetric() {
			have := map[string]string{}
			for _, l := range m.GetLabel() {
				have[l.GetName()] = l.GetValue()
			}
			for i := 0; i+1 < len(labelPairs); i += 2 {
				if have[labelPairs[i]] != labelPairs[i+1] {
					continue next
				}
			}
			if c := m.GetCounter(); c != nil {
				return c.GetValue()
			}
			if h := m.GetHistogram(); h != nil {
				return float64(h.GetSampleCount())
			}
			return m.GetGauge().GetValue()
		}
	}
	t.Fatalf("no %s%v in the registry", name, labelPairs)
	return 0
}

func TestOneRegistryServesOneLimiterAtATime(t *testing.T) {
	reg := prometheus.NewRegistry()
	path := writeTiers(t, filepath.Join(t.TempDir(), "tiers.json"), tenSecondTiers)
	first, err := New(Config{TiersFile: path, NodeName: "a", Registerer: reg})
	require.NoError(t, err)

	second, err := New(Config{TiersFile: path, NodeName: "b", Registerer: reg})
	var ce *ConfigError
	require.ErrorAs(t, err, &ce, "New on a registry in use = %v", second)
	assert.Equal(t, "Registerer", ce.Field)
	assert.Contains(t, err.Error(), "WrapRegistererWith")
	assert.ErrorAs(t, err, new(prometheus.AlreadyRegisteredError), "the registry's error, through the *ConfigError")
	n, err := testutil.GatherAndCount(reg)
	require.NoError(t, err)
	assert.Positive(t, n, "the failed New left the first Limiter's series alone")

	shared := prometheus.NewRegistry()
	for _, name := range []string{"c", "d"} {
		lim, err := New(Config{TiersFile: path, NodeName: name, Registerer: prometheus.WrapRegistererWith(prometheus.Labels{"limiter": name}, shared)})
		require.NoError(t, err, "registerers wrapped with a label each keep the series apart")
		t.Cleanup(func() { _ = lim.Close(context.Background()) })
	}

	require.NoError(t, first.Close(t.Context()))
	n, err = testutil.GatherAndCount(reg)
	require.NoError(t, err)
	assert.Zero(t, n, "Close took the series off the registry")
	again, err := New(Config{TiersFile: path, NodeName: "a", Registerer: reg})
	require.NoError(t, err, "a new Limiter on the registry after Close")
	require.NoError(t, again.Close(t.Context()))
}

func TestSecureByDefault(t *testing.T) {
	path := writeTiers(t, filepath.Join(t.TempDir(), "tiers.json"), tenSecondTiers)
	start := func(cfg Config) *Limiter {
		t.Helper()
		cfg.TiersFile, cfg.Memberlist = path, cluster.TestMemberlistConfig()
		lim, err := New(cfg)
		require.NoError(t, err)
		t.Cleanup(func() { _ = lim.Close(context.Background()) })
		return lim
	}
	// Alone, without a key, on addresses that name no host: both peer
	// ports go to loopback.
	alone := start(Config{NodeName: "alone", GossipAddr: ":0", GRPCAddr: "0.0.0.0:0"})
	for _, addr := range []string{alone.node.GossipAddr(), alone.endpoint.Addr().String()} {
		host, _, err := net.SplitHostPort(addr)
		require.NoError(t, err)
		assert.True(t, net.ParseIP(host).IsLoopback(), "a lone node without a key listens on %s", addr)
	}
	// With a key, or the explicit opt-in, the addresses are as given.
	keyed := start(Config{NodeName: "keyed", GossipAddr: ":0", GRPCAddr: ":0", ClusterKey: "k"})
	assert.Equal(t, "[::]", hostOf(t, keyed.endpoint.Addr().String()), "a keyed node listens on every interface")
	open := start(Config{NodeName: "open", GossipAddr: ":0", GRPCAddr: ":0", InsecureOpenCluster: true})
	assert.Equal(t, "[::]", hostOf(t, open.endpoint.Addr().String()))
}

func hostOf(t *testing.T, addr string) string {
	t.Helper()
	host, _, err := net.SplitHostPort(addr)
	require.NoError(t, err)
	if strings.Contains(host, ":") {
		return "[" + host + "]"
	}
	return host
}
