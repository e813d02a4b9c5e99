package main

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/tierlimit/tierlimit/api"
	"github.com/tierlimit/tierlimit/tierlimittest"
)

// tokenSaved is the log line of a node that generated its admin token.
const tokenSaved = "no admin token given: generated one for this run and wrote it to admin_token_file, readable by this user only; set -admin-token or ADMIN_TOKEN to choose it"

func TestRunServesAndShutsDownCleanly(t *testing.T) {
	tmp := t.TempDir()
	t.Setenv("TMPDIR", tmp) // where a node without a state file writes its token
	addr, logs, cancel, done := startRun(t, "-config", "../../config/tiers.json", "-node-name", "solo")
	base := "http://" + addr

	path, token := generatedToken(t, logs)
	assert.Equal(t, tmp, filepath.Dir(path), "token file %s: not in the temporary directory", path)

	assert.Equal(t, http.StatusOK, send(t, http.MethodGet, base+"/livez", "", "").StatusCode)

	assert.Equal(t, http.StatusOK, send(t, http.MethodGet, base+"/livez", "", "").StatusCode)

	resp := send(t, http.MethodGet, base+"/test", "X-API-Key", "free-demo-1")
	assert.Equal(t, http.StatusOK, resp.StatusCode)
	assert.Equal(t, "19", resp.Header.Get("X-RateLimit-Remaining"))

	resp = send(t, http.MethodPost, base+"/test", "X-API-Key", "free-demo-1")
	assert.Equal(t, http.StatusMethodNotAllowed, resp.StatusCode)
	assert.Equal(t, "GET, HEAD", resp.Header.Get("Allow"))
	resp = send(t, http.MethodGet, base+"/test", "X-API-Key", "free-demo-1")
	assert.Equal(t, "18", resp.Header.Get("X-RateLimit-Remaining"), "a refused method is not counted")

	resp = send(t, http.MethodGet, base+"/system/health", "Authorization", "Bearer "+token)
	assert.Equal(t, http.StatusOK, resp.StatusCode, "the generated token opens the admin API")

	cancel()
	select {
	case err := <-done:
		require.NoError(t, err)
	case <-time.After(15 * time.Second):
		t.Fatal("run did not return after its context ended")
	}
	_, err := http.Get(base + "/livez")
	assert.Error(t, err, "the HTTP port is closed after shutdown")
	assert.NoFileExists(t, path, "the token file after shutdown")
	assert.NotContains(t, logs.String(), token, "the generated token in the logs")
}

// TestRunSavesTheGeneratedTokenBesideTheStateFile: a node with a state file
// writes its generated token beside it, named after it, replacing what a
// crashed run left there (mode included).
func TestRunSavesTheGeneratedTokenBesideTheStateFile(t *testing.T) {
	dir := t.TempDir()
	stale := filepath.Join(dir, "health.admin-token")
	require.NoError(t, os.WriteFile(stale, []byte("a token of a run that crashed\n"), 0o644))
	addr, logs, cancel, done := startRun(t, "-config", "../../config/tiers.json", "-node-name", "stateful",
		"-state-file", filepath.Join(dir, "health.json"))

	path, token := generatedToken(t, logs)
	assert.Equal(t, stale, path)
	resp := send(t, http.MethodGet, "http://"+addr+"/system/health", "Authorization", "Bearer "+token)
	assert.Equal(t, http.StatusOK, resp.StatusCode, "the generated token opens the admin API")

	cancel()
	require.NoError(t, <-done)
	assert.NoFileExists(t, path, "the token file after shutdown")
	assert.NotContains(t, logs.String(), token, "the generated token in the logs")
}

