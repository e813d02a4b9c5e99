package proxy

import (
	"bufio"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/tierlimit/tierlimit/api"
	"github.com/tierlimit/tierlimit/bucket"
	"github.com/tierlimit/tierlimit/config"
	"github.com/tierlimit/tierlimit/health"
)

// seen is what an upstream received.
type seen struct {
	method, path, query, host string
	header                    http.Header
	body                      string
}

// recorder is an upstream that records each request and answers with
// answer.
type recorder struct {
	mu   sync.Mutex
	reqs []seen
}

func (rec *recorder) handler(answer http.HandlerFunc) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		rec.mu.Lock()
		rec.reqs = append(rec.reqs, seen{r.Method, r.URL.Path, r.URL.RawQuery, r.Host, r.Header.Clone(), string(b)})
		rec.mu.Unlock()
		answer(w, r)
	})
}

func (rec *recorder) all() []seen {
	rec.mu.Lock()
	defer rec.mu.Unlock()
	return append([]seen(nil), rec.reqs...)
}

// upstream starts an httptest server for h and returns its URL with path
// appended.
func upstream(t *testing.T, h http.Handler, path string) *url.URL {
	t.Helper()
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	u, err := url.Parse(srv.URL + path)
	require.NoError(t, err)
	return u
}

// front serves p the way cmd/node does: behind a handler that sets the
// rate-limit headers first, on a server with short whole-request timeouts.
func front(t *testing.T, p http.Handler, readTimeout time.Duration) string {
	t.Helper()
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set(api.HeaderLimit, "20")
		w.Header().Set(api.HeaderRemaining, "19")
		w.Header().Set(api.HeaderPolicy, `"free";q=20;w=60`)
		p.ServeHTTP(w, r)
	})
	srv := httptest.NewUnstartedServer(h)
	srv.Config.ReadTimeout = readTimeout
	srv.Config.WriteTimeout = readTimeout
	srv.Start()
	t.Cleanup(srv.Close)
	return srv.URL
}

func newProxy(t *testing.T, cfg Config) *Proxy {
	t.Helper()
	p, err := New(cfg)
	require.NoError(t, err)
	return p
}

func TestProxyPassesTheRequestAndTheAnswer(t *testing.T) {
	var rec recorder
	up := upstream(t, rec.handler(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("X-Ratelimit-Limit", "999") // the upstream's own: the node's wins
		w.Header().Set("Ratelimit", `"app";r=1`)
		w.Header().Set("Retry-After", "7") // not one the node wrote: kept
		w.Header().Set("X-Job", "42")
		w.WriteHeader(http.StatusAccepted)
		_, _ = io.WriteString(w, `{"text":"hello"}`)
	}), "/api")
	base := front(t, newProxy(t, Config{Upstream: up}), 5*time.Second)

	req, err := http.NewRequest(http.MethodPost, base+"/v1/transcribe?lang=en&x=1", strings.NewReader("RIFF....WAVE"))
	require.NoError(t, err)
	req.Host = "stt.example.com"
	req.Header.Set("X-API-Key", "free-1")
	req.Header.Set("Content-Type", "audio/wav")
	req.Header.Set("X-Forwarded-For", "203.0.113.7")
	req.Header.Set("X-Forwarded-Proto", "https")
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	body, _ := io.ReadAll(resp.Body)
	_ = resp.Body.Close()

	assert.Equal(t, http.StatusAccepted, resp.StatusCode)
	assert.Equal(t, `{"text":"hello"}`, string(body))
	assert.Equal(t, []string{"20"}, resp.Header.Values("X-Ratelimit-Limit"), "the node's value, once")
	assert.Empty(t, resp.Header.Values("Ratelimit"), "the upstream's RateLimit is dropped")
	assert.Equal(t, "7", resp.Header.Get("Retry-After"))
	assert.Equal(t, "42", resp.Header.Get("X-Job"))

	got := rec.all()
	require.Len(t, got, 1)
	s := got[0]
	assert.Equal(t, http.MethodPost, s.method)
	assert.Equal(t, "/api/v1/transcribe", s.path, "the upstream's base path joined with the request's")
	assert.Equal(t, "lang=en&x=1", s.query)
	assert.Equal(t, up.Host, s.host, "the upstream's own Host")
	assert.Equal(t, "RIFF....WAVE", s.body)
	assert.Equal(t, "free-1", s.header.Get("X-API-Key"), "the key reaches the app")
	assert.Equal(t, "audio/wav", s.header.Get("Content-Type"))
	assert.Equal(t, "203.0.113.7, 127.0.0.1", s.header.Get("X-Forwarded-For"), "the chain, and this client")
	assert.Equal(t, "stt.example.com", s.header.Get("X-Forwarded-Host"))
	assert.Equal(t, "https", s.header.Get("X-Forwarded-Proto"), "what the load balancer in front said")
	assert.Regexp(t, `^1\.1 tierlimit-[0-9a-f]{8}$`, s.header.Get("Via"), "this hop, named")
}

