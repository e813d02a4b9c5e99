package api

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/tierlimit/tierlimit/bucket"
	"github.com/tierlimit/tierlimit/config"
	"github.com/tierlimit/tierlimit/health"
)

const adminToken = "s3cret-admin-token"

var t0 = time.Date(2026, 11, 26, 12, 0, 0, 0, time.UTC)

// fakeKeys is a Keys backed by a map.
type fakeKeys map[string]config.Tier

func (k fakeKeys) Lookup(key string) (config.Tier, bool) {
	t, ok := k[key]
	return t, ok
}

var (
	free = config.Tier{Name: "free", Limit: 10, Burst: 20, Degraded: 2}
	pro  = config.Tier{Name: "pro", Limit: 100, Burst: 150, Degraded: 100}
	keys = fakeKeys{"free-1": free, "free-2": free, "pro-1": pro}
)

// clock is a settable fake clock.
type clock struct{ now time.Time }

func (c *clock) Now() time.Time          { return c.now }
func (c *clock) advance(d time.Duration) { c.now = c.now.Add(d) }
func newClock() *clock                   { return &clock{now: t0} }

type fixture struct {
	clock   *clock
	health  *health.Holder
	store   *bucket.Store
	metrics *Metrics
	handler http.Handler
}

func newFixture(t *testing.T) *fixture {
	t.Helper()
	f := &fixture{clock: newClock(), health: health.NewHolder("node-a"), store: bucket.New(bucket.Config{Window: time.Minute})}
	f.metrics = NewMetrics([]string{"free", "pro"})
	prometheus.NewRegistry().MustRegister(f.metrics)
	lim := NewLimiter(Config{
		Keys: keys, Checker: Local{Store: f.store}, Health: f.health, Window: time.Minute,
		Now: f.clock.Now, Metrics: f.metrics,
	})
	mux := http.NewServeMux()
	mux.Handle("/test", lim.Middleware(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		WriteJSON(w, http.StatusOK, map[string]bool{"ok": true})
	})))
	mux.Handle("/system/", NewAdmin(AdminConfig{Token: adminToken, Health: f.health, Node: "node-a", Now: f.clock.Now}))
	f.handler = mux
	return f
}

func (f *fixture) get(t *testing.T, key string) *httptest.ResponseRecorder {
	t.Helper()
	r := httptest.NewRequest(http.MethodGet, "/test", nil)
	if key != "" {
		r.Header.Set("X-API-Key", key)
	}
	w := httptest.NewRecorder()
	f.handler.ServeHTTP(w, r)
	return w
}

func (f *fixture) admin(t *testing.T, method, path, token, body string) *httptest.ResponseRecorder {
	t.Helper()
	r := httptest.NewRequest(method, path, strings.NewReader(body))
	if token != "" {
		r.Header.Set("Authorization", "Bearer "+token)
	}
	w := httptest.NewRecorder()
	f.handler.ServeHTTP(w, r)
	return w
}

func decodeError(t *testing.T, w *httptest.ResponseRecorder) ErrorDetail {
	t.Helper()
	assert.Equal(t, "application/json", w.Header().Get("Content-Type"))
	var body ErrorBody
	require.NoError(t, json.Unmarshal(w.Body.Bytes(), &body), "body %q", w.Body.String())
	return body.Error
}

