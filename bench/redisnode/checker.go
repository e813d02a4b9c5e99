package main

import (
	"context"
	"fmt"
	"log/slog"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/tierlimit/tierlimit/api"
	"github.com/tierlimit/tierlimit/bucket"
	"github.com/tierlimit/tierlimit/config"
)

// script is package bucket's sliding-window counter as one Lua script, so a
// check is one atomic round trip. Times are Unix milliseconds (a Lua number
// is a double: exact to 2^53, and formatted without an exponent up to 14
// digits). As in bucket: the window is anchored at the key's first hit, the
// hash stores hits (s = window start, p = previous window, c = current),
// never the limit, the previous window is weighted by the part of it still
// inside the last W, and a refused hit is not counted. The key expires when
// both of its windows have ended. One difference: an expired key starts a
// window anchored afresh at its next hit, where bucket keeps the old
// anchor's grid until it sweeps; both count the key exactly from zero.
//
// KEYS[1] = the key's hash; ARGV = now, window, hits, limit.
// Returns {allowed (0/1), remaining, reset at, retry at (0 if allowed)}.
const script = `
local function floordiv(a, b)
  local q = math.floor(a / b)
  if q * b > a then q = q - 1 elseif (q + 1) * b <= a then q = q + 1 end
  return q
end
local now = tonumber(ARGV[1])
local w = tonumber(ARGV[2])
local h = tonumber(ARGV[3])
local lim = tonumber(ARGV[4])
local v = redis.call('HMGET', KEYS[1], 's', 'p', 'c')
local start = tonumber(v[1])
local prev = tonumber(v[2]) or 0
local cur = tonumber(v[3]) or 0
local fresh = start == nil
if fresh then start = now end
if now >= start then
  local k = floordiv(now - start, w)
  if k == 1 then prev, cur = cur, 0 elseif k > 1 then prev, cur = 0, 0 end
  start = start + k * w
end
local used = cur
if prev > 0 then
  local a = prev * (w - math.max(0, now - start))
  local q = floordiv(a, w)
  if q * w < a then q = q + 1 end
  used = q + cur
end
local allowed, retry = 0, 0
if h > 0 and used + h <= lim then
  cur = cur + h
  used = used + h
  allowed = 1
elseif h == 0 then
  if used <= lim then allowed = 1 end
elseif prev > 0 and cur + h <= lim then
  local el = 0
  local room = floordiv((lim - cur - h) * w, prev)
  if room < w then el = w - room end
  retry = math.max(now + 1, start + el)
elseif h > lim then
  retry = start + 2 * w
elseif cur == 0 then
  retry = start + w
else
  local el = 0
  local room = floordiv((lim - h) * w, cur)
  if room < w then el = w - room end
  retry = start + w + el
end
if (allowed == 1 and h > 0) or (h > 0 and not fresh) then
  redis.call('HSET', KEYS[1], 's', string.format('%.0f', start),
    'p', string.format('%.0f', prev), 'c', string.format('%.0f', cur))
  redis.call('PEXPIRE', KEYS[1], string.format('%.0f', start + 2 * w - now))
end
local remaining = 0
if used < lim then remaining = lim - used end
return {allowed, remaining, start + w, retry}
`

// keyPrefix namespaces the counters in Redis.
const keyPrefix = "tl:"

// warnEvery is the least time between two Warn logs about Redis errors.
const warnEvery = time.Second

// checker is an api.Checker that counts every key in one central Redis: one
// EVALSHA round trip per check, the design tierlimit replaces. It is safe
// for concurrent use.
//
// When Redis fails or does not answer within timeout, the check fails open
// (the request is admitted and not counted), as Envoy's rate-limit filter
// does by default: a limiter outage must not become an API outage. Each
// such check is counted in failOpen.
type checker struct {
	rdb     redis.Scripter
	script  *redis.Script
	sha     string // the script's SHA-1 digest, as Redis names it
	window  int64  // milliseconds
	timeout time.Duration
	log     *slog.Logger

	failOpen atomic.Uint64
	lastWarn atomic.Int64 // Unix nanoseconds
}

var _ api.Checker = (*checker)(nil)

// newChecker returns a checker on rdb for windows of length window, each
// check bounded by timeout. Call load before the first Check.
func newChecker(rdb redis.Scripter, window, timeout time.Duration, log *slog.Logger) *checker {
	if rdb == nil {
		panic("redisnode: newChecker with a nil client") // a programming error
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	s := redis.NewScript(script)
	return &checker{rdb: rdb, script: s, sha: s.Hash(), window: window.Milliseconds(), timeout: timeout, log: log}
}

// loadRetry is how long load waits between two tries.
const loadRetry = 50 * time.Millisecond

// load sends the script to Redis (SCRIPT LOAD) and checks the digest, so the
// first checks need not send it. Each try is bounded by the client's short
// per-command timeout, which a busy machine may miss, so it tries again
// every loadRetry until ctx ends.
func (c *checker) load(ctx context.Context) error {
	for {
		sha, err := c.rdb.ScriptLoad(ctx, script).Result()
		if err == nil && sha != c.sha {
			return fmt.Errorf("script load: got digest %q, want %q", sha, c.sha)
		}
		if err == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("script load: %w", err)
		case <-time.After(loadRetry):
		}
	}
}

// Check counts one hit for key against limit in Redis. It fails open on
// any error; see checker.
func (c *checker) Check(ctx context.Context, now time.Time, key string, limit int) bucket.Decision {
	ctx, cancel := context.WithTimeout(ctx, c.timeout)
	d, err := c.take(ctx, now, key, 1, limit)
	cancel()
	if err != nil {
		c.failOpen.Add(1)
		if last := c.lastWarn.Load(); now.UnixNano()-last >= int64(warnEvery) && c.lastWarn.CompareAndSwap(last, now.UnixNano()) {
			c.log.Warn("redis check failed: admitting (fail open)", "key_hash", config.KeyHash(key), "err", err,
				"fail_open_total", c.failOpen.Load())
		}
		return bucket.Decision{Allowed: true, Limit: limit, Remaining: max(limit-1, 0), ResetAt: now.Add(time.Duration(c.window) * time.Millisecond)}
	}
	return d
}

// take runs the script for hits on key at now against limit: EVALSHA, and
// if Redis lost the script (it restarted, or its scripts were flushed),
// EVAL, which loads it again.
func (c *checker) take(ctx context.Context, now time.Time, key string, hits, limit int) (bucket.Decision, error) {
	rep, err := c.script.Run(ctx, c.rdb, []string{keyPrefix + key}, now.UnixMilli(), c.window, hits, limit).Int64Slice()
	if err != nil {
		return bucket.Decision{}, err
	}
	return decision(rep, limit)
}

// decision turns the script's reply into a Decision.
func decision(rep []int64, limit int) (bucket.Decision, error) {
	if len(rep) != 4 {
		return bucket.Decision{}, fmt.Errorf("script returned %d integers, want 4", len(rep))
	}
	d := bucket.Decision{
		Allowed:   rep[0] == 1,
		Limit:     limit,
		Remaining: int(rep[1]),
		ResetAt:   time.UnixMilli(rep[2]),
	}
	if !d.Allowed {
		d.RetryAt = time.UnixMilli(rep[3])
	}
	return d, nil
}
