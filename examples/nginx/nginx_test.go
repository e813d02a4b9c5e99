// Package nginx_test runs examples/nginx/nginx.conf as documented: filled by
// envsubst, served by the system's nginx, in front of a real node and an app
// that records what reaches it.
package nginx_test

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/tierlimit/tierlimit/api"
	"github.com/tierlimit/tierlimit/tierlimittest"
)

const adminToken = "nginx-test-token"

// failOpen is the line of nginx.conf that decides what happens when the node
// cannot answer; failClosed replaces it.
const failOpen, failClosed = "return 204;", "return 503;"

// TestNginxForwardAuth checks what docs/forward-auth.md promises of the
// shipped nginx.conf: the rate-limit headers on every admitted response, a
// real 429 and a JSON 401 that the app never sees, uploads streamed whole,
// DEGRADED limits, the app's own errors untouched, and, with the node
// gone, fail open as shipped and fail closed with the one line flipped.
func TestNginxForwardAuth(t *testing.T) {
	tools := lookTools(t)
	tmpl, err := os.ReadFile("nginx.conf")
	require.NoError(t, err)
	require.Equal(t, 1, strings.Count(string(tmpl), failOpen), "nginx.conf must hold the fail-open line %q exactly once", failOpen)

	node := tierlimittest.Start(t, "node", tierlimittest.Build(t, "../../cmd/node"),
		"-config", tierlimittest.TiersFile(t, 4), "-node-name", "n1", "-admin-token", adminToken,
		"-http-addr", "127.0.0.1:0", "-grpc-addr", "127.0.0.1:0", "-gossip-addr", "127.0.0.1:0",
		"-log-format", "json")
	nodeAddr := node.WaitLog(t, "node started", 20*time.Second)["http_addr"].(string)
	app := startApp(t)
	ngx := startNginx(t, tools, string(tmpl), nodeAddr, app.addr)
	c := newClient(t)

	t.Run("burst then 429", func(t *testing.T) {
		for i := range tierlimittest.FreeBurst {
			r := c.do(t, http.MethodGet, ngx.url+"/v1/transcribe", "free-0", nil)
			require.Equal(t, http.StatusOK, r.status, "GET /v1/transcribe #%d with free-0: %s", i+1, r)
			want := strconv.Itoa(tierlimittest.FreeBurst - 1 - i)
			assert.Equal(t, "20", r.header.Get("X-RateLimit-Limit"), "#%d: %s", i+1, r)
			assert.Equal(t, want, r.header.Get("X-RateLimit-Remaining"), "#%d: %s", i+1, r)
			assertInt(t, r.header.Get("X-RateLimit-Reset"), "X-RateLimit-Reset of #%d", i+1)
			assert.Equal(t, `"free";q=20;w=60`, r.header.Get("RateLimit-Policy"), "#%d: %s", i+1, r)
			assert.True(t, strings.HasPrefix(r.header.Get("RateLimit"), `"free";r=`+want+";"), "RateLimit of #%d: %s", i+1, r)
			assert.Equal(t, "ok\n", r.body, "#%d: %s", i+1, r)
		}
		for i := range 3 {
			r := c.do(t, http.MethodPost, ngx.url+"/v1/transcribe", "free-0", bytes.NewReader([]byte("audio")))
			require.Equal(t, http.StatusTooManyRequests, r.status, "POST #%d past the burst with free-0: %s", i+1, r)
			assert.False(t, r.closed, "nginx closed the connection after a 429")
			retry := assertInt(t, r.header.Get("Retry-After"), "Retry-After of 429 #%d", i+1)
			assert.GreaterOrEqual(t, retry, 1, "Retry-After of 429 #%d: %s", i+1, r)
			// A counted hit weighs on the count for two windows.
			assert.LessOrEqual(t, retry, 120, "Retry-After of 429 #%d: %s", i+1, r)
			assert.Equal(t, "20", r.header.Get("X-RateLimit-Limit"), "429 #%d: %s", i+1, r)
			assert.Equal(t, "0", r.header.Get("X-RateLimit-Remaining"), "429 #%d: %s", i+1, r)
			assertInt(t, r.header.Get("X-RateLimit-Reset"), "X-RateLimit-Reset of 429 #%d", i+1)
			assert.Equal(t, `"free";q=20;w=60`, r.header.Get("RateLimit-Policy"), "429 #%d: %s", i+1, r)
			assert.Equal(t, `"free";r=0;t=`+strconv.Itoa(retry), r.header.Get("RateLimit"), "429 #%d: %s", i+1, r)
			assert.Equal(t, "application/json", r.header.Get("Content-Type"), "429 #%d: %s", i+1, r)
			e := r.jsonError(t)
			assert.Equal(t, "rate_limited", e.Code, "429 #%d: %s", i+1, r)
			assert.Equal(t, int64(retry), e.RetryAfterSeconds, "retry_after_seconds against Retry-After, 429 #%d: %s", i+1, r)
		}
		// A client that waits for "100 Continue" before its upload gets the
		// 429 instead, and so never sends the body.
		head := "POST /v1/transcribe HTTP/1.1\r\nHost: x\r\nX-API-Key: free-0\r\n" +
			"Content-Length: 1048576\r\nExpect: 100-continue\r\n\r\n"
		status := firstStatus(t, ngx.url, head)
		assert.Equal(t, http.StatusTooManyRequests, status, "first answer to %q", head)

		assert.Len(t, app.seen("free-0"), tierlimittest.FreeBurst, "requests with free-0 that reached the app")

		// The message is the node's own, rebuilt from its headers.
		direct := c.do(t, http.MethodGet, "http://"+nodeAddr+"/authorize", "free-0", nil)
		require.Equal(t, http.StatusTooManyRequests, direct.status, "the node's own /authorize for free-0: %s", direct)
		via := c.do(t, http.MethodGet, ngx.url+"/v1/transcribe", "free-0", nil)
		require.Equal(t, http.StatusTooManyRequests, via.status, "GET through nginx with free-0: %s", via)
		assert.Equal(t, direct.jsonError(t).Message, via.jsonError(t).Message, "the 429 message through nginx against the node's")
	})

	t.Run("uploads reach the app whole", func(t *testing.T) {
		body := bytes.Repeat([]byte("0123456789abcdef"), 1<<16) // 1 MiB
		sum := sha256.Sum256(body)
		for _, tc := range []struct {
			name, key string
			body      io.Reader
		}{
			{"with Content-Length", "pro-0", bytes.NewReader(body)},
			{"chunked", "pro-1", io.MultiReader(bytes.NewReader(body))}, // a length the client does not know
		} {
			r := c.do(t, http.MethodPost, ngx.url+"/v1/transcribe", tc.key, tc.body)
			require.Equal(t, http.StatusOK, r.status, "POST of 1 MiB %s: %s", tc.name, r)
			assert.Equal(t, "150", r.header.Get("X-RateLimit-Limit"), "POST %s: %s", tc.name, r)
			got := app.seen(tc.key)
			require.Len(t, got, 1, "requests with %s that reached the app", tc.key)
			assert.Equal(t, request{Method: http.MethodPost, Path: "/v1/transcribe", Key: tc.key, Len: len(body), Sum: sum}, got[0], "what the app received of the POST %s", tc.name)
		}
	})

	t.Run("401 for a missing or unknown key", func(t *testing.T) {
		for _, key := range []string{"", "no-such-key"} {
			r := c.do(t, http.MethodPost, ngx.url+"/v1/transcribe", key, strings.NewReader("audio"))
			require.Equal(t, http.StatusUnauthorized, r.status, "POST with X-API-Key %q: %s", key, r)
			assert.Equal(t, "application/json", r.header.Get("Content-Type"), "X-API-Key %q: %s", key, r)
			assert.Equal(t, "invalid_api_key", r.jsonError(t).Code, "X-API-Key %q: %s", key, r)
			assert.Empty(t, r.header.Get("X-RateLimit-Limit"), "X-API-Key %q: %s", key, r)
			assert.Empty(t, app.seen(key), "requests with X-API-Key %q that reached the app", key)
		}
	})

	t.Run("the app's own errors pass untouched", func(t *testing.T) {
		for _, code := range []int{http.StatusUnauthorized, http.StatusForbidden, http.StatusInternalServerError} {
			path := fmt.Sprintf("/status/%d", code)
			r := c.do(t, http.MethodGet, ngx.url+path, "pro-2", nil)
			assert.Equal(t, code, r.status, "GET %s with pro-2: %s", path, r)
			assert.Equal(t, fmt.Sprintf("app says %d\n", code), r.body, "GET %s: %s", path, r)
			assert.Equal(t, "150", r.header.Get("X-RateLimit-Limit"), "GET %s: %s", path, r)
		}
		assert.Len(t, app.seen("pro-2"), 3, "requests with pro-2 that reached the app")
	})

	t.Run("DEGRADED", func(t *testing.T) {
		req, err := http.NewRequestWithContext(t.Context(), http.MethodPost, "http://"+nodeAddr+"/system/health", strings.NewReader(`{"status":"DEGRADED"}`))
		require.NoError(t, err)
		req.Header.Set("Authorization", "Bearer "+adminToken)
		resp, err := c.Do(req)
		require.NoError(t, err)
		b, _ := io.ReadAll(resp.Body)
		_ = resp.Body.Close()
		require.Equal(t, http.StatusOK, resp.StatusCode, "POST /system/health DEGRADED: %s", b)
		require.Contains(t, string(b), `"status":"DEGRADED"`, "POST /system/health DEGRADED")

		for i := range tierlimittest.FreeDegraded {
			r := c.do(t, http.MethodGet, ngx.url+"/v1/transcribe", "free-1", nil)
			require.Equal(t, http.StatusOK, r.status, "GET #%d with free-1 in DEGRADED: %s", i+1, r)
			assert.Equal(t, "2", r.header.Get("X-RateLimit-Limit"), "#%d: %s", i+1, r)
			assert.Equal(t, strconv.Itoa(tierlimittest.FreeDegraded-1-i), r.header.Get("X-RateLimit-Remaining"), "#%d: %s", i+1, r)
		}
		r := c.do(t, http.MethodGet, ngx.url+"/v1/transcribe", "free-1", nil)
		assert.Equal(t, http.StatusTooManyRequests, r.status, "GET #3 with free-1 in DEGRADED: %s", r)
		assert.Equal(t, "rate_limited", r.jsonError(t).Code, "GET #3 in DEGRADED: %s", r)
		assert.Len(t, app.seen("free-1"), tierlimittest.FreeDegraded, "requests with free-1 that reached the app")
	})

	// The node goes away; free-0 used up its burst above.
	require.NoError(t, node.Cmd.Process.Kill())
	<-node.Exited

	t.Run("node down: fail open as shipped", func(t *testing.T) {
		r := c.do(t, http.MethodPost, ngx.url+"/v1/transcribe", "free-0", strings.NewReader("audio"))
		assert.Equal(t, http.StatusOK, r.status, "POST with free-0 and the node down: %s", r)
		assert.Equal(t, "ok\n", r.body, "POST with the node down: %s", r)
		for _, h := range []string{"X-RateLimit-Limit", "X-RateLimit-Remaining", "X-RateLimit-Reset", "RateLimit-Policy", "RateLimit", "Retry-After"} {
			assert.Empty(t, r.header.Get(h), "%s with the node down: %s", h, r)
		}
		got := app.seen("free-0")
		require.Len(t, got, tierlimittest.FreeBurst+1, "requests with free-0 that reached the app")
		assert.Equal(t, len("audio"), got[len(got)-1].Len, "body length the app received with the node down")
		assert.Contains(t, ngx.errorLog(t), "while connecting to upstream", "nginx's error.log with the node down")
	})

	t.Run("node down: fail closed with the line flipped", func(t *testing.T) {
		closed := startNginx(t, tools, strings.Replace(string(tmpl), failOpen, failClosed, 1), nodeAddr, app.addr)
		r := c.do(t, http.MethodGet, closed.url+"/v1/transcribe", "pro-3", nil)
		assert.Equal(t, http.StatusServiceUnavailable, r.status, "GET with pro-3, the node down, failing closed: %s", r)
		assert.Equal(t, "1", r.header.Get("Retry-After"), "failing closed: %s", r)
		assert.Equal(t, "application/json", r.header.Get("Content-Type"), "failing closed: %s", r)
		assert.Equal(t, "limiter_unavailable", r.jsonError(t).Code, "failing closed: %s", r)
		assert.Empty(t, app.seen("pro-3"), "requests with pro-3 that reached the app")
	})
}