func TestFreeKeyGetsExactlyItsBurstWithExactHeaders(t *testing.T) {
	f := newFixture(t)
	for i := 1; i <= 20; i++ {
		w := f.get(t, "free-1")
		require.Equal(t, http.StatusOK, w.Code, "request %d: body %s", i, w.Body)
		h := w.Header()
		assert.Equal(t, "20", hv(h, HeaderLimit), "request %d", i)
		assert.Equal(t, strconv.Itoa(20-i), hv(h, HeaderRemaining), "request %d", i)
		// The window ends at t0+60 s; the hits counted in it have decayed
		// one window later, and the whole limit is free.
		assert.Equal(t, strconv.FormatInt(t0.Add(2*time.Minute).Unix(), 10), hv(h, HeaderReset), "request %d", i)
		assert.Equal(t, `"free";q=20;w=60`, hv(h, HeaderPolicy))
		// i counted: one more than the 20−i left fits once, in the next
		// window, ceil(i×(60−el)/60) ≤ i−1, that is el ≥ 60/i s.
		wantT := 60 + (60+i-1)/i
		assert.Equal(t, `"free";r=`+strconv.Itoa(20-i)+`;t=`+strconv.Itoa(wantT), hv(h, HeaderRateLimit), "request %d", i)
		assert.Empty(t, hv(h, HeaderRetryAfter), "request %d: Retry-After on a 200", i)
	}
	f.clock.advance(10 * time.Second)
	w := f.get(t, "free-1")
	require.Equal(t, http.StatusTooManyRequests, w.Code)
	h := w.Header()
	assert.Equal(t, "20", hv(h, HeaderLimit))
	assert.Equal(t, "0", hv(h, HeaderRemaining))
	// 20 used at t0: in the next window one more fits once
	// ceil(20×(60−el)/60) ≤ 19, el ≥ 3 s, that is t0+63 s, 53 s from now.
	assert.Equal(t, strconv.FormatInt(t0.Add(63*time.Second).Unix(), 10), hv(h, HeaderReset))
	assert.Equal(t, "53", hv(h, HeaderRetryAfter))
	assert.Equal(t, `"free";r=0;t=53`, hv(h, HeaderRateLimit))
	e := decodeError(t, w)
	assert.Equal(t, "rate_limited", e.Code)
	assert.Equal(t, int64(53), e.RetryAfterSeconds)
	assert.Contains(t, e.Message, "tier free")

	assert.InDelta(t, 20, testutil.ToFloat64(f.metrics.decisions.WithLabelValues("free", "allowed")), 0)
	assert.InDelta(t, 1, testutil.ToFloat64(f.metrics.decisions.WithLabelValues("free", "limited")), 0)
}

func TestDegradedAppliesOnTheNextRequest(t *testing.T) {
	f := newFixture(t)
	for range 15 {
		require.Equal(t, http.StatusOK, f.get(t, "free-1").Code)
	}
	w := f.admin(t, http.MethodPost, "/system/health", adminToken, `{"status":"DEGRADED"}`)
	require.Equal(t, http.StatusOK, w.Code, w.Body.String())

	// The free key that used 15 is over the DEGRADED limit of 2.
	w = f.get(t, "free-1")
	assert.Equal(t, http.StatusTooManyRequests, w.Code)
	assert.Equal(t, "2", hv(w.Header(), HeaderLimit))
	assert.Equal(t, "0", hv(w.Header(), HeaderRemaining))

	// A fresh free key gets exactly 2.
	assert.Equal(t, http.StatusOK, f.get(t, "free-2").Code)
	assert.Equal(t, http.StatusOK, f.get(t, "free-2").Code)
	w = f.get(t, "free-2")
	assert.Equal(t, http.StatusTooManyRequests, w.Code)
	assert.Equal(t, "2", hv(w.Header(), HeaderLimit))

	// Pro keeps its SLA of 100.
	w = f.get(t, "pro-1")
	assert.Equal(t, http.StatusOK, w.Code)
	assert.Equal(t, "100", hv(w.Header(), HeaderLimit))
	assert.Equal(t, "99", hv(w.Header(), HeaderRemaining))

	// Back to NORMAL within the window: the first key gets its last 5.
	require.Equal(t, http.StatusOK, f.admin(t, http.MethodPost, "/system/health", adminToken, `{"status":"NORMAL"}`).Code)
	for i := range 5 {
		w = f.get(t, "free-1")
		assert.Equal(t, http.StatusOK, w.Code, "request %d after NORMAL returned", i+16)
		assert.Equal(t, "20", hv(w.Header(), HeaderLimit))
	}
	assert.Equal(t, http.StatusTooManyRequests, f.get(t, "free-1").Code)
}

func TestBadKeysGet401AndAreNotCounted(t *testing.T) {
	f := newFixture(t)
	tests := []struct {
		name   string
		header []string
		want   string
	}{
		{"missing", nil, "missing X-API-Key"},
		{"empty", []string{""}, "X-API-Key: empty API key"},
		{"oversized", []string{strings.Repeat("k", config.MaxKeyLen+1)}, "longer than 256"},
		{"unknown", []string{"no-such-key"}, "unknown API key"},
		{"two headers", []string{"free-1", "pro-1"}, "more than one"},
		{"control characters", []string{"free-1\x00"}, "printable ASCII"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := httptest.NewRequest(http.MethodGet, "/test", nil)
			for _, v := range tt.header {
				r.Header.Add("X-API-Key", v)
			}
			w := httptest.NewRecorder()
			f.handler.ServeHTTP(w, r)
			assert.Equal(t, http.StatusUnauthorized, w.Code)
			e := decodeError(t, w)
			assert.Equal(t, "invalid_api_key", e.Code)
			assert.Contains(t, e.Message, tt.want)
			assert.Empty(t, hv(w.Header(), HeaderLimit), "a refused key gets no rate-limit headers")
		})
	}
	assert.Equal(t, 0, f.store.Len(), "nothing was counted")
	w := f.get(t, "free-1")
	assert.Equal(t, "19", hv(w.Header(), HeaderRemaining), "a valid key starts with its full burst")
}