// TestRunWithNowhereToSaveTheToken: a node that cannot write a generated
// token anywhere starts with the admin endpoints closed, and says why.
func TestRunWithNowhereToSaveTheToken(t *testing.T) {
	t.Setenv("TMPDIR", filepath.Join(t.TempDir(), "missing"))
	addr, logs, cancel, done := startRun(t, "-config", "../../config/tiers.json", "-node-name", "tokenless")

	rec, ok := logs.Find("no admin token given, and a generated one could not be saved: the admin endpoints refuse every request; set -admin-token or ADMIN_TOKEN")
	require.True(t, ok, "no log line about the token that could not be saved; logs:\n%s", logs)
	assert.Equal(t, "WARN", rec["level"])
	assert.Contains(t, rec["err"], "missing", "the reason")
	assert.False(t, logs.Count(tokenSaved) > 0, "a token file was reported")
	resp := send(t, http.MethodGet, "http://"+addr+"/system/health", "Authorization", "Bearer ")
	assert.Equal(t, http.StatusUnauthorized, resp.StatusCode, "the admin API without a token")
	assert.Equal(t, http.StatusOK, send(t, http.MethodGet, "http://"+addr+"/test", "X-API-Key", "free-demo-1").StatusCode,
		"the limiter serves all the same")

	cancel()
	require.NoError(t, <-done)
}

// generatedToken returns the path of the file the node reported writing
// its generated admin token to, and the token, checking that the file is
// for this user only and that no log line holds the token.
func generatedToken(t *testing.T, logs *tierlimittest.Logs) (path, token string) {
	t.Helper()
	rec, ok := logs.Find(tokenSaved)
	require.True(t, ok, "no log line about the generated admin token; logs:\n%s", logs)
	assert.Equal(t, "WARN", rec["level"])
	assert.NotContains(t, rec, "admin_token", "the token itself in the log line")
	path, _ = rec["admin_token_file"].(string)
	require.NotEmpty(t, path, "admin_token_file in %v", rec)
	info, err := os.Stat(path)
	require.NoError(t, err)
	assert.Equal(t, os.FileMode(0o600), info.Mode().Perm(), "mode of %s", path)
	b, err := os.ReadFile(path)
	require.NoError(t, err)
	token = strings.TrimSuffix(string(b), "\n")
	require.Len(t, token, 48, "the token in %s", path)
	assert.NotContains(t, logs.String(), token, "the generated token in the logs")
	return path, token
}

func TestRunRefusesABadConfig(t *testing.T) {
	dir := t.TempDir()
	path := dir + "/tiers.json"
	require.NoError(t, writeFile(path, `{"window_seconds":60,"tiers":{"free":{"limit":10,"burst":5}}}`))
	err := run(t.Context(), []string{"-config", path, "-http-addr", "127.0.0.1:0"}, func(string) string { return "" }, &tierlimittest.Logs{})
	require.Error(t, err)
	assert.Contains(t, err.Error(), "tiers.free.burst")
}

func TestHealthcheckSubcommand(t *testing.T) {
	addr, _, cancel, done := startRun(t, "-config", "../../config/tiers.json", "-node-name", "hc", "-admin-token", "x")
	defer cancel()

	env := func(k string) string {
		if k == "HTTP_ADDR" {
			return addr
		}
		return ""
	}
	assert.NoError(t, run(t.Context(), []string{"healthcheck"}, env, &tierlimittest.Logs{}), "a running node is healthy")
	assert.NoError(t, run(t.Context(), []string{"healthcheck", "-path", "/livez"}, env, &tierlimittest.Logs{}))

	cancel()
	require.NoError(t, <-done)
	err := run(t.Context(), []string{"healthcheck", "-http-addr", addr}, func(string) string { return "" }, &tierlimittest.Logs{})
	assert.Error(t, err, "a stopped node is not healthy")
}

