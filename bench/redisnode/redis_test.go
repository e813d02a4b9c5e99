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
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/tierlimit/tierlimit/api"
	"github.com/tierlimit/tierlimit/bucket"
	"github.com/tierlimit/tierlimit/config"
	"github.com/tierlimit/tierlimit/health"
)

// startRedis starts a throwaway redis-server on a free loopback port, with
// no persistence, stopped by t.Cleanup, and returns its address. It skips
// the test when redis-server is not installed, which is the case on CI.
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
	p := newPool(addr, 1)
	defer p.close()
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) {
		select {
		case <-exited:
			return false
		default:
		}
		ctx, cancel := context.WithTimeout(t.Context(), 200*time.Millisecond)
		err := p.do(ctx, func(c *conn) error {
			rep, err := c.roundTrip(appendCommand(c.buf[:0], "PING"))
			if err == nil && (rep.kind != kindSimple || rep.str != "PONG") {
				err = fmt.Errorf("PING answered %+v", rep)
			}
			return err
		})
		cancel()
		if err == nil {
			return true
		}
		time.Sleep(20 * time.Millisecond)
	}
	return false
}

// newTestChecker returns a checker on a fresh Redis with its script loaded.
func newTestChecker(t *testing.T, window time.Duration, poolSize int) *checker {
	t.Helper()
	p := newPool(startRedis(t), poolSize)
	t.Cleanup(p.close)
	c := newChecker(p, window, 2*time.Second, nil)
	require.NoError(t, c.load(t.Context()), "load the script")
	return c
}

func TestRedisMiddlewareAdmitsExactlyL(t *testing.T) {
	const limit = 20
	chk := newTestChecker(t, time.Minute, 16)
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
	chk := newTestChecker(t, window, 1)
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
	p := newPool(net.JoinHostPort("127.0.0.1", strconv.Itoa(freePort(t))), 1) // nothing listens there
	t.Cleanup(p.close)
	c := newChecker(p, time.Minute, 100*time.Millisecond, nil)
	now := time.Now()
	d := c.Check(t.Context(), now, "k", 5)
	assert.True(t, d.Allowed, "Check with Redis down: Allowed")
	assert.Equal(t, 5, d.Limit)
	assert.Equal(t, uint64(1), c.failOpen.Load(), "fail-open count")
}

func TestRedisReloadsALostScript(t *testing.T) {
	chk := newTestChecker(t, time.Minute, 1)
	require.NoError(t, chk.pool.do(t.Context(), func(c *conn) error {
		_, err := c.roundTrip(appendCommand(c.buf[:0], "SCRIPT", "FLUSH"))
		return err
	}))
	d, err := chk.take(t.Context(), time.Now(), "k", 1, 3)
	require.NoError(t, err, "take after SCRIPT FLUSH")
	assert.True(t, d.Allowed)
	assert.Equal(t, 2, d.Remaining)
}
