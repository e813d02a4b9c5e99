package api

import (
	"context"
	"net/http"
	"net/http/httptest"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/tierlimit/tierlimit/bucket"
	"github.com/tierlimit/tierlimit/config"
	"github.com/tierlimit/tierlimit/health"
)

var _ PathChecker = Local{}

// pathChecker is a PathChecker that admits every check by the path its
// key names.
type pathChecker map[string]int

func (pathChecker) Paths() []string { return []string{"near", "far"} }

func (p pathChecker) Check(ctx context.Context, now time.Time, key string, limit int) bucket.Decision {
	d, _ := p.CheckPath(ctx, now, key, limit)
	return d
}

func (p pathChecker) CheckPath(_ context.Context, now time.Time, key string, limit int) (bucket.Decision, int) {
	return bucket.Decision{Allowed: true, Limit: limit, Remaining: limit - 1, ResetAt: now.Add(time.Minute)}, p[key]
}

// plainChecker is a Checker that is not a PathChecker.
type plainChecker struct{ store *bucket.Store }

func (c plainChecker) Check(_ context.Context, now time.Time, key string, limit int) bucket.Decision {
	return c.store.Take(now, key, 1, limit)
}

// series returns the series of g as "name{label=value,…}" → value (a
// histogram's: its sample count), and fails the test on a label with an
// empty value.
func series(t *testing.T, g prometheus.Gatherer) map[string]float64 {
	t.Helper()
	families, err := g.Gather()
	require.NoError(t, err)
	out := map[string]float64{}
	for _, f := range families {
		for _, m := range f.GetMetric() {
			var labels []string
			for _, l := range m.GetLabel() {
				assert.NotEmpty(t, l.GetValue(), "%s: label %s is empty", f.GetName(), l.GetName())
				labels = append(labels, l.GetName()+"="+l.GetValue())
			}
			sort.Strings(labels)
			name := f.GetName() + "{"
			for i, l := range labels {
				if i > 0 {
					name += ","
				}
				name += l
			}
			name += "}"
			switch {
			case m.GetCounter() != nil:
				out[name] = m.GetCounter().GetValue()
			case m.GetHistogram() != nil:
				out[name] = float64(m.GetHistogram().GetSampleCount())
			default:
				out[name] = m.GetGauge().GetValue()
			}
		}
	}
	return out
}

// serveKey sends GET /test with key (none if empty) through h and returns
// the status code.
func serveKey(h http.Handler, key string) int {
	r := httptest.NewRequest(http.MethodGet, "/test", nil)
	if key != "" {
		r.Header.Set("X-API-Key", key)
	}
	w := httptest.NewRecorder()
	h.ServeHTTP(w, r)
	return w.Code
}

func TestMetricsArePresentBeforeTheFirstRequest(t *testing.T) {
	reg := prometheus.NewRegistry()
	m := NewMetrics([]string{"free", "pro"})
	reg.MustRegister(m)
	NewLimiter(Config{Keys: keys, Checker: Local{Store: bucket.New(bucket.Config{Window: time.Minute})},
		Health: health.NewHolder("a"), Window: time.Minute, Metrics: m})

	want := map[string]float64{
		"tierlimit_decisions_total{outcome=allowed,tier=free}":         0,
		"tierlimit_decisions_total{outcome=limited,tier=free}":         0,
		"tierlimit_decisions_total{outcome=allowed,tier=pro}":          0,
		"tierlimit_decisions_total{outcome=limited,tier=pro}":          0,
		"tierlimit_decisions_total{outcome=unauthenticated,tier=none}": 0,
		"tierlimit_decision_duration_seconds{path=local}":              0,
		"tierlimit_decision_duration_seconds{path=blocked}":            0,
	}
	assert.Equal(t, want, series(t, reg), "series before any request")
}