// TestSIGHUPReloadsTheTiersFile: a node that gets SIGHUP reads its tiers
// file again, refusing a bad one and keeping the one in force.
func TestSIGHUPReloadsTheTiersFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "tiers.json")
	require.NoError(t, writeFile(path, `{"window_seconds":60,"tiers":{"free":{"limit":2}},"api_keys":{"k1":"free"}}`))
	addr, logs, cancel, done := startRun(t, "-config", path, "-node-name", "hup", "-admin-token", "x")
	base := "http://" + addr
	status := func(key string) int { return send(t, http.MethodGet, base+"/test", "X-API-Key", key).StatusCode }
	require.Equal(t, http.StatusUnauthorized, status("k2"))

	require.NoError(t, writeFile(path, `{"window_seconds":60,"tiers":{"free":{"limit":2}},"api_keys":{"k1":"free","k2":"free"}}`))
	require.NoError(t, syscall.Kill(os.Getpid(), syscall.SIGHUP))
	require.Eventually(t, func() bool { return logs.Count("config reloaded") == 1 }, 5*time.Second, 10*time.Millisecond)
	assert.Equal(t, http.StatusOK, status("k2"), "a key added by the reload")

	require.NoError(t, writeFile(path, `{"window_seconds":60,"tiers":{"free":{"limit":0}}}`))
	require.NoError(t, syscall.Kill(os.Getpid(), syscall.SIGHUP))
	require.Eventually(t, func() bool { return logs.Count("reload refused; the config in force stays") == 1 }, 5*time.Second, 10*time.Millisecond)
	assert.Equal(t, http.StatusOK, status("k2"), "the last good file stays in force")

	cancel()
	require.NoError(t, <-done)
}

// startRun runs the node in the background on loopback ports with args
// added, waits for its "node started" log and returns its HTTP address, its
// logs, a cancel that stops it and the channel run's error comes back on.
func startRun(t *testing.T, args ...string) (addr string, logs *tierlimittest.Logs, cancel context.CancelFunc, done <-chan error) {
	t.Helper()
	ctx, cancel := context.WithCancel(t.Context())
	logs = &tierlimittest.Logs{}
	errc := make(chan error, 1)
	args = append([]string{"-http-addr", "127.0.0.1:0", "-grpc-addr", "127.0.0.1:0", "-gossip-addr", "127.0.0.1:0", "-log-format", "json"}, args...)
	go func() { errc <- run(ctx, args, func(string) string { return "" }, logs) }()
	var started map[string]any
	require.Eventually(t, func() bool {
		var ok bool
		started, ok = logs.Find("node started")
		return ok
	}, 10*time.Second, 10*time.Millisecond, "no 'node started' log")
	return started["http_addr"].(string), logs, cancel, errc
}

// send makes one request with headers, each name then value (an empty
// name sets none),
// and returns the response, its body read and closed.
func send(t *testing.T, method, url string, headers ...string) *http.Response {
	t.Helper()
	req, err := http.NewRequest(method, url, nil)
	require.NoError(t, err)
	for i := 0; i+1 < len(headers); i += 2 {
		if headers[i] != "" {
			req.Header.Set(headers[i], headers[i+1])
		}
	}
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp
}

// TestRunDemoJobQuery: GET /test takes ?work=DURATION and ?cost=N, the
// stand-in for a GPU job; a bad value is a 400 that names it, before the
// limiter (not counted).
func TestRunDemoJobQuery(t *testing.T) {
	addr, _, cancel, done := startRun(t, "-config", "../../config/tiers.json", "-node-name", "demo")
	base := "http://" + addr + "/test"
	for _, q := range []string{"work=ten", "work=-1s", "work=11m", "cost=-1", "cost=1.5", "cost=1000000001"} {
		resp := send(t, http.MethodGet, base+"?"+q, "X-API-Key", "free-demo-1")
		assert.Equal(t, http.StatusBadRequest, resp.StatusCode, q)
	}
	resp := send(t, http.MethodGet, base+"?work=20ms&cost=5", "X-API-Key", "free-demo-1")
	assert.Equal(t, http.StatusOK, resp.StatusCode)
	assert.Equal(t, "19", resp.Header.Get("X-RateLimit-Remaining"), "the bad queries were not counted")
	cancel()
	require.NoError(t, <-done)
}