// TestProxyAnswersALoopWith508: a proxy whose upstream leads back to
// itself (-upstream set to the node's own address) finds its own Via entry
// on the second pass and answers 508 at once, instead of forwarding to
// itself until it runs out of connections. Another proxy's entries pass.
func TestProxyAnswersALoopWith508(t *testing.T) {
	var p *Proxy
	base := front(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		p.ServeHTTP(w, r)
	}), 5*time.Second)
	u, err := url.Parse(base)
	require.NoError(t, err)
	p = newProxy(t, Config{Upstream: u})

	req, err := http.NewRequest(http.MethodGet, base+"/v1/transcribe", nil)
	require.NoError(t, err)
	req.Header.Set("Via", "1.1 lb-7, HTTP/1.1 tierlimit-00000000 (another node)")
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	assert.Equal(t, http.StatusLoopDetected, resp.StatusCode)
	e := errorBody(t, resp)
	assert.Equal(t, "proxy_loop", e.Code)
	assert.Contains(t, e.Message, "-upstream")
	assert.Equal(t, int64(1), p.Failures(), "the looping request fails once, at its second pass")
}

func TestProxySetsForwardedFieldsOfItsOwn(t *testing.T) {
	var rec recorder
	up := upstream(t, rec.handler(func(http.ResponseWriter, *http.Request) {}), "")
	base := front(t, newProxy(t, Config{Upstream: up}), 5*time.Second)
	resp, err := http.Get(base + "/x")
	require.NoError(t, err)
	_ = resp.Body.Close()
	s := rec.all()[0]
	assert.Equal(t, "127.0.0.1", s.header.Get("X-Forwarded-For"))
	assert.Equal(t, strings.TrimPrefix(base, "http://"), s.header.Get("X-Forwarded-Host"))
	assert.Equal(t, "http", s.header.Get("X-Forwarded-Proto"))
}

// errorBody decodes the JSON error shape of resp.
func errorBody(t *testing.T, resp *http.Response) api.ErrorDetail {
	t.Helper()
	defer func() { _ = resp.Body.Close() }()
	var b api.ErrorBody
	require.NoError(t, json.NewDecoder(resp.Body).Decode(&b))
	return b.Error
}

func TestProxyAnswersForAnUpstreamThatIsDownOrSlow(t *testing.T) {
	t.Run("down: 502", func(t *testing.T) {
		// The front takes its port first: the port closed below must not be
		// the front's own, or the proxy would forward to itself in a loop.
		var p *Proxy
		base := front(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			p.ServeHTTP(w, r)
		}), 5*time.Second)
		lis, err := net.Listen("tcp", "127.0.0.1:0")
		require.NoError(t, err)
		addr := lis.Addr().String()
		require.NoError(t, lis.Close()) // nothing listens there now
		p = newProxy(t, Config{Upstream: &url.URL{Scheme: "http", Host: addr}})
		for range 3 {
			resp, err := http.Get(base + "/v1/transcribe")
			require.NoError(t, err)
			assert.Equal(t, http.StatusBadGateway, resp.StatusCode)
			assert.Equal(t, "application/json", resp.Header.Get("Content-Type"))
			assert.Equal(t, "20", resp.Header.Get("X-Ratelimit-Limit"), "the request was counted: its headers stay")
			e := errorBody(t, resp)
			assert.Equal(t, "upstream_unavailable", e.Code)
			assert.Contains(t, e.Message, "connection refused")
		}
		assert.Equal(t, int64(3), p.Failures())
	})
	t.Run("slow: 504", func(t *testing.T) {
		release := make(chan struct{})
		up := upstream(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			select {
			case <-release:
			case <-r.Context().Done():
			}
		}), "")
		t.Cleanup(func() { close(release) })
		base := front(t, newProxy(t, Config{Upstream: up, ResponseTimeout: 50 * time.Millisecond}), 5*time.Second)
		resp, err := http.Get(base + "/v1/transcribe")
		require.NoError(t, err)
		assert.Equal(t, http.StatusGatewayTimeout, resp.StatusCode)
		assert.Equal(t, "upstream_timeout", errorBody(t, resp).Code)
	})
}

