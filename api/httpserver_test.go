package api

import (
	"encoding/json"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestNewHTTPServerBoundsHeaders: the server every node (and the bench's
// floor and Redis node) serves with refuses oversized headers before any
// handler runs, and serves ordinary requests.
func TestNewHTTPServerBoundsHeaders(t *testing.T) {
	var reached atomic.Int32
	srv := NewHTTPServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		reached.Add(1)
		w.WriteHeader(http.StatusNoContent)
	}), slog.New(slog.DiscardHandler))
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	go func() { _ = srv.Serve(lis) }()
	t.Cleanup(func() { _ = srv.Close() })
	url := "http://" + lis.Addr().String() + "/"

	resp, err := http.Get(url)
	require.NoError(t, err)
	resp.Body.Close()
	assert.Equal(t, http.StatusNoContent, resp.StatusCode, "an ordinary request")

	get := func(header int) *http.Response {
		t.Helper()
		req, err := http.NewRequest(http.MethodGet, url, nil)
		require.NoError(t, err)
		req.Header.Set("X-Big", strings.Repeat("x", header))
		resp, err := http.DefaultClient.Do(req)
		require.NoError(t, err)
		t.Cleanup(func() { resp.Body.Close() })
		return resp
	}
	assert.Equal(t, http.StatusNoContent, get(MaxHeaderBytes-1024).StatusCode, "headers under the limit")
	resp = get(MaxHeaderBytes)
	assert.Equal(t, http.StatusRequestHeaderFieldsTooLarge, resp.StatusCode, "a 16 KiB header")
	var e ErrorBody
	require.NoError(t, json.NewDecoder(resp.Body).Decode(&e), "the JSON error shape")
	assert.Equal(t, "headers_too_large", e.Error.Code)
	assert.Equal(t, http.StatusRequestHeaderFieldsTooLarge, get(100<<10).StatusCode, "a 100 KiB header: net/http's own 431")
	assert.Equal(t, int32(2), reached.Load(), "requests that reached the handler")
}
