package main

import (
	"context"
	"fmt"
	"math/rand/v2"
	"net"
	"net/http"
	"net/http/httptest"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/tierlimit/tierlimit/api"
	"github.com/tierlimit/tierlimit/bucket"
	"github.com/tierlimit/tierlimit/config"
	"github.com/tierlimit/tierlimit/health"
)

// startRedis starts a throwaway redis-server on a free loopback port, with
// no persistence, stopped by t.Cleanup, and returns its address. It skips
// the test when redis-server is not installed (CI installs it).
func startRedis(t *testing.T) string {
	t.Helper()
	bin, err := exec.LookPath("redis-server")
	if err != nil {
		t.Skip("redis-server is not on PATH, so the Redis integration tests cannot run (Debian: apt-get install redis-server; bench/run.sh installs it)")
	}
	for attempt := 0; attempt < 3; attempt++ {
		port := freePort(t)
		cmd := exec.Command(bin, "--port", strconv.Itoa(port), "--bind", "127.0.0.1",
			"--save", "", "--appendonly", "no", "--daemonize", "no", "--loglevel", "warning")
		require.NoError(t, cmd.Start(), "start %s", bin)
		exited := make(chan struct{})
		go func() { _ = cmd.Wait(); close(exited) }()
		stop := func() {
			_ = cmd.Process.Kill()
			<-exited
		}
		addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
		if waitPing(t, addr, exited) {
			t.Cleanup(stop)
			return addr
		}
		stop() // most likely the port was taken in between: try another
	}
	t.Fatal("redis-server did not answer PING on any of 3 ports")
	return ""
}

// freePort returns a loopback TCP port that was free a moment ago.
func freePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	port := l.Addr().(*net.TCPAddr).Port
	require.NoError(t, l.Close())
	return port
}

// waitPing reports whether Redis at addr answered PONG within 5 s, giving up
// early if the process exited.
func waitPing(t *testing.T, addr string, exited <-chan struct{}) bool {
	t.Helper()
	rdb := newClient(addr, 1, 200*time.Millisecond)
	defer func() { _ = rdb.Close() }()
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) {
		select {
		case <-exited:
			return false
		default:
		}
		ctx, cancel := context.WithTimeout(t.Context(), 200*time.Millisecond)
		pong, err := rdb.Ping(ctx).Result()
		cancel()
		if err == nil && pong == "PONG" {
			return true
		}
		time.Sleep(20 * time.Millisecond)
	}
	return false
}

// newTestClient returns a client of poolSize connections to a fresh Redis,
// closed by t.Cleanup.
func newTestClient(t *testing.T, poolSize int) *redis.Client {
	t.Helper()
	rdb := newClient(startRedis(t), poolSize, 2*time.Second)
	t.Cleanup(func() { _ = rdb.Close() })
	return rdb
}

// newTestChecker returns a checker on a fresh Redis with its script
// loaded, and its client.
func newTestChecker(t *testing.T, window time.Duration, poolSize int) (*checker, *redis.Client) {
	t.Helper()
	rdb := newTestClient(t, poolSize)
	c := newChecker(rdb, window, 2*time.Second, nil)
	require.NoError(t, c.load(t.Context()), "load the script")
	return c, rdb
}

// TestNewClientIsTheFairBaseline pins the client settings docs/benchmark.md
// states: the pool size and the deadline given, no retries, and the caller's
// deadline honoured.
func TestNewClientIsTheFairBaseline(t *testing.T) {
	rdb := newClient("127.0.0.1:1", 64, 20*time.Millisecond)
	t.Cleanup(func() { _ = rdb.Close() })
	o := rdb.Options()
	assert.Equal(t, 64, o.PoolSize, "PoolSize")
	assert.Zero(t, o.MinIdleConns, "MinIdleConns: dialled on first use")
	for name, got := range map[string]time.Duration{
		"PoolTimeout": o.PoolTimeout, "DialTimeout": o.DialTimeout, "ReadTimeout": o.ReadTimeout, "WriteTimeout": o.WriteTimeout,
	} {
		assert.Equal(t, 20*time.Millisecond, got, name)
	}
	assert.True(t, o.ContextTimeoutEnabled, "ContextTimeoutEnabled")
	assert.Zero(t, o.MaxRetries, "MaxRetries (-1 given: go-redis keeps 0, no retries)")
	assert.Equal(t, 1, o.DialerRetries, "DialerRetries")
}