func TestMetricsTimeEachDecisionByPath(t *testing.T) {
	blocked := config.Tier{Name: "blocked", Limit: 0, Burst: 0, Degraded: 0}
	ks := fakeKeys{"near-1": pro, "far-1": pro, "blocked-1": blocked}
	tests := []struct {
		name    string
		checker Checker
		want    map[string]float64 // decision_duration_seconds sample counts by path
	}{
		{"path checker", pathChecker{"near-1": 0, "far-1": 1},
			map[string]float64{"near": 2, "far": 1, "blocked": 1}},
		{"plain checker", plainChecker{bucket.New(bucket.Config{Window: time.Minute})},
			map[string]float64{"other": 3, "blocked": 1}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			reg := prometheus.NewRegistry()
			m := NewMetrics([]string{"pro"})
			reg.MustRegister(m)
			lim := NewLimiter(Config{Keys: ks, Checker: tc.checker, Health: health.NewHolder("a"), Window: time.Minute, Metrics: m})
			h := lim.Middleware(http.HandlerFunc(func(http.ResponseWriter, *http.Request) {}))
			for _, k := range []string{"near-1", "near-1", "far-1", "blocked-1", "", "nobody"} {
				serveKey(h, k)
			}

			got := map[string]float64{}
			for name, v := range series(t, reg) {
				if path, ok := strings.CutPrefix(name, "tierlimit_decision_duration_seconds{path="); ok {
					got[strings.TrimSuffix(path, "}")] = v
				}
			}
			assert.Equal(t, tc.want, got, "decisions timed by path")
			s := series(t, reg)
			assert.InDelta(t, 2, s["tierlimit_decisions_total{outcome=unauthenticated,tier=none}"], 0,
				"a request without a key and one with an unknown key, under tier none")
			assert.InDelta(t, 3, s["tierlimit_decisions_total{outcome=allowed,tier=pro}"], 0)
			assert.InDelta(t, 1, s["tierlimit_decisions_total{outcome=limited,tier=blocked}"], 0)
		})
	}
}

func TestMetricsNameTiersWithoutANameNone(t *testing.T) {
	reg := prometheus.NewRegistry()
	m := NewMetrics(nil)
	reg.MustRegister(m)
	m.AddTiers([]string{"gold", ""})
	lim := NewLimiter(Config{Keys: fakeKeys{"anon-1": {Limit: 5, Burst: 5, Degraded: 5}},
		Checker: Local{Store: bucket.New(bucket.Config{Window: time.Minute})}, Health: health.NewHolder("a"),
		Window: time.Minute, Metrics: m})
	require.Equal(t, http.StatusOK, serveKey(lim.Middleware(http.HandlerFunc(func(http.ResponseWriter, *http.Request) {})), "anon-1"))

	s := series(t, reg) // fails on an empty label value
	assert.InDelta(t, 1, s["tierlimit_decisions_total{outcome=allowed,tier=none}"], 0, "a tier without a name")
	assert.Contains(t, s, "tierlimit_decisions_total{outcome=allowed,tier=gold}", "a tier added, before its first decision")
	assert.Contains(t, s, "tierlimit_decisions_total{outcome=limited,tier=gold}")
}

// TestMetricsCostNoAllocation: counting and timing a decision allocates
// nothing more than deciding it.
func TestMetricsCostNoAllocation(t *testing.T) {
	huge := fakeKeys{"pro-1": {Name: "pro", Limit: 1 << 30, Burst: 1 << 30, Degraded: 1 << 30}}
	allocs := func(m *Metrics) float64 {
		lim := NewLimiter(Config{Keys: huge, Checker: Local{Store: bucket.New(bucket.Config{Window: time.Minute})},
			Health: health.NewHolder("a"), Window: time.Minute, Metrics: m})
		r := httptest.NewRequest(http.MethodGet, "/test", nil)
		r.Header.Set("X-API-Key", "pro-1")
		w := httptest.NewRecorder()
		return testing.AllocsPerRun(1000, func() {
			clear(w.Header())
			lim.Allow(w, r)
		})
	}
	m := NewMetrics([]string{"pro"})
	prometheus.NewRegistry().MustRegister(m)
	without, with := allocs(nil), allocs(m)
	assert.InDelta(t, without, with, 0, "allocations per decision with metrics, want as many as without")
}