// tools are the paths of the programs the test runs.
type tools struct{ nginx, envsubst string }

// lookTools finds nginx and envsubst, or skips the test without them unless
// TIERLIMIT_REQUIRE_NGINX=1 (CI) makes that a failure.
func lookTools(t *testing.T) tools {
	t.Helper()
	nginx, errN := exec.LookPath("nginx")
	if errN != nil {
		// Debian puts it in /usr/sbin, which is not on a non-root PATH.
		if _, err := os.Stat("/usr/sbin/nginx"); err == nil {
			nginx, errN = "/usr/sbin/nginx", nil
		}
	}
	envsubst, errE := exec.LookPath("envsubst")
	if err := errors.Join(errN, errE); err != nil {
		if os.Getenv("TIERLIMIT_REQUIRE_NGINX") == "1" {
			t.Fatalf("TIERLIMIT_REQUIRE_NGINX=1, but: %v", err)
		}
		t.Skipf("needs nginx and envsubst (Debian: apt-get install nginx gettext-base): %v", err)
	}
	return tools{nginx: nginx, envsubst: envsubst}
}

// nginx is a running nginx master process.
type nginx struct {
	url    string // http://127.0.0.1:port
	prefix string
}

// errorLog returns what nginx wrote to its error.log so far.
func (n *nginx) errorLog(t *testing.T) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(n.prefix, "error.log"))
	require.NoError(t, err)
	return string(b)
}

