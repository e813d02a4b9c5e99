package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/tierlimit/tierlimit/api"
	"github.com/tierlimit/tierlimit/tierlimittest"
)

// app is an upstream service that counts what reaches it.
type app struct {
	srv   *httptest.Server
	mu    sync.Mutex
	paths []string
	bytes atomic.Int64 // request body bytes read, across requests
}

func startApp(t *testing.T) *app {
	t.Helper()
	a := &app{}
	a.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n, _ := io.Copy(io.Discard, r.Body)
		a.bytes.Add(n)
		a.mu.Lock()
		a.paths = append(a.paths, r.Method+" "+r.URL.Path)
		a.mu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		_, _ = fmt.Fprintf(w, `{"text":"hello","bytes":%d}`, n)
	}))
	t.Cleanup(a.srv.Close)
	return a
}

func (a *app) seen() []string {
	a.mu.Lock()
	defer a.mu.Unlock()
	return append([]string(nil), a.paths...)
}

func do(t *testing.T, method, url, key string, body io.Reader, header ...string) *http.Response {
	t.Helper()
	req, err := http.NewRequestWithContext(t.Context(), method, url, body)
	require.NoError(t, err)
	if key != "" {
		req.Header.Set("X-API-Key", key)
	}
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err, "%s %s", method, url)
	t.Cleanup(func() { _ = resp.Body.Close() })
	return resp
}

func readAll(t *testing.T, resp *http.Response) string {
	t.Helper()
	b, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	return string(b)
}

// TestProxyModeChecksThenPasses runs cmd/node -upstream in front of an app:
// a free key's 20 requests reach the app with the rate-limit headers on
// its answers, the 21st is refused and never reaches it; the node's own
// endpoints are answered by the node; /test is the app's too.
func TestProxyModeChecksThenPasses(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a real process; skipped with -short")
	}
	a := startApp(t)
	bin := tierlimittest.Build(t, ".")
	config := tierlimittest.TiersFile(t, 5)
	p := startProc(t, bin, "proxy", config, "", "-upstream", a.srv.URL+"/api")
	assert.Equal(t, a.srv.URL+"/api", p.WaitLog(t, "node started", time.Second)["upstream"])

	for i := range tierlimittest.FreeBurst {
		resp := do(t, http.MethodPost, p.http+"/v1/transcribe", "free-0", strings.NewReader("RIFF"))
		require.Equal(t, http.StatusOK, resp.StatusCode, "request %d", i+1)
		assert.Equal(t, `{"text":"hello","bytes":4}`, readAll(t, resp))
		assert.Equal(t, "20", resp.Header.Get(api.HeaderLimit))
		assert.Equal(t, strconv.Itoa(tierlimittest.FreeBurst-1-i), resp.Header.Get(api.HeaderRemaining))
	}
	resp := do(t, http.MethodPost, p.http+"/v1/transcribe", "free-0", strings.NewReader("RIFF"))
	assert.Equal(t, http.StatusTooManyRequests, resp.StatusCode)
	assert.NotEmpty(t, resp.Header.Get("Retry-After"))
	assert.Contains(t, readAll(t, resp), `"code":"rate_limited"`)
	resp = do(t, http.MethodGet, p.http+"/v1/transcribe", "nobody", nil)
	assert.Equal(t, http.StatusUnauthorized, resp.StatusCode)
	assert.Len(t, a.seen(), tierlimittest.FreeBurst, "the refused and the unknown never reach the app")
	assert.Equal(t, "POST /api/v1/transcribe", a.seen()[0])

	// The node's own endpoints stay the node's.
	assert.Equal(t, http.StatusOK, do(t, http.MethodGet, p.http+"/livez", "", nil).StatusCode)
	assert.Equal(t, http.StatusOK, do(t, http.MethodGet, p.http+"/readyz", "", nil).StatusCode)
	assert.Contains(t, readAll(t, do(t, http.MethodGet, p.http+"/metrics", "", nil)), "tierlimit_")
	resp = do(t, http.MethodGet, p.http+"/system/health", "", nil, "Authorization", "Bearer "+testToken)
	assert.Contains(t, readAll(t, resp), `"status":"NORMAL"`)
	resp = do(t, http.MethodPost, p.http+"/authorize/v1/transcribe", "pro-0", nil)
	assert.Equal(t, http.StatusOK, resp.StatusCode)
	assert.Equal(t, "149", resp.Header.Get(api.HeaderRemaining))
	resp = do(t, http.MethodGet, p.http+"/test", "pro-0", nil)
	assert.Equal(t, `{"text":"hello","bytes":0}`, readAll(t, resp), "/test is the app's in proxy mode")
	assert.Equal(t, "148", resp.Header.Get(api.HeaderRemaining), "/authorize and the proxy share the key's count")
	assert.Len(t, a.seen(), tierlimittest.FreeBurst+1)

	// Paths pass as they came: ServeMux would redirect these.
	resp = do(t, http.MethodGet, p.http+"/v1//jobs/../x", "pro-0", nil)
	assert.Equal(t, http.StatusOK, resp.StatusCode)
	assert.Equal(t, "GET /api/v1//jobs/../x", a.seen()[tierlimittest.FreeBurst+1])
	resp = do(t, http.MethodGet, p.http+"/authorize/v1//x", "pro-0", nil)
	assert.Equal(t, http.StatusOK, resp.StatusCode, "a check of an unclean path is answered, not redirected")
	assert.Equal(t, "146", resp.Header.Get(api.HeaderRemaining))
	resp = do(t, http.MethodGet, p.http+"/authorizer", "pro-0", nil)
	assert.Equal(t, `{"text":"hello","bytes":0}`, readAll(t, resp))
	assert.Equal(t, "GET /api/authorizer", a.seen()[tierlimittest.FreeBurst+2], "only /authorize and what is under it is the node's")

	// The app goes down: 502 in the JSON error shape.
	a.srv.Close()
	resp = do(t, http.MethodGet, p.http+"/v1/transcribe", "pro-1", nil)
	assert.Equal(t, http.StatusBadGateway, resp.StatusCode)
	var e api.ErrorBody
	require.NoError(t, json.NewDecoder(resp.Body).Decode(&e))
	assert.Equal(t, "upstream_unavailable", e.Error.Code)
	p.WaitLog(t, "upstream failed", 5*time.Second)
	assert.Contains(t, readAll(t, do(t, http.MethodGet, p.http+"/metrics", "", nil)), "tierlimit_upstream_failures_total 1\n")
}

