package api

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/tierlimit/tierlimit/bucket"
	"github.com/tierlimit/tierlimit/health"
)

// TestAuthorizeAnswersWhatAProxyPassesOn sends what nginx, Envoy's HTTP
// ext_authz and Traefik send: any method, the original path appended to
// the prefix, the original headers, and maybe a body the check must not
// read. Each gets 200 with the rate-limit headers and no body while the key
// has hits left, then the middleware's 429; 401 for a bad key, uncounted.
func TestAuthorizeAnswersWhatAProxyPassesOn(t *testing.T) {
	c := newClock()
	store := bucket.New(bucket.Config{Window: time.Minute})
	lim := NewLimiter(Config{Keys: keys, Checker: Local{Store: store}, Health: health.NewHolder("a"), Window: time.Minute, Now: c.Now})
	h := lim.Authorize()

	send := func(method, path, key string) *httptest.ResponseRecorder {
		body := strings.NewReader(strings.Repeat("x", 1<<20))
		r := httptest.NewRequest(method, path, body)
		if key != "" {
			r.Header.Set("X-API-Key", key)
		}
		r.Header.Set("Content-Type", "audio/wav")
		w := httptest.NewRecorder()
		h.ServeHTTP(w, r)
		assert.Equal(t, 1<<20, body.Len(), "%s %s: the body is never read", method, path)
		return w
	}

	requests := []struct{ method, path string }{
		{http.MethodGet, "/authorize"},
		{http.MethodPost, "/authorize/v1/transcribe?lang=en"},
		{http.MethodPut, "/authorize/v1/jobs/7"},
		{http.MethodDelete, "/authorize/"},
		{http.MethodHead, "/authorize"},
		{http.MethodPatch, "/authorize/a/b/c"},
		{http.MethodOptions, "/authorize/x"},
	}
	for i := range 20 {
		rq := requests[i%len(requests)]
		w := send(rq.method, rq.path, "free-1")
		require.Equal(t, http.StatusOK, w.Code, "%s %s, hit %d", rq.method, rq.path, i+1)
		assert.Empty(t, w.Body.String())
		assert.Equal(t, "20", w.Header().Get(HeaderLimit))
		assert.Equal(t, strconv.Itoa(19-i), w.Header().Get(HeaderRemaining), "hit %d", i+1)
		assert.NotEmpty(t, w.Header().Get(HeaderReset))
		assert.Equal(t, `"free";q=20;w=60`, w.Header().Get(HeaderPolicy))
		assert.Equal(t, "true", w.Header().Get(HeaderSheddable), "free: DEGRADED cuts it below its limit")
	}
	w := send(http.MethodGet, "/authorize", "pro-1")
	require.Equal(t, http.StatusOK, w.Code)
	assert.Empty(t, w.Header().Values(HeaderSheddable), "pro: DEGRADED only takes its burst")

	w = send(http.MethodPost, "/authorize/v1/transcribe", "free-1")
	require.Equal(t, http.StatusTooManyRequests, w.Code)
	assert.Empty(t, w.Header().Values(HeaderSheddable), "a refusal does not say it")
	assert.Equal(t, "0", w.Header().Get(HeaderRemaining))
	assert.NotEmpty(t, w.Header().Get(HeaderRetryAfter))
	assert.Equal(t, "application/json", w.Header().Get("Content-Type"))
	var body ErrorBody
	require.NoError(t, json.Unmarshal(w.Body.Bytes(), &body))
	assert.Equal(t, "rate_limited", body.Error.Code)
	assert.Equal(t, w.Header().Get(HeaderRetryAfter), strconv.FormatInt(body.Error.RetryAfterSeconds, 10))

	for _, key := range []string{"", "nobody"} {
		w = send(http.MethodGet, "/authorize/x", key)
		assert.Equal(t, http.StatusUnauthorized, w.Code, "key %q", key)
		assert.Contains(t, w.Body.String(), `"code":"invalid_api_key"`)
		assert.Empty(t, w.Header().Get(HeaderLimit), "a 401 carries no rate-limit headers")
	}
	d := store.Take(c.Now(), "free-1", 0, 20)
	assert.Equal(t, 0, d.Remaining, "21 checks counted 20 and refused one")
	w = send(http.MethodGet, "/authorize", "free-2")
	assert.Equal(t, "19", w.Header().Get(HeaderRemaining), "another key of the tier has its own count")
}