func TestAdminNeedsTheToken(t *testing.T) {
	f := newFixture(t)
	for _, tc := range []struct{ name, token string }{{"none", ""}, {"wrong", "nope"}, {"prefix", adminToken[:5]}} {
		t.Run(tc.name, func(t *testing.T) {
			for _, path := range []string{"/system/health", "/system/cluster"} {
				w := f.admin(t, http.MethodGet, path, tc.token, "")
				assert.Equal(t, http.StatusUnauthorized, w.Code, path)
				assert.Equal(t, "unauthorized", decodeError(t, w).Code)
			}
			w := f.admin(t, http.MethodPost, "/system/health", tc.token, `{"status":"DEGRADED"}`)
			assert.Equal(t, http.StatusUnauthorized, w.Code)
		})
	}
	assert.Equal(t, health.Normal, f.health.Status(), "an unauthorized POST changes nothing")
}

func TestHealthEndpoint(t *testing.T) {
	f := newFixture(t)
	w := f.admin(t, http.MethodPost, "/system/health", adminToken, `{"status":"DEGRADED"}`)
	require.Equal(t, http.StatusOK, w.Code)
	var got HealthResponse
	require.NoError(t, json.Unmarshal(w.Body.Bytes(), &got))
	assert.Equal(t, health.Degraded, got.Status)
	first := got.Version
	assert.Equal(t, t0, health.State{Version: first}.Stamped(), "the version is stamped with the write's time")
	assert.Equal(t, "node-a", got.Origin)
	assert.Equal(t, t0, got.UpdatedAt)
	require.NotNil(t, got.Changed)
	assert.True(t, *got.Changed)

	w = f.admin(t, http.MethodPost, "/system/health", adminToken, `{"status":"DEGRADED"}`)
	require.Equal(t, http.StatusOK, w.Code)
	got = HealthResponse{}
	require.NoError(t, json.Unmarshal(w.Body.Bytes(), &got))
	assert.False(t, *got.Changed, "the same status again")
	assert.Equal(t, first+1, got.Version, "a repeated write is a new write, after the first")

	w = f.admin(t, http.MethodGet, "/system/health", adminToken, "")
	require.Equal(t, http.StatusOK, w.Code)
	assert.JSONEq(t, `{"status":"DEGRADED","version":"`+strconv.FormatUint(first+1, 10)+`","origin":"node-a","updated_at":"2026-11-26T12:00:00Z","node":"node-a","mode":"manual","why":"admin"}`, w.Body.String())
}

func TestHealthBodyErrors(t *testing.T) {
	f := newFixture(t)
	tests := []struct{ name, body, want string }{
		{"empty", "", "empty body"},
		{"not json", "DEGRADED", "not a JSON object"},
		{"lower case", `{"status":"degraded"}`, `"NORMAL" or "DEGRADED"`},
		{"unknown status", `{"status":"BROKEN"}`, `"NORMAL" or "DEGRADED"`},
		{"missing status", `{}`, `missing field "status"`},
		{"unknown field", `{"status":"NORMAL","force":true}`, `unknown field "force"`},
		{"wrong type", `{"status":1}`, `"status" must be a string`},
		{"null status", `{"status":null}`, `missing field "status"`},
		{"trailing data", `{"status":"NORMAL"}{"status":"DEGRADED"}`, "after the JSON object"},
		{"array", `["NORMAL"]`, "not a JSON object"},
		{"too large", `{"status":"NORMAL","pad":"` + strings.Repeat("x", MaxAdminBody) + `"}`, "larger than 4096 bytes"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			w := f.admin(t, http.MethodPost, "/system/health", adminToken, tt.body)
			assert.Equal(t, http.StatusBadRequest, w.Code)
			e := decodeError(t, w)
			assert.Equal(t, "bad_request", e.Code)
			assert.Contains(t, e.Message, tt.want)
		})
	}
	assert.Equal(t, State0(), f.health.Current(), "no bad body changed the state")
}

// State0 is the state a new Holder starts in.
func State0() health.State { return health.NewHolder("x").Current() }

func TestAdminIsNotRateLimited(t *testing.T) {
	f := newFixture(t)
	for range 100 {
		assert.Equal(t, http.StatusOK, f.admin(t, http.MethodGet, "/system/health", adminToken, "").Code)
	}
	assert.Equal(t, 0, f.store.Len())
}