// TestProxyModeStreamsALargeUpload sends 200 MB through a node process to
// the app and reads the node's peak resident memory: the body passes
// through, it is not held.
func TestProxyModeStreamsALargeUpload(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a real process; skipped with -short")
	}
	a := startApp(t)
	bin := tierlimittest.Build(t, ".")
	p := startProc(t, bin, "upload", tierlimittest.TiersFile(t, 1), "", "-upstream", a.srv.URL)
	const size = 200 << 20
	resp := do(t, http.MethodPost, p.http+"/v1/transcribe", "pro-0", io.LimitReader(zeros{}, size), "Content-Type", "audio/wav")
	require.Equal(t, http.StatusOK, resp.StatusCode)
	assert.Equal(t, fmt.Sprintf(`{"text":"hello","bytes":%d}`, size), readAll(t, resp))
	peak := peakRSS(t, p.Cmd.Process.Pid)
	t.Logf("node peak RSS after a 200 MB upload: %.1f MiB", float64(peak)/(1<<20))
	assert.Less(t, peak, int64(100<<20), "peak RSS %d bytes: the upload was held in memory", peak)
}

// zeros is an endless reader of zero bytes.
type zeros struct{}

func (zeros) Read(p []byte) (int, error) {
	clear(p)
	return len(p), nil
}

// peakRSS returns VmHWM, the peak resident set of process pid, in bytes.
func peakRSS(t *testing.T, pid int) int64 {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	require.NoError(t, err)
	for line := range strings.Lines(string(b)) {
		if v, ok := strings.CutPrefix(line, "VmHWM:"); ok {
			kb, err := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
			require.NoError(t, err)
			return kb << 10
		}
	}
	t.Fatal("no VmHWM in /proc/<pid>/status")
	return 0
}

// TestProxyModeRefusesAnUploadBeforeItIsSent: a client that asks first
// (Expect: 100-continue, as curl does for bodies over 1 MiB) and is over
// its limit gets the 429 without the node asking for the body, so a
// refused upload costs neither side its bytes.
func TestProxyModeRefusesAnUploadBeforeItIsSent(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a real process; skipped with -short")
	}
	a := startApp(t)
	bin := tierlimittest.Build(t, ".")
	p := startProc(t, bin, "expect", tierlimittest.TiersFile(t, 1), "", "-upstream", a.srv.URL)
	for range tierlimittest.FreeBurst {
		require.Equal(t, http.StatusOK, do(t, http.MethodGet, p.http+"/x", "free-0", nil).StatusCode)
	}
	conn, err := net.Dial("tcp", strings.TrimPrefix(p.http, "http://"))
	require.NoError(t, err)
	defer func() { _ = conn.Close() }()
	require.NoError(t, conn.SetDeadline(time.Now().Add(10*time.Second)))
	_, err = io.WriteString(conn, "POST /v1/transcribe HTTP/1.1\r\nHost: x\r\nX-API-Key: free-0\r\n"+
		"Content-Type: audio/wav\r\nContent-Length: 209715200\r\nExpect: 100-continue\r\n\r\n")
	require.NoError(t, err)
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	require.NoError(t, err)
	assert.Equal(t, http.StatusTooManyRequests, resp.StatusCode, "the first answer is the refusal, not 100 Continue")
	assert.NotEmpty(t, resp.Header.Get("Retry-After"))
	assert.Len(t, a.seen(), tierlimittest.FreeBurst)
	assert.Zero(t, a.bytes.Load())
}