// startNginx fills tmpl with envsubst, as docs/forward-auth.md shows, and
// runs nginx on it in the foreground until the test ends. A port taken
// between choosing it and nginx's bind is retried with another.
func startNginx(t *testing.T, tools tools, tmpl, nodeAddr, appAddr string) *nginx {
	t.Helper()
	for attempt := 1; ; attempt++ {
		n, err := tryNginx(t, tools, tmpl, nodeAddr, appAddr)
		if err == nil {
			return n
		}
		require.True(t, errors.Is(err, errPortTaken) && attempt < 5, "start nginx: %v", err)
	}
}

var errPortTaken = errors.New("port taken")

func tryNginx(t *testing.T, tools tools, tmpl, nodeAddr, appAddr string) (*nginx, error) {
	t.Helper()
	prefix := t.TempDir()
	port := freePort(t)
	tmplPath := filepath.Join(prefix, "nginx.conf.template")
	require.NoError(t, os.WriteFile(tmplPath, []byte(tmpl), 0o600))
	conf := filepath.Join(prefix, "nginx.conf")
	envsubst(t, tools.envsubst, tmplPath, conf, map[string]string{
		"NODE_ADDR": nodeAddr, "UPSTREAM_ADDR": appAddr, "LISTEN_PORT": strconv.Itoa(port), "NGINX_PREFIX": prefix,
	})
	pidFile := filepath.Join(prefix, "nginx.pid")
	cmd := exec.Command(tools.nginx, "-p", prefix, "-c", conf, "-g", "daemon off; pid "+pidFile+";")
	stderr := &tierlimittest.Logs{}
	cmd.Stdout, cmd.Stderr = stderr, stderr
	require.NoError(t, cmd.Start())
	exited := make(chan struct{})
	go func() { _ = cmd.Wait(); close(exited) }()
	t.Cleanup(func() { stopNginx(t, cmd, pidFile, exited) })

	n := &nginx{url: fmt.Sprintf("http://127.0.0.1:%d", port), prefix: prefix}
	var ready bool
	require.Eventually(t, func() bool {
		select {
		case <-exited:
			return true
		default:
		}
		ready = pidOf(pidFile) == cmd.Process.Pid && dials(n.url[len("http://"):])
		return ready
	}, 20*time.Second, 20*time.Millisecond, "nginx neither listened on %d nor exited: %s", port, stderr)
	if ready {
		return n, nil
	}
	out := stderr.String()
	if strings.Contains(out, "Address already in use") {
		return nil, fmt.Errorf("%w: %d", errPortTaken, port)
	}
	return nil, fmt.Errorf("nginx exited: %s", out)
}