func TestClusterEndpointAloneShowsThisNode(t *testing.T) {
	f := newFixture(t)
	w := f.admin(t, http.MethodGet, "/system/cluster", adminToken, "")
	require.Equal(t, http.StatusOK, w.Code)
	assert.JSONEq(t, `{"node":"node-a","members":[{"name":"node-a","state":"alive","self":true}]}`, w.Body.String())
}

func TestUnknownPathsAndMethodsGetJSONErrors(t *testing.T) {
	f := newFixture(t)
	w := f.admin(t, http.MethodGet, "/system/nope", adminToken, "")
	assert.Equal(t, http.StatusNotFound, w.Code)
	assert.Equal(t, "not_found", decodeError(t, w).Code)
	w = f.admin(t, http.MethodGet, "/system/nope", "", "")
	assert.Equal(t, http.StatusUnauthorized, w.Code, "without the token, nothing is revealed")

	w = f.admin(t, http.MethodDelete, "/system/health", adminToken, "")
	assert.Equal(t, http.StatusMethodNotAllowed, w.Code)
	assert.Equal(t, "GET, HEAD, POST", w.Header().Get("Allow"))
	assert.Equal(t, "method_not_allowed", decodeError(t, w).Code)
}

// hv returns the first value of header name, or "" if there is none.
func hv(h http.Header, name string) string { return h.Get(name) }

func TestHeadersAreInCanonicalForm(t *testing.T) {
	f := newFixture(t)
	// An outer middleware reads what the limiter wrote, with Get.
	var seen http.Header
	outer := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		f.handler.ServeHTTP(w, r)
		seen = w.Header().Clone()
	})
	for i := range 21 {
		r := httptest.NewRequest(http.MethodGet, "/test", nil)
		r.Header.Set("X-API-Key", "free-2")
		outer.ServeHTTP(httptest.NewRecorder(), r)
		for _, name := range []string{HeaderLimit, HeaderRemaining, HeaderReset, HeaderPolicy, HeaderRateLimit} {
			assert.NotEmpty(t, seen.Get(name), "request %d: Header().Get(%q)", i+1, name)
		}
	}
	assert.NotEmpty(t, seen.Get(HeaderRetryAfter), "Header().Get(Retry-After) on the 429")
	for name := range seen {
		assert.Equal(t, http.CanonicalHeaderKey(name), name, "header stored as %q", name)
	}
}

func TestZeroLimitRefusesWithoutCounting(t *testing.T) {
	blocked := config.Tier{Name: "blocked", Limit: 0, Burst: 0, Degraded: 0}
	store := bucket.New(bucket.Config{Window: time.Minute})
	lim := NewLimiter(Config{Keys: fakeKeys{"k": blocked}, Checker: Local{Store: store}, Health: health.NewHolder("a"),
		Window: time.Minute, Now: func() time.Time { return t0 }})
	r := httptest.NewRequest(http.MethodGet, "/", nil)
	r.Header.Set("X-API-Key", "k")
	w := httptest.NewRecorder()
	lim.Middleware(http.NotFoundHandler()).ServeHTTP(w, r)
	assert.Equal(t, http.StatusTooManyRequests, w.Code)
	assert.Equal(t, "0", w.Header().Get(HeaderLimit))
	assert.Equal(t, "60", w.Header().Get(HeaderRetryAfter))
	assert.Zero(t, store.Len(), "a zero limit counted the key")
}

func TestAdminMountsAnywhereAndNeedsAToken(t *testing.T) {
	h := health.NewHolder("a")
	admin := NewAdmin(AdminConfig{Token: adminToken, Health: h, Node: "a"})
	mux := http.NewServeMux()
	mux.Handle("/ops/", http.StripPrefix("/ops", admin))
	mux.Handle("/internal/limiter/", admin)
	for _, path := range []string{"/ops/health", "/internal/limiter/health"} {
		r := httptest.NewRequest(http.MethodGet, path, nil)
		r.Header.Set("Authorization", "Bearer "+adminToken)
		w := httptest.NewRecorder()
		mux.ServeHTTP(w, r)
		assert.Equal(t, http.StatusOK, w.Code, "GET %s: %s", path, w.Body)
	}

	off := NewAdmin(AdminConfig{Health: h})
	for _, token := range []string{"", "anything"} {
		r := httptest.NewRequest(http.MethodPost, "/system/health", strings.NewReader(`{"status":"DEGRADED"}`))
		r.Header.Set("Authorization", "Bearer "+token)
		w := httptest.NewRecorder()
		off.ServeHTTP(w, r)
		assert.Equal(t, http.StatusUnauthorized, w.Code, "admin without a token, POST with %q", token)
	}
	assert.Equal(t, health.Normal, h.Status())
}
