package main

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/tierlimit/tierlimit/api"
	"github.com/tierlimit/tierlimit/config"
)

func TestFloorAnswersLikeTheNodeWithoutLimiting(t *testing.T) {
	tiers, err := config.Parse([]byte(`{"window_seconds":60,"tiers":{"free":{"limit":1}},"api_keys":{"k1":"free"}}`))
	require.NoError(t, err)
	h := newHandler(tiers, "n1")

	for i := range 3 { // a limit of 1 means nothing here
		req := httptest.NewRequest(http.MethodGet, "/test", nil)
		req.Header.Set("X-API-Key", "k1")
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		require.Equal(t, http.StatusOK, rec.Code, "GET /test #%d", i+1)
		assert.Equal(t, "application/json", rec.Header().Get("Content-Type"))
		assert.Empty(t, rec.Header().Get("X-RateLimit-Limit"), "the floor writes no rate-limit headers")
		var body api.TestResponse
		require.NoError(t, json.Unmarshal(rec.Body.Bytes(), &body))
		assert.Equal(t, api.TestResponse{OK: true, Tier: "free", Status: "NORMAL", Node: "n1"}, body)
	}

	for _, tt := range []struct {
		method, path string
		want         int
	}{
		{http.MethodPost, "/test", http.StatusMethodNotAllowed},
		{http.MethodGet, "/upload", http.StatusMethodNotAllowed},
		{http.MethodGet, "/readyz", http.StatusOK},
		{http.MethodGet, "/livez", http.StatusOK},
		{http.MethodGet, "/nope", http.StatusNotFound},
	} {
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest(tt.method, tt.path, nil))
		assert.Equal(t, tt.want, rec.Code, "%s %s", tt.method, tt.path)
	}
}

func TestFloorUploadReadsAndDiscardsTheBody(t *testing.T) {
	srv := httptest.NewServer(newHandler(noKeys{}, "n1"))
	t.Cleanup(srv.Close)
	const size = 3<<20 + 7 // more than any buffer on the way
	req, err := http.NewRequestWithContext(t.Context(), http.MethodPost, srv.URL+"/upload",
		io.LimitReader(zeros{}, size))
	require.NoError(t, err)
	req.ContentLength = -1 // chunked, as a streamed upload arrives
	resp, err := srv.Client().Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	require.Equal(t, http.StatusOK, resp.StatusCode, "POST /upload")
	var body uploadResponse
	require.NoError(t, json.NewDecoder(resp.Body).Decode(&body))
	assert.Equal(t, uploadResponse{OK: true, Bytes: size, Node: "n1"}, body)
}

// zeros reads as an endless run of zero bytes.
type zeros struct{}

func (zeros) Read(p []byte) (int, error) {
	clear(p)
	return len(p), nil
}
