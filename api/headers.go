package api

import (
	"net/http"
	"strconv"
	"time"

	"github.com/tierlimit/tierlimit/bucket"
)

// Header names written on every limited response, as the contract spells
// them. HTTP field names are case-insensitive: the middleware stores them in
// Go's canonical form (X-Ratelimit-Limit), so w.Header().Get(HeaderLimit)
// finds them in an outer handler, and that is also the casing on the wire.
const (
	HeaderLimit      = "X-RateLimit-Limit"
	HeaderRemaining  = "X-RateLimit-Remaining"
	HeaderReset      = "X-RateLimit-Reset"
	HeaderRetryAfter = "Retry-After"
	// HeaderPolicy and HeaderRateLimit are the fields of the IETF draft
	// draft-ietf-httpapi-ratelimit-headers (structured-field lists).
	HeaderPolicy    = "RateLimit-Policy"
	HeaderRateLimit = "RateLimit"
)

// The canonical forms of the header names (http.CanonicalHeaderKey), under
// which they are stored, so no request pays for canonicalising them.
const (
	keyLimit      = "X-Ratelimit-Limit"
	keyRemaining  = "X-Ratelimit-Remaining"
	keyReset      = "X-Ratelimit-Reset"
	keyRetryAfter = "Retry-After"
	keyPolicy     = "Ratelimit-Policy"
	keyRateLimit  = "Ratelimit"
)

// writeHeaders sets the rate-limit fields for decision d made at now:
//
//	X-RateLimit-Limit      the limit in force now
//	X-RateLimit-Remaining  hits left under it
//	X-RateLimit-Reset      end of the key's current window, UTC epoch seconds (rounded up)
//	Retry-After            on refusals: whole seconds until the same request fits, at least 1
//	RateLimit-Policy       "<tier>";q=<limit>;w=<window seconds>
//	RateLimit              "<tier>";r=<remaining>;t=<seconds until reset, or Retry-After on refusals>
//
// All values are formatted into one buffer and share one string and one
// slice backing array: two allocations per response whatever the values.
func writeHeaders(h http.Header, tier string, window int64, d bucket.Decision, now time.Time) {
	t := ceilSeconds(d.ResetAt.Sub(now))
	if !d.Allowed {
		t = retryAfter(d, now)
	}
	var arr [256]byte
	buf := arr[:0]
	var ends [6]int
	buf = strconv.AppendInt(buf, int64(d.Limit), 10)
	ends[0] = len(buf)
	buf = strconv.AppendInt(buf, int64(d.Remaining), 10)
	ends[1] = len(buf)
	buf = strconv.AppendInt(buf, ceilUnix(d.ResetAt), 10)
	ends[2] = len(buf)
	buf = append(buf, '"')
	buf = append(buf, tier...)
	buf = append(buf, `";q=`...)
	buf = strconv.AppendInt(buf, int64(d.Limit), 10)
	buf = append(buf, ";w="...)
	buf = strconv.AppendInt(buf, window, 10)
	ends[3] = len(buf)
	buf = append(buf, '"')
	buf = append(buf, tier...)
	buf = append(buf, `";r=`...)
	buf = strconv.AppendInt(buf, int64(d.Remaining), 10)
	buf = append(buf, ";t="...)
	buf = strconv.AppendInt(buf, t, 10)
	ends[4] = len(buf)
	buf = strconv.AppendInt(buf, t, 10)
	ends[5] = len(buf)

	all := string(buf)
	vals := make([]string, 6)
	start := 0
	for i, end := range ends {
		vals[i] = all[start:end]
		start = end
	}
	h[keyLimit] = vals[0:1:1]
	h[keyRemaining] = vals[1:2:2]
	h[keyReset] = vals[2:3:3]
	h[keyPolicy] = vals[3:4:4]
	h[keyRateLimit] = vals[4:5:5]
	if !d.Allowed {
		h[keyRetryAfter] = vals[5:6:6]
	}
}

// retryAfter returns whole seconds until d's refusal lifts, at least 1.
func retryAfter(d bucket.Decision, now time.Time) int64 {
	if d.RetryAt.IsZero() {
		return max(1, ceilSeconds(d.ResetAt.Sub(now)))
	}
	return max(1, ceilSeconds(d.RetryAt.Sub(now)))
}

// ceilSeconds rounds d up to whole seconds, never below 0.
func ceilSeconds(d time.Duration) int64 {
	if d <= 0 {
		return 0
	}
	return int64((d + time.Second - 1) / time.Second)
}

// ceilUnix returns t as Unix seconds, rounded up.
func ceilUnix(t time.Time) int64 {
	s := t.Unix()
	if t.Nanosecond() > 0 {
		s++
	}
	return s
}
