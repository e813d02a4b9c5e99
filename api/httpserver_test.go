package api

import (
	"bufio"
	"encoding/json"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
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

// TestKeyWithBytesHTTPForbids pins what a client gets for an odd
// X-API-Key, sent as raw bytes on a real connection to the server a node
// runs: a control byte or DEL is a header value HTTP forbids, and net/http
// refuses the request with its own plain-text 400 while reading the
// headers, before any handler runs (textproto's readMIMEHeader), so the
// limiter never sees it and counts nothing; a value HTTP allows that is
// not a valid key gets the JSON 401, counted as unauthenticated.
func TestKeyWithBytesHTTPForbids(t *testing.T) {
	f := newFixture(t)
	srv := httptest.NewUnstartedServer(nil)
	srv.Config = NewHTTPServer(f.handler, slog.New(slog.DiscardHandler))
	srv.Start()
	t.Cleanup(srv.Close)
	tests := []struct {
		name, key string
		want      int
		message   string // of the JSON 401
	}{
		{"NUL", "free\x001", http.StatusBadRequest, ""},
		{"ESC", "free\x1b1", http.StatusBadRequest, ""},
		{"unit separator", "free\x1f1", http.StatusBadRequest, ""},
		{"DEL", "free\x7f1", http.StatusBadRequest, ""},
		{"tab inside", "free\t1", http.StatusUnauthorized, "X-API-Key: API key has byte 0x9 at 4; want printable ASCII without spaces"},
		{"space inside", "free 1", http.StatusUnauthorized, "X-API-Key: API key has byte 0x20 at 4; want printable ASCII without spaces"},
		{"UTF-8", "ключ", http.StatusUnauthorized, "X-API-Key: API key has byte 0xd0 at 0; want printable ASCII without spaces"},
		{"over 256 bytes", strings.Repeat("k", 257), http.StatusUnauthorized, "X-API-Key: API key is 257 bytes, longer than 256"},
		{"unknown", "nobody", http.StatusUnauthorized, "unknown API key"},
		{"spaces and tabs around a known key", " \tfree-1\t ", http.StatusOK, ""}, // HTTP strips them
	}
	unauthenticated := 0
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			resp := rawGet(t, srv.Listener.Addr().String(), tt.key)
			require.Equal(t, tt.want, resp.status, "GET /test with X-API-Key %q: %s", tt.key, resp.body)
			switch tt.want {
			case http.StatusBadRequest:
				assert.Equal(t, "text/plain; charset=utf-8", resp.contentType)
				assert.Equal(t, "400 Bad Request", resp.body, "net/http's own answer")
			case http.StatusUnauthorized:
				unauthenticated++
				assert.Equal(t, "application/json", resp.contentType)
				var e ErrorBody
				require.NoError(t, json.Unmarshal([]byte(resp.body), &e), "body %q", resp.body)
				assert.Equal(t, ErrorDetail{Code: "invalid_api_key", Message: tt.message}, e.Error)
			}
		})
	}
	assert.InDelta(t, unauthenticated, testutil.ToFloat64(f.metrics.decisions.WithLabelValues(TierNone, outcomeUnauthenticated)), 0,
		"requests counted as unauthenticated: the 401s, not the 400s")
}

// rawResponse is what rawGet read.
type rawResponse struct {
	status      int
	contentType string
	body        string
}

// rawGet sends GET /test with key written as it is into the X-API-Key
// header, bypassing the checks of net/http's client, and reads the answer.
func rawGet(t *testing.T, addr, key string) rawResponse {
	t.Helper()
	conn, err := net.Dial("tcp", addr)
	require.NoError(t, err)
	t.Cleanup(func() { conn.Close() })
	require.NoError(t, conn.SetDeadline(time.Now().Add(10*time.Second)))
	_, err = io.WriteString(conn, "GET /test HTTP/1.1\r\nHost: limiter\r\nX-API-Key: "+key+"\r\nConnection: close\r\n\r\n")
	require.NoError(t, err)
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	require.NoError(t, err, "key %q: no HTTP response", key)
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	return rawResponse{status: resp.StatusCode, contentType: resp.Header.Get("Content-Type"), body: string(body)}
}