// stopNginx asks the master process named in pidFile to quit gracefully,
// and kills it if it has not after 15 s.
func stopNginx(t *testing.T, cmd *exec.Cmd, pidFile string, exited <-chan struct{}) {
	select {
	case <-exited:
		return
	default:
	}
	pid := pidOf(pidFile)
	if pid <= 0 {
		pid = cmd.Process.Pid
	}
	if err := syscall.Kill(pid, syscall.SIGQUIT); err != nil {
		t.Logf("SIGQUIT to nginx %d: %v", pid, err)
	}
	select {
	case <-exited:
	case <-time.After(15 * time.Second):
		t.Logf("nginx %d still running 15 s after SIGQUIT; killing it", pid)
		_ = cmd.Process.Kill()
		<-exited
	}
}

// envsubst runs the envsubst program on the template in src, with vars in
// its environment, and writes the result to dst.
func envsubst(t *testing.T, bin, src, dst string, vars map[string]string) {
	t.Helper()
	in, err := os.Open(src)
	require.NoError(t, err)
	defer in.Close()
	cmd := exec.Command(bin, "${NODE_ADDR} ${UPSTREAM_ADDR} ${LISTEN_PORT} ${NGINX_PREFIX}")
	cmd.Stdin = in
	cmd.Env = os.Environ()
	for k, v := range vars {
		cmd.Env = append(cmd.Env, k+"="+v)
	}
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	require.NoError(t, err, "envsubst: %s", stderr.String())
	require.NoError(t, os.WriteFile(dst, out, 0o600))
}

// pidOf returns the PID in a pid file, or 0.
func pidOf(path string) int {
	b, err := os.ReadFile(path)
	if err != nil {
		return 0
	}
	pid, _ := strconv.Atoi(strings.TrimSpace(string(b)))
	return pid
}