// TestRunCountsCostInACluster: a cluster member takes a tiers file with
// cost and concurrency limits and counts them: a job's estimate is
// reserved and settles at the cost the demo reports.
func TestRunCountsCostInACluster(t *testing.T) {
	path := filepath.Join(t.TempDir(), "tiers.json")
	require.NoError(t, os.WriteFile(path, []byte(`{"window_seconds": 60, "cost_unit": "audio-seconds",
		"tiers": {"free": {"limit": 10, "cost": {"limit": 300}, "concurrency": {"limit": 1}}}, "api_keys": {"k": "free"}}`), 0o600))
	ctx, cancel := context.WithCancel(t.Context())
	logs := &tierlimittest.Logs{}
	done := make(chan error, 1)
	go func() {
		done <- run(ctx, []string{"-config", path, "-node-name", "n", "-http-addr", "127.0.0.1:0", "-grpc-addr", "127.0.0.1:0",
			"-gossip-addr", "127.0.0.1:0", "-log-format", "json"}, func(string) string { return "" }, logs)
	}()
	var started map[string]any
	require.Eventually(t, func() bool { var ok bool; started, ok = logs.Find("node started"); return ok },
		10*time.Second, 10*time.Millisecond, "no 'node started' log")
	base := "http://" + started["http_addr"].(string) + "/test"
	for _, want := range []string{`"free-cost";r=200;`, `"free-cost";r=190;`} {
		resp := send(t, http.MethodGet, base+"?cost=10", "X-API-Key", "k", "Tierlimit-Cost", "100")
		require.Equal(t, http.StatusOK, resp.StatusCode)
		assert.Contains(t, resp.Header.Get("RateLimit"), want, "100 reserved, settled at 10")
		assert.Contains(t, resp.Header.Get("RateLimit"), `"free-concurrency";r=0`)
	}

	// Through /authorize, settled later: the slot is held until the
	// settle call, which settles at the actual cost.
	authz := "http://" + started["http_addr"].(string) + "/authorize/v1/transcribe"
	resp := send(t, http.MethodPost, authz, "X-API-Key", "k", "Tierlimit-Cost", "50", "Tierlimit-Settle", "later")
	require.Equal(t, http.StatusOK, resp.StatusCode)
	id := resp.Header.Get("Tierlimit-Reservation")
	require.Len(t, id, 32)
	assert.Contains(t, resp.Header.Get("RateLimit"), `"free-cost";r=230;`, "300 - 10 - 10 - 50")
	resp = send(t, http.MethodPost, authz, "X-API-Key", "k")
	assert.Equal(t, http.StatusTooManyRequests, resp.StatusCode, "the one slot is held")
	settle := "http://" + started["http_addr"].(string) + "/system/settle"
	resp = send(t, http.MethodPost, settle, "X-API-Key", "k", "Tierlimit-Reservation", id, "Tierlimit-Cost", "20")
	require.Equal(t, http.StatusNoContent, resp.StatusCode)
	resp = send(t, http.MethodGet, base+"?cost=0", "X-API-Key", "k", "Tierlimit-Cost", "0")
	require.Equal(t, http.StatusOK, resp.StatusCode, "the slot is free")
	assert.Contains(t, resp.Header.Get("RateLimit"), `"free-cost";r=260;`, "the 50 settled at 20")
	cancel()
	require.NoError(t, <-done)
}

