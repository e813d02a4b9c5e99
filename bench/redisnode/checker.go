package main

import (
	"context"
	"crypto/sha1"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync/atomic"
	"time"

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

// scriptSHA returns the SHA-1 digest Redis names script by.
func scriptSHA() string {
	sum := sha1.Sum([]byte(script))
	return hex.EncodeToString(sum[:])
}

// warnEvery is the least time between two Warn logs about Redis errors.
const warnEvery = time.Second

// checker is an api.Checker that counts every key in one central Redis: one
// EVALSHA round trip per check, the design tierlimit replaces. It is safe
// for concurrent use.
//
// When Redis fails or does not answer within timeout, the check fails open
// (the request is admitted and not counted), as Envoy's rate-limit filter
// does by default: a limiter outage must not become an API outage. Each
// such check is counted in FailOpen.
type checker struct {
	pool    *pool
	sha     string
	window  int64 // milliseconds
	timeout time.Duration
	log     *slog.Logger

	failOpen atomic.Uint64
	lastWarn atomic.Int64 // Unix nanoseconds
}

var _ api.Checker = (*checker)(nil)

// newChecker returns a checker on p for windows of length window, each
// check bounded by timeout. Call load before the first Check.
func newChecker(p *pool, window, timeout time.Duration, log *slog.Logger) *checker {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &checker{pool: p, sha: scriptSHA(), window: window.Milliseconds(), timeout: timeout, log: log}
}

// load sends the script to Redis (SCRIPT LOAD) and checks the digest.
func (c *checker) load(ctx context.Context) error {
	return c.pool.do(ctx, func(cn *conn) error {
		rep, err := cn.roundTrip(appendCommand(cn.buf[:0], "SCRIPT", "LOAD", script))
		if err != nil {
			return fmt.Errorf("script load: %w", err)
		}
		if rep.kind != kindBulk || rep.str != c.sha {
			return fmt.Errorf("script load: got digest %q, want %q", rep.str, c.sha)
		}
		return nil
	})
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

// take runs the script for hits on key at now against limit.
func (c *checker) take(ctx context.Context, now time.Time, key string, hits, limit int) (bucket.Decision, error) {
	var rep reply
	err := c.pool.do(ctx, func(cn *conn) error {
		var err error
		cn.buf = c.appendEvalSHA(cn.buf[:0], now, key, hits, limit)
		rep, err = cn.roundTrip(cn.buf)
		var re *replyError
		if errors.As(err, &re) && strings.HasPrefix(re.msg, "NOSCRIPT") {
			// Redis restarted or its scripts were flushed: load again and retry once.
			if _, err = cn.roundTrip(appendCommand(cn.buf[:0], "SCRIPT", "LOAD", script)); err != nil {
				return fmt.Errorf("script load: %w", err)
			}
			cn.buf = c.appendEvalSHA(cn.buf[:0], now, key, hits, limit)
			rep, err = cn.roundTrip(cn.buf)
		}
		return err
	})
	if err != nil {
		return bucket.Decision{}, err
	}
	return decision(rep, limit)
}

// appendEvalSHA appends the EVALSHA command of one check.
func (c *checker) appendEvalSHA(b []byte, now time.Time, key string, hits, limit int) []byte {
	b = appendArrayHeader(b, 8)
	b = appendBulk(b, "EVALSHA")
	b = appendBulk(b, c.sha)
	b = appendBulk(b, "1")
	b = appendBulk2(b, keyPrefix, key)
	b = appendBulkInt(b, now.UnixMilli())
	b = appendBulkInt(b, c.window)
	b = appendBulkInt(b, int64(hits))
	return appendBulkInt(b, int64(limit))
}

// decision turns the script's reply into a Decision.
func decision(rep reply, limit int) (bucket.Decision, error) {
	if rep.kind != kindArray || len(rep.elems) != 4 {
		return bucket.Decision{}, fmt.Errorf("%w: script returned %d elements of kind %d, want 4 integers", errProtocol, len(rep.elems), rep.kind)
	}
	for i, e := range rep.elems {
		if e.kind != kindInteger {
			return bucket.Decision{}, fmt.Errorf("%w: script result %d is of kind %d, want an integer", errProtocol, i, e.kind)
		}
	}
	d := bucket.Decision{
		Allowed:   rep.elems[0].n == 1,
		Limit:     limit,
		Remaining: int(rep.elems[1].n),
		ResetAt:   time.UnixMilli(rep.elems[2].n),
	}
	if !d.Allowed {
		d.RetryAt = time.UnixMilli(rep.elems[3].n)
	}
	return d, nil
}