// dials reports whether a TCP connection to addr opens.
func dials(addr string) bool {
	c, err := net.DialTimeout("tcp", addr, time.Second)
	if err != nil {
		return false
	}
	_ = c.Close()
	return true
}

// freePort returns a port that was free on 127.0.0.1 a moment ago.
func freePort(t *testing.T) int {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	port := lis.Addr().(*net.TCPAddr).Port
	require.NoError(t, lis.Close())
	return port
}

// request is what the app received of one request.
type request struct {
	Method, Path, Key string
	Len               int
	Sum               [sha256.Size]byte
}

// app is the service behind nginx. It answers "ok", or the status a path
// /status/<code> names, and records every request. It is safe for
// concurrent use.
type app struct {
	addr string
	// mu guards got.
	mu  sync.Mutex
	got []request
}

func startApp(t *testing.T) *app {
	t.Helper()
	a := &app{}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, err := io.ReadAll(r.Body)
		if err != nil {
			http.Error(w, "read body: "+err.Error(), http.StatusBadRequest)
			return
		}
		a.mu.Lock()
		a.got = append(a.got, request{Method: r.Method, Path: r.URL.Path, Key: r.Header.Get("X-API-Key"), Len: len(body), Sum: sha256.Sum256(body)})
		a.mu.Unlock()
		if code, ok := strings.CutPrefix(r.URL.Path, "/status/"); ok {
			n, _ := strconv.Atoi(code)
			w.WriteHeader(n)
			fmt.Fprintf(w, "app says %d\n", n)
			return
		}
		_, _ = io.WriteString(w, "ok\n")
	}))
	t.Cleanup(srv.Close)
	a.addr = srv.Listener.Addr().String()
	return a
}

// seen returns the requests received with X-API-Key key.
func (a *app) seen(key string) []request {
	a.mu.Lock()
	defer a.mu.Unlock()
	var out []request
	for _, r := range a.got {
		if r.Key == key {
			out = append(out, r)
		}
	}
	return out
}

// client sends the test's requests, over kept-alive connections.
type client struct{ *http.Client }

func newClient(t *testing.T) client {
	tr := &http.Transport{}
	t.Cleanup(tr.CloseIdleConnections)
	return client{&http.Client{Transport: tr, Timeout: 20 * time.Second}}
}

// response is a response read whole.
type response struct {
	req    string
	status int
	header http.Header
	body   string
	closed bool // the server said it closes the connection
}

func (r response) String() string {
	return fmt.Sprintf("%s: %d %v %q", r.req, r.status, r.header, r.body)
}

// do sends a request with X-API-Key key (none if empty) and reads the answer.
func (c client) do(t *testing.T, method, url, key string, body io.Reader) response {
	t.Helper()
	req, err := http.NewRequestWithContext(t.Context(), method, url, body)
	require.NoError(t, err)
	if key != "" {
		req.Header.Set("X-API-Key", key)
	}
	resp, err := c.Do(req)
	require.NoError(t, err, "%s %s with X-API-Key %q", method, url, key)
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	require.NoError(t, err, "%s %s: read body", method, url)
	return response{req: method + " " + url, status: resp.StatusCode, header: resp.Header, body: string(b), closed: resp.Close}
}

// firstStatus writes head, a request without its body, to the server at
// base, and returns the status of the first response it reads.
func firstStatus(t *testing.T, base, head string) int {
	t.Helper()
	conn, err := net.Dial("tcp", strings.TrimPrefix(base, "http://"))
	require.NoError(t, err)
	defer conn.Close()
	require.NoError(t, conn.SetDeadline(time.Now().Add(20*time.Second)))
	_, err = io.WriteString(conn, head)
	require.NoError(t, err)
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	require.NoError(t, err, "read the answer to %q", head)
	_ = resp.Body.Close()
	return resp.StatusCode
}

// jsonError decodes r's body as {"error":{...}}.
func (r response) jsonError(t *testing.T) api.ErrorDetail {
	t.Helper()
	var e api.ErrorBody
	dec := json.NewDecoder(strings.NewReader(r.body))
	dec.DisallowUnknownFields()
	require.NoError(t, dec.Decode(&e), "JSON error body of %s", r)
	return e.Error
}

// assertInt asserts that s is a decimal integer and returns it.
func assertInt(t *testing.T, s string, what string, args ...any) int {
	t.Helper()
	n, err := strconv.Atoi(s)
	assert.NoError(t, err, "%s: %q is not an integer", fmt.Sprintf(what, args...), s)
	return n
}