func TestRedisMiddlewareAdmitsExactlyL(t *testing.T) {
	const limit = 20
	chk, _ := newTestChecker(t, time.Minute, 16)
	tiers, err := config.Parse([]byte(`{"window_seconds":60,"tiers":{"t":{"limit":` + strconv.Itoa(limit) +
		`}},"api_keys":{"k1":"t"}}`))
	require.NoError(t, err)
	lim := api.NewLimiter(api.Config{Keys: tiers, Checker: chk, Health: health.NewHolder("test"), Window: tiers.Window})
	srv := httptest.NewServer(lim.Middleware(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {})))
	t.Cleanup(srv.Close)

	var ok, limited, other atomic.Int64
	var wg sync.WaitGroup
	next := atomic.Int64{}
	for range 16 {
		wg.Go(func() {
			for next.Add(1) <= 3*limit {
				req, err := http.NewRequestWithContext(t.Context(), http.MethodGet, srv.URL, nil)
				if err != nil {
					other.Add(1)
					continue
				}
				req.Header.Set("X-API-Key", "k1")
				resp, err := srv.Client().Do(req)
				if err != nil {
					other.Add(1)
					continue
				}
				_ = resp.Body.Close()
				switch resp.StatusCode {
				case http.StatusOK:
					ok.Add(1)
				case http.StatusTooManyRequests:
					limited.Add(1)
				default:
					other.Add(1)
				}
			}
		})
	}
	wg.Wait()
	assert.Equal(t, int64(limit), ok.Load(), "200s for %d concurrent requests at limit %d", 3*limit, limit)
	assert.Equal(t, int64(2*limit), limited.Load(), "429s for %d concurrent requests at limit %d", 3*limit, limit)
	assert.Zero(t, other.Load(), "other outcomes")
	assert.Zero(t, chk.failOpen.Load(), "fail-open checks")
}

// TestRedisScriptMatchesBucket plays the same random sequence of hits, at
// whole milliseconds, against the Lua script and bucket.Store and wants the
// same decisions. Retry times may differ by less than a millisecond, the
// script's resolution, and are never earlier.
func TestRedisScriptMatchesBucket(t *testing.T) {
	const window = 10 * time.Second
	chk, _ := newTestChecker(t, window, 1)
	rng := rand.New(rand.NewPCG(1, 2))
	for seq := range 20 {
		key := "seq-" + strconv.Itoa(seq)
		store := bucket.New(bucket.Config{Window: window})
		now := time.UnixMilli(time.Now().UnixMilli())
		for step := range 200 {
			// Mostly small steps, sometimes a window or more.
			var adv time.Duration
			switch r := rng.IntN(100); {
			case r < 80:
				adv = time.Duration(rng.IntN(200)) * time.Millisecond
			case r < 95:
				adv = time.Duration(rng.IntN(int(window/time.Millisecond))) * time.Millisecond
			default:
				adv = time.Duration(rng.IntN(int(3*window/time.Millisecond))) * time.Millisecond
			}
			now = now.Add(adv)
			limit := []int{2, 5, 20}[rng.IntN(3)]
			hits := 1 + rng.IntN(2)

			want := store.Take(now, key, hits, limit)
			got, err := chk.take(t.Context(), now, key, hits, limit)
			require.NoError(t, err, "take step %d", step)
			call := fmt.Sprintf("seq %d step %d: take(t0+%v, %q, %d, %d)", seq, step, now.Sub(time.UnixMilli(0)), key, hits, limit)
			assert.Equal(t, want.Allowed, got.Allowed, "%s: Allowed", call)
			assert.Equal(t, want.Remaining, got.Remaining, "%s: Remaining", call)
			assert.Equal(t, want.ResetAt, got.ResetAt, "%s: ResetAt", call)
			if !want.Allowed {
				diff := got.RetryAt.Sub(want.RetryAt)
				assert.True(t, diff >= 0 && diff <= time.Millisecond, "%s: RetryAt = %v, bucket says %v", call, got.RetryAt, want.RetryAt)
			}
			if t.Failed() {
				return
			}
		}
	}
}