// TestRunAloneCountsCostAndConcurrency: with -gossip-addr "" the node is
// one node on its own, which counts a tier's cost and concurrency; GET
// /test?work=&cost= is a GPU job as curl can send it.
func TestRunAloneCountsCostAndConcurrency(t *testing.T) {
	path := filepath.Join(t.TempDir(), "tiers.json")
	require.NoError(t, os.WriteFile(path, []byte(`{"window_seconds": 60, "cost_unit": "audio-seconds",
		"tiers": {"free": {"limit": 10, "burst": 20, "cost": {"limit": 300, "default_estimate": 30},
		                   "concurrency": {"limit": 1}}},
		"api_keys": {"k": "free"}}`), 0o600))
	ctx, cancel := context.WithCancel(t.Context())
	logs := &tierlimittest.Logs{}
	done := make(chan error, 1)
	go func() {
		done <- run(ctx, []string{"-config", path, "-node-name", "alone", "-gossip-addr", "", "-http-addr", "127.0.0.1:0",
			"-log-format", "json"}, func(string) string { return "" }, logs)
	}()
	var started map[string]any
	require.Eventually(t, func() bool { var ok bool; started, ok = logs.Find("node started"); return ok },
		10*time.Second, 10*time.Millisecond, "no 'node started' log")
	base := "http://" + started["http_addr"].(string) + "/test"

	job := func(query, estimate string) *http.Response {
		req, err := http.NewRequestWithContext(t.Context(), http.MethodGet, base+"?"+query, nil)
		require.NoError(t, err)
		req.Header.Set("X-API-Key", "k")
		if estimate != "" {
			req.Header.Set("Tierlimit-Cost", estimate)
		}
		resp, err := http.DefaultClient.Do(req)
		require.NoError(t, err)
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		return resp
	}
	resp := job("cost=12", "100")
	require.Equal(t, http.StatusOK, resp.StatusCode)
	assert.Contains(t, resp.Header.Get("RateLimit"), `"free-cost";r=200;`, "100 reserved")
	resp = job("", "")
	require.Equal(t, http.StatusOK, resp.StatusCode)
	assert.Contains(t, resp.Header.Get("RateLimit"), `"free-cost";r=258;`, "settled at 12, then the default 30 reserved")

	// A job holds the key's one slot while it works.
	slow := make(chan *http.Response, 1)
	go func() {
		// Sent again if it came while a probe below held the slot.
		r := job("work=2s", "0")
		for end := time.Now().Add(10 * time.Second); r.StatusCode == http.StatusTooManyRequests && time.Now().Before(end); {
			r = job("work=2s", "0")
		}
		slow <- r
	}()
	require.Eventually(t, func() bool {
		r := job("", "0")
		return r.StatusCode == http.StatusTooManyRequests && strings.Contains(r.Header.Get("RateLimit"), `"free-concurrency";r=0`)
	}, 2*time.Second, 20*time.Millisecond, "no 429 while the one slot is held")
	assert.Equal(t, http.StatusOK, (<-slow).StatusCode)
	assert.Equal(t, http.StatusOK, job("", "0").StatusCode, "the slot is free once the job ended")
	cancel()
	require.NoError(t, <-done)
}

// TestRunCapacityIsTheLoadSignal: with -capacity 2 the demo's jobs run two
// at a time, the others queue, and the node's load signal, in
// GET /system/health, is the jobs in flight over 2; held above the high
// mark, it switches the node DEGRADED by itself, and back when the jobs
// end.
func TestRunCapacityIsTheLoadSignal(t *testing.T) {
	path := filepath.Join(t.TempDir(), "tiers.json")
	require.NoError(t, os.WriteFile(path, []byte(`{"window_seconds": 60, "tiers": {"pro": {"limit": 100}}, "api_keys": {"k": "pro"}}`), 0o600))
	addr, _, cancel, done := startRun(t, "-config", path, "-node-name", "n", "-admin-token", "tok", "-capacity", "2",
		"-auto-up-hold", "500ms", "-auto-down-hold", "1s")
	base := "http://" + addr
	var status, mode string
	load := func() map[string]any {
		h := healthOf(t, base, "tok")
		status, mode = h.Status, h.Mode
		return h.Load
	}
	assert.Equal(t, map[string]any{"in_flight": 0.0, "capacity": 2.0, "signal": 0.0}, load())

	jobs := make(chan int, 3)
	for range 3 {
		go func() { jobs <- send(t, http.MethodGet, base+"/test?work=3s", "X-API-Key", "k").StatusCode }()
	}
	require.Eventually(t, func() bool { return load()["in_flight"] == 3.0 }, 5*time.Second, 10*time.Millisecond)
	assert.Equal(t, 1.5, load()["signal"], "three jobs on two GPUs: one queues")
	require.Eventually(t, func() bool { load(); return status == "DEGRADED" }, 5*time.Second, 10*time.Millisecond,
		"1.5 held over the high mark of 1")
	assert.Equal(t, "auto", mode)
	for range 3 {
		require.Equal(t, http.StatusOK, <-jobs)
	}
	require.Eventually(t, func() bool { load(); return status == "NORMAL" }, 5*time.Second, 10*time.Millisecond,
		"idle for the down hold")
	cancel()
	require.NoError(t, <-done)
}