// TestProxyStreamsBothWays: the upstream has the first part of the body
// while the client still holds the rest, and the client has the first part
// of the answer while the upstream still holds the rest. A proxy that
// buffered either would wait forever here.
func TestProxyStreamsBothWays(t *testing.T) {
	firstIn := make(chan string, 1)
	sendRest := make(chan struct{})
	answerRest := make(chan struct{})
	total := make(chan int, 1)
	up := upstream(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		buf := make([]byte, 5)
		_, err := io.ReadFull(r.Body, buf)
		if err != nil {
			return
		}
		firstIn <- string(buf)
		rest, _ := io.Copy(io.Discard, r.Body)
		total <- len(buf) + int(rest)
		_, _ = io.WriteString(w, "part1")
		http.NewResponseController(w).Flush()
		<-answerRest
		_, _ = io.WriteString(w, "part2")
	}), "")
	base := front(t, newProxy(t, Config{Upstream: up}), 5*time.Second)

	pr, pw := io.Pipe()
	go func() {
		_, _ = io.WriteString(pw, "first")
		<-sendRest
		_, _ = pw.Write(make([]byte, 1<<20))
		_ = pw.Close()
	}()
	done := make(chan *http.Response, 1)
	go func() {
		resp, err := http.Post(base+"/upload", "audio/wav", pr)
		if err == nil {
			done <- resp
		}
		close(done)
	}()
	select {
	case got := <-firstIn:
		assert.Equal(t, "first", got)
	case <-time.After(10 * time.Second):
		t.Fatal("the upstream never got the first 5 bytes while the client held the rest: the request body is buffered")
	}
	close(sendRest)
	assert.Equal(t, 5+1<<20, <-total)
	var resp *http.Response
	select {
	case resp = <-done:
		require.NotNil(t, resp)
	case <-time.After(10 * time.Second):
		t.Fatal("no answer while the upstream held its second part: the answer is buffered")
	}
	defer func() { _ = resp.Body.Close() }()
	buf := make([]byte, 5)
	_, err := io.ReadFull(resp.Body, buf)
	require.NoError(t, err)
	assert.Equal(t, "part1", string(buf))
	close(answerRest)
	rest, _ := io.ReadAll(resp.Body)
	assert.Equal(t, "part2", string(rest))
}

// TestProxyIdleTimeoutReplacesWholeRequestTimeouts: behind a server whose
// read and write timeouts are 300 ms, an upload that keeps moving for
// longer passes, and one that stalls for longer than the idle timeout is
// cut.
func TestProxyIdleTimeoutReplacesWholeRequestTimeouts(t *testing.T) {
	got := make(chan int64, 2)
	up := upstream(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n, err := io.Copy(io.Discard, r.Body)
		if err != nil {
			n = -n - 1 // cut short
		}
		got <- n
	}), "")
	base := front(t, newProxy(t, Config{Upstream: up, IdleTimeout: 400 * time.Millisecond}), 300*time.Millisecond)

	slow := func(chunks int, gap time.Duration) (int, error) {
		pr, pw := io.Pipe()
		go func() {
			for range chunks {
				if _, err := pw.Write(make([]byte, 1000)); err != nil {
					return
				}
				time.Sleep(gap) // the client's pace: what is being tested, not synchronisation
			}
			_ = pw.Close()
		}()
		resp, err := http.Post(base+"/upload", "audio/wav", pr)
		if err != nil {
			return 0, err
		}
		_ = resp.Body.Close()
		return resp.StatusCode, nil
	}

	status, err := slow(12, 75*time.Millisecond) // 900 ms in all, never 400 ms idle
	require.NoError(t, err)
	assert.Equal(t, http.StatusOK, status)
	assert.Equal(t, int64(12000), <-got, "the whole body, past the server's 300 ms read timeout")

	_, _ = slow(2, 2*time.Second) // stalls 2 s after the first 1000 bytes
	assert.Equal(t, int64(-1001), <-got, "the upstream sees the body cut after the idle timeout")
}