func TestRedisChecksFailOpen(t *testing.T) {
	rdb := newClient(net.JoinHostPort("127.0.0.1", strconv.Itoa(freePort(t))), 1, 100*time.Millisecond) // nothing listens there
	t.Cleanup(func() { _ = rdb.Close() })
	c := newChecker(rdb, time.Minute, 100*time.Millisecond, nil)
	now := time.Now()
	d := c.Check(t.Context(), now, "k", 5)
	assert.True(t, d.Allowed, "Check with Redis down: Allowed")
	assert.Equal(t, 5, d.Limit)
	assert.Equal(t, uint64(1), c.failOpen.Load(), "fail-open count")
}

func TestRedisReloadsALostScript(t *testing.T) {
	chk, rdb := newTestChecker(t, time.Minute, 1)
	require.NoError(t, rdb.ScriptFlush(t.Context()).Err())
	d, err := chk.take(t.Context(), time.Now(), "k", 1, 3)
	require.NoError(t, err, "take after SCRIPT FLUSH")
	assert.True(t, d.Allowed)
	assert.Equal(t, 2, d.Remaining)
}

// TestRedisChecksUseEVALSHA wants one EVALSHA per check, the script loaded
// once, and neither EVAL nor retries.
func TestRedisChecksUseEVALSHA(t *testing.T) {
	chk, rdb := newTestChecker(t, time.Minute, 4)
	require.NoError(t, rdb.ConfigResetStat(t.Context()).Err())
	const checks = 10
	for i := range checks {
		chk.Check(t.Context(), time.Now(), "k"+strconv.Itoa(i%3), 5)
	}
	info, err := rdb.Info(t.Context(), "commandstats").Result()
	require.NoError(t, err)
	assert.Equal(t, checks, commandCalls(t, info, "evalsha"), "EVALSHA calls after %d checks", checks)
	assert.Zero(t, commandCalls(t, info, "eval"), "EVAL calls after %d checks", checks)
	assert.Zero(t, chk.failOpen.Load(), "fail-open checks")
}

// commandCalls returns the calls of cmd in the INFO commandstats text info;
// 0 if cmd is not listed.
func commandCalls(t *testing.T, info, cmd string) int {
	t.Helper()
	for line := range strings.SplitSeq(info, "\n") {
		rest, ok := strings.CutPrefix(strings.TrimSpace(line), "cmdstat_"+cmd+":calls=")
		if !ok {
			continue
		}
		n, err := strconv.Atoi(strings.SplitN(rest, ",", 2)[0])
		require.NoError(t, err, "calls in %q", line)
		return n
	}
	return 0
}

// TestRedisPoolBoundsConnections sends many concurrent checks through a
// small pool and wants no more connections than the pool holds.
func TestRedisPoolBoundsConnections(t *testing.T) {
	const pool = 3
	chk, rdb := newTestChecker(t, time.Minute, pool)
	var wg sync.WaitGroup
	for i := range 32 {
		wg.Go(func() {
			for j := range 20 {
				chk.Check(t.Context(), time.Now(), fmt.Sprint("k", i, "-", j), 100)
			}
		})
	}
	wg.Wait()
	assert.Zero(t, chk.failOpen.Load(), "fail-open checks")
	stats := rdb.PoolStats()
	assert.LessOrEqual(t, stats.TotalConns, uint32(pool), "connections after 32 concurrent callers through a pool of %d", pool)
}

func TestDecision(t *testing.T) {
	const limit = 5
	tests := []struct {
		name    string
		rep     []int64
		want    bucket.Decision
		wantErr bool
	}{
		{name: "allowed", rep: []int64{1, 4, 60_000, 0},
			want: bucket.Decision{Allowed: true, Limit: limit, Remaining: 4, ResetAt: time.UnixMilli(60_000)}},
		{name: "refused", rep: []int64{0, 0, 60_000, 30_000},
			want: bucket.Decision{Limit: limit, ResetAt: time.UnixMilli(60_000), RetryAt: time.UnixMilli(30_000)}},
		{name: "short", rep: []int64{1, 4, 60_000}, wantErr: true},
		{name: "empty", rep: nil, wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := decision(tt.rep, limit)
			if tt.wantErr {
				assert.Error(t, err, "decision(%v, %d)", tt.rep, limit)
				return
			}
			require.NoError(t, err, "decision(%v, %d)", tt.rep, limit)
			assert.Equal(t, tt.want, got, "decision(%v, %d)", tt.rep, limit)
		})
	}
}