// healthOf returns the parts of GET /system/health the tests read.
func healthOf(t *testing.T, base, token string) (h struct {
	Load   map[string]any `json:"load"`
	Status string         `json:"status"`
	Mode   string         `json:"mode"`
}) {
	t.Helper()
	req, err := http.NewRequestWithContext(t.Context(), http.MethodGet, base+"/system/health", nil)
	require.NoError(t, err)
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	require.NoError(t, json.NewDecoder(resp.Body).Decode(&h))
	return h
}

// TestRunQueueWaitServesPaidFirst: with -capacity 1 -queue-wait, while a
// paid job runs a free request and then a paid one wait in the node; a
// POST of DEGRADED refuses the waiting free one with 503 shed at once, and
// the paid one runs when the slot frees.
func TestRunQueueWaitServesPaidFirst(t *testing.T) {
	addr, _, cancel, done := startRun(t, "-config", "../../config/tiers.json", "-node-name", "q", "-admin-token", "tok",
		"-capacity", "1", "-queue-wait", "1m")
	base := "http://" + addr
	inFlight := func() any { return healthOf(t, base, "tok").Load["in_flight"] }
	type answer struct {
		key    string
		status int
		code   string
	}
	answers := make(chan answer, 3)
	get := func(key, work string) {
		go func() {
			req, err := http.NewRequestWithContext(t.Context(), http.MethodGet, base+"/test?work="+work, nil)
			if !assert.NoError(t, err) {
				return
			}
			req.Header.Set("X-API-Key", key)
			resp, err := http.DefaultClient.Do(req)
			if !assert.NoError(t, err) {
				return
			}
			defer resp.Body.Close()
			var body api.ErrorBody
			_ = json.NewDecoder(resp.Body).Decode(&body)
			answers <- answer{key, resp.StatusCode, body.Error.Code}
		}()
	}
	get("pro-demo-1", "2s")
	require.Eventually(t, func() bool { return inFlight() == 1.0 }, 5*time.Second, 5*time.Millisecond)
	get("free-demo-1", "0s")
	require.Eventually(t, func() bool { return inFlight() == 2.0 }, 5*time.Second, 5*time.Millisecond)
	get("pro-demo-2", "0s")
	require.Eventually(t, func() bool { return inFlight() == 3.0 }, 5*time.Second, 5*time.Millisecond)

	req, err := http.NewRequestWithContext(t.Context(), http.MethodPost, base+"/system/health", strings.NewReader(`{"status":"DEGRADED"}`))
	require.NoError(t, err)
	req.Header.Set("Authorization", "Bearer tok")
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	resp.Body.Close()
	require.Equal(t, http.StatusOK, resp.StatusCode)

	assert.Equal(t, answer{"free-demo-1", http.StatusServiceUnavailable, "shed"}, <-answers, "refused at once, before the running job ends")
	assert.ElementsMatch(t, []answer{{"pro-demo-1", http.StatusOK, ""}, {"pro-demo-2", http.StatusOK, ""}},
		[]answer{<-answers, <-answers}, "the paid one waiting runs when the slot frees")
	cancel()
	require.NoError(t, <-done)
}
