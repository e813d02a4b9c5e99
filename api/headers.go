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

// writeHeaders sets the rate-limit fields for decision d made at now, for a
// counting window of window seconds. Each is a promise that holds if no
// other request for the key is admitted meanwhile and the limit in force
// stays the same:
//
//	X-RateLimit-Limit      the limit in force now
//	X-RateLimit-Remaining  requests admitted if sent right now
//	X-RateLimit-Reset      UTC epoch seconds, rounded up. On a 200: the moment by
//	                       which the whole limit is free again (Remaining = Limit).
//	                       On a 429: the moment this request is admitted.
//	Retry-After            on a 429 only: whole seconds, rounded up and at least 1,
//	                       until that same moment
//	RateLimit-Policy       "<tier>";q=<limit>;w=<window seconds>
//	RateLimit              "<tier>";r=<remaining>;t=<seconds until more than r
//	                       requests fit>; on a 429, t is Retry-After
//
// The sliding-window count only decays while nothing is counted, so each
// moment, once reached, stays true. The tier's name is written as a
// structured-field String (appendSFString). All values are formatted into
// one buffer and share one string and one slice backing array: two
// allocations per response for any tier tiers.json accepts (a name of up to
// 64 bytes, each percent-encoded at worst); a longer name costs a third.
func writeHeaders(h http.Header, tier string, window int64, d bucket.Decision, now time.Time) {
	writeAllHeaders(h, tier, window, "", nil, d, now)
}

// writeAllHeaders is writeHeaders for a tier that also limits cost or
// concurrency: the policies of dims (see appendDims) follow the request
// policy in RateLimit-Policy and RateLimit, in the same buffer.
func writeAllHeaders(h http.Header, tier string, window int64, unit string, dims []dimState, d bucket.Decision, now time.Time) {
	var reset time.Time
	t := int64(-1) // no t parameter
	if d.Allowed {
		reset = d.ResetAt.Add(time.Duration(window) * time.Second)
		switch {
		case !d.RefillAt.IsZero():
			t = ceilSeconds(d.RefillAt.Sub(now))
		case d.Remaining < d.Limit:
			// A Checker that does not say when the count frees another
			// request: it has by the time the whole limit is free.
			t = ceilSeconds(reset.Sub(now))
		}
	} else {
		reset = retryMoment(d, now)
		t = retryAfter(d, now)
	}
	var arr [512]byte
	buf := arr[:0]
	var ends [6]int
	buf = strconv.AppendInt(buf, int64(d.Limit), 10)
	ends[0] = len(buf)
	buf = strconv.AppendInt(buf, int64(d.Remaining), 10)
	ends[1] = len(buf)
	buf = strconv.AppendInt(buf, ceilUnix(reset), 10)
	ends[2] = len(buf)
	name := len(buf)
	buf = appendSFString(buf, tier)
	name = len(buf) - name
	buf = append(buf, ";q="...)
	buf = strconv.AppendInt(buf, sfInteger(int64(d.Limit)), 10)
	buf = append(buf, ";w="...)
	buf = strconv.AppendInt(buf, sfInteger(window), 10)
	buf = appendDims(buf, tier, window, unit, dims, now, false)
	ends[3] = len(buf)
	buf = append(buf, buf[ends[2]:ends[2]+name]...)
	buf = append(buf, ";r="...)
	buf = strconv.AppendInt(buf, sfInteger(int64(d.Remaining)), 10)
	if t >= 0 {
		buf = append(buf, ";t="...)
		buf = strconv.AppendInt(buf, sfInteger(t), 10)
	}
	buf = appendDims(buf, tier, window, unit, dims, now, true)
	ends[4] = len(buf)
	if !d.Allowed {
		buf = strconv.AppendInt(buf, t, 10)
	}
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

// appendDims appends to b, each after ", ", the limits of dims as policies
// of their own named after the tier and the limit: for RateLimit-Policy
// (state false) "<tier>-cost";q=<limit>;w=<window>;qu="<unit>" and
// "<tier>-concurrency";q=<limit>;qu="concurrent-requests"; for RateLimit
// (state true) each one's remaining r, and for a cost t as for requests.
func appendDims(b []byte, tier string, window int64, unit string, dims []dimState, now time.Time, state bool) []byte {
	for _, ds := range dims {
		d := ds.d
		b = appendSFString(append(b, ", "...), tier)
		b = append(b[:len(b)-1], '-') // inside the quotes: "<tier>-<limit>"
		b = append(append(b, ds.dim...), '"')
		if state {
			b = append(b, ";r="...)
			b = strconv.AppendInt(b, sfInteger(int64(d.Remaining)), 10)
			t := int64(-1)
			switch {
			case ds.dim == LimitConcurrency:
			case !d.Allowed:
				t = retryAfter(d, now)
			case !d.RefillAt.IsZero():
				t = ceilSeconds(d.RefillAt.Sub(now))
			}
			if t >= 0 {
				b = append(b, ";t="...)
				b = strconv.AppendInt(b, sfInteger(t), 10)
			}
			continue
		}
		b = append(b, ";q="...)
		b = strconv.AppendInt(b, sfInteger(int64(d.Limit)), 10)
		if ds.dim == LimitConcurrency {
			b = append(b, `;qu="concurrent-requests"`...)
			continue
		}
		b = append(b, ";w="...)
		b = strconv.AppendInt(b, sfInteger(window), 10)
		b = append(b, ";qu="...)
		b = appendSFString(b, unit)
	}
	return b
}

// retryMoment returns when refused decision d lifts: its RetryAt, or, from
// a Checker that does not set it, its ResetAt; never before now.
func retryMoment(d bucket.Decision, now time.Time) time.Time {
	at := d.RetryAt
	if at.IsZero() {
		at = d.ResetAt
	}
	if at.Before(now) {
		return now
	}
	return at
}

// retryAfter returns whole seconds until d's refusal lifts, at least 1.
func retryAfter(d bucket.Decision, now time.Time) int64 {
	return max(1, ceilSeconds(retryMoment(d, now).Sub(now)))
}

// maxSFInteger is the largest Integer a structured field may carry
// (RFC 9651, Section 3.3.1).
const maxSFInteger = 999_999_999_999_999

// sfInteger clamps v into the range of a structured-field Integer that a
// count or a delay may take: 0 to maxSFInteger.
func sfInteger(v int64) int64 { return min(max(v, 0), maxSFInteger) }

// appendSFString appends s to b as a structured-field String (RFC 9651,
// Section 3.3.3), whatever s holds, so that no tier name can make the
// RateLimit fields invalid. Printable ASCII stays as it is, with '"' and
// '\\' escaped by a backslash; '%' and every byte a String cannot carry
// (controls, DEL, non-ASCII) are percent-encoded in lower-case hex, as a
// Display String would encode them. So "café" is sent as "caf%c3%a9", and
// percent-decoding the parsed String gives s back.
func appendSFString(b []byte, s string) []byte {
	const hex = "0123456789abcdef"
	b = append(b, '"')
	for i := 0; i < len(s); i++ {
		switch c := s[i]; {
		case c == '"' || c == '\\':
			b = append(b, '\\', c)
		case c == '%' || c < 0x20 || c >= 0x7f:
			b = append(b, '%', hex[c>>4], hex[c&0xf])
		default:
			b = append(b, c)
		}
	}
	return append(b, '"')
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