// TestProxyPassesUpgrades: a protocol upgrade (WebSocket, for streaming
// transcription) is proxied as a raw two-way stream.
func TestProxyPassesUpgrades(t *testing.T) {
	up := upstream(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Upgrade") != "echo" {
			http.Error(w, "want Upgrade: echo", http.StatusBadRequest)
			return
		}
		conn, brw, err := http.NewResponseController(w).Hijack()
		if err != nil {
			return
		}
		defer func() { _ = conn.Close() }()
		_, _ = brw.WriteString("HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: echo\r\n\r\n")
		_ = brw.Flush()
		line, _ := brw.ReadString('\n')
		_, _ = brw.WriteString("echo: " + line)
		_ = brw.Flush()
	}), "")
	base := front(t, newProxy(t, Config{Upstream: up}), 5*time.Second)

	conn, err := net.Dial("tcp", strings.TrimPrefix(base, "http://"))
	require.NoError(t, err)
	defer func() { _ = conn.Close() }()
	require.NoError(t, conn.SetDeadline(time.Now().Add(10*time.Second)))
	_, err = io.WriteString(conn, "GET /v1/listen HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: echo\r\n\r\n")
	require.NoError(t, err)
	br := bufio.NewReader(conn)
	resp, err := http.ReadResponse(br, nil)
	require.NoError(t, err)
	assert.Equal(t, http.StatusSwitchingProtocols, resp.StatusCode)
	assert.Equal(t, "20", resp.Header.Get("X-Ratelimit-Limit"))
	_, err = io.WriteString(conn, "hello\n")
	require.NoError(t, err)
	line, err := br.ReadString('\n')
	require.NoError(t, err)
	assert.Equal(t, "echo: hello\n", line)
}

func TestNewRefusesABadConfig(t *testing.T) {
	tests := []struct {
		name string
		cfg  Config
		want string
	}{
		{"no upstream", Config{}, "proxy: Upstream is required"},
		{"scheme", Config{Upstream: &url.URL{Scheme: "ftp", Host: "a"}}, `proxy: Upstream "ftp://a": the scheme must be http or https, as in http://127.0.0.1:8000`},
		{"host", Config{Upstream: &url.URL{Scheme: "http", Path: "/x"}}, `proxy: Upstream "http:///x": no host: give one such as http://127.0.0.1:8000`},
		{"user", Config{Upstream: &url.URL{Scheme: "http", Host: "a", User: url.UserPassword("u", "p")}}, `proxy: Upstream "http://u:xxxxx@a": user info is not supported`},
		{"query", Config{Upstream: &url.URL{Scheme: "http", Host: "a", RawQuery: "x=1"}}, `proxy: Upstream "http://a?x=1": a query or fragment is not supported: give the base URL, such as http://127.0.0.1:8000/api`},
		{"negative", Config{Upstream: &url.URL{Scheme: "http", Host: "a"}, IdleTimeout: -1}, "proxy: timeouts must not be negative"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := New(tt.cfg)
			assert.EqualError(t, err, tt.want)
		})
	}
}

// TestProxySettlesTheCostTheUpstreamReports: the upstream's
// Tierlimit-Cost is the request's actual cost, settled against its
// reservation, and is not passed on to the client.
func TestProxySettlesTheCostTheUpstreamReports(t *testing.T) {
	up := upstream(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Tierlimit-Cost", "7")
		w.WriteHeader(http.StatusOK)
	}), "")
	tier := config.Tier{Name: "gpu", Limit: 10, Burst: 10, Degraded: 10, Cost: config.Limits{Limit: 100, Burst: 100, Degraded: 100}}
	local := api.Local{
		Store: bucket.New(bucket.Config{Window: time.Minute}),
		Slots: bucket.NewSlots(),
	}
	lim := api.NewLimiter(api.Config{Keys: keysOf{"k": tier}, Checker: local, Spender: local, CostUnit: "s",
		Health: health.NewHolder("n"), Window: time.Minute})
	srv := httptest.NewServer(lim.Middleware(newProxy(t, Config{Upstream: up})))
	t.Cleanup(srv.Close)

	req, err := http.NewRequest(http.MethodPost, srv.URL+"/v1/transcribe", nil)
	require.NoError(t, err)
	req.Header.Set("X-API-Key", "k")
	req.Header.Set("Tierlimit-Cost", "40")
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	_ = resp.Body.Close()
	require.Equal(t, http.StatusOK, resp.StatusCode)
	assert.Empty(t, resp.Header.Get("Tierlimit-Cost"), "the upstream's report is for the node")
	assert.Contains(t, resp.Header.Get("RateLimit"), `"gpu-cost";r=60`, "40 reserved at admission")
	left := local.Store.Take(time.Now(), config.CostKey("k"), 0, 100)
	assert.Equal(t, 93, left.Remaining, "settled at the 7 the upstream reported")
}

type keysOf map[string]config.Tier

func (k keysOf) Lookup(key string) (config.Tier, bool) { t, ok := k[key]; return t, ok }
