package api

import (
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/dunglas/httpsfv"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/tierlimit/tierlimit/bucket"
)

// TestHeaderValuesAreExact: what writeHeaders writes for a decision, down
// to the rounding, and what it falls back to for a Checker that leaves a
// moment out.
func TestHeaderValuesAreExact(t *testing.T) {
	now := t0.Add(500 * time.Millisecond)
	epoch := func(d time.Duration) string { return strconv.FormatInt(t0.Add(d).Unix(), 10) }
	tests := []struct {
		name       string
		d          bucket.Decision
		reset      string // X-RateLimit-Reset
		retryAfter string // "" on a 200
		rateLimit  string
	}{
		{
			name: "200: Reset is when the whole limit is free, t when one more fits",
			d: bucket.Decision{Allowed: true, Limit: 100, Remaining: 40,
				ResetAt: t0.Add(30 * time.Second), RefillAt: t0.Add(2100 * time.Millisecond)},
			reset: epoch(90 * time.Second), rateLimit: `"pro";r=40;t=2`,
		},
		{
			name: "200: both rounded up",
			d: bucket.Decision{Allowed: true, Limit: 100, Remaining: 0,
				ResetAt: t0.Add(30*time.Second + 1), RefillAt: t0.Add(3*time.Second + 1)},
			reset: epoch(91 * time.Second), rateLimit: `"pro";r=0;t=3`,
		},
		{
			name:  "200 from a Checker without RefillAt: t is when the whole limit is free",
			d:     bucket.Decision{Allowed: true, Limit: 100, Remaining: 99, ResetAt: t0.Add(60 * time.Second)},
			reset: epoch(120 * time.Second), rateLimit: `"pro";r=99;t=120`,
		},
		{
			name:  "200 with the whole limit left: no t, nothing more will come",
			d:     bucket.Decision{Allowed: true, Limit: 100, Remaining: 100, ResetAt: t0.Add(60 * time.Second)},
			reset: epoch(120 * time.Second), rateLimit: `"pro";r=100`,
		},
		{
			name: "429: Reset, Retry-After and t name the moment the request fits",
			d: bucket.Decision{Limit: 100, ResetAt: t0.Add(60*time.Second + 1),
				RetryAt: t0.Add(2 * time.Second), RefillAt: t0.Add(2 * time.Second)},
			reset: epoch(2 * time.Second), retryAfter: "2", rateLimit: `"pro";r=0;t=2`,
		},
		{
			name: "429 between seconds: each rounds up on its own grid",
			d:    bucket.Decision{Limit: 100, ResetAt: t0.Add(time.Minute), RetryAt: t0.Add(2100 * time.Millisecond)},
			// 1.6 s from now: Retry-After 2 (now+2 = t0+2.5), Reset t0+3.
			reset: epoch(3 * time.Second), retryAfter: "2", rateLimit: `"pro";r=0;t=2`,
		},
		{
			name:  "429: Retry-After is at least 1",
			d:     bucket.Decision{Limit: 100, ResetAt: now, RetryAt: now},
			reset: epoch(time.Second), retryAfter: "1", rateLimit: `"pro";r=0;t=1`,
		},
		{
			name:  "429 with a RetryAt already past: never a Reset before now",
			d:     bucket.Decision{Limit: 100, ResetAt: t0.Add(-time.Hour), RetryAt: t0.Add(-time.Hour)},
			reset: epoch(time.Second), retryAfter: "1", rateLimit: `"pro";r=0;t=1`,
		},
		{
			name:  "429 from a Checker without RetryAt: its ResetAt",
			d:     bucket.Decision{Limit: 100, ResetAt: t0.Add(10 * time.Second)},
			reset: epoch(10 * time.Second), retryAfter: "10", rateLimit: `"pro";r=0;t=10`,
		},
		{
			name: "integers past a structured field's range are clamped",
			d: bucket.Decision{Allowed: true, Limit: 1 << 62, Remaining: 1<<62 - 1,
				ResetAt: t0.Add(time.Minute), RefillAt: t0.Add(time.Second)},
			reset: epoch(2 * time.Minute), rateLimit: `"pro";r=999999999999999;t=1`,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := http.Header{}
			writeHeaders(h, "pro", 60, tt.d, now)
			assert.Equal(t, strconv.Itoa(tt.d.Limit), hv(h, HeaderLimit))
			assert.Equal(t, strconv.Itoa(tt.d.Remaining), hv(h, HeaderRemaining))
			assert.Equal(t, tt.reset, hv(h, HeaderReset), "Reset (t0 is %d)", t0.Unix())
			assert.Equal(t, tt.retryAfter, hv(h, HeaderRetryAfter))
			assert.Equal(t, tt.rateLimit, hv(h, HeaderRateLimit))
			assert.Equal(t, `"pro";q=`+strconv.FormatInt(sfInteger(int64(tt.d.Limit)), 10)+`;w=60`, hv(h, HeaderPolicy))
		})
	}
}

// TestHeadersThroughASlidingWindow follows one free key (burst 20 in a
// 60 s window) through the decay of its previous window, with the
// middleware's clock, and checks every header against the algorithm.
func TestHeadersThroughASlidingWindow(t *testing.T) {
	f := newFixture(t)
	for range 20 {
		require.Equal(t, http.StatusOK, f.get(t, "free-1").Code)
	}
	epoch := func(d time.Duration) string { return strconv.FormatInt(t0.Add(d).Unix(), 10) }
	steps := []struct {
		at         time.Duration // since t0
		status     int
		remaining  string
		reset      string
		retryAfter string
		rateLimit  string
	}{
		// prev 0, cur 20: one more fits at t0+63 s (ceil(20×(60−el)/60) ≤ 19).
		{30 * time.Second, 429, "0", epoch(63 * time.Second), "33", `"free";r=0;t=33`},
		{63*time.Second - time.Millisecond, 429, "0", epoch(63 * time.Second), "1", `"free";r=0;t=1`},
		// Admitted at the moment named: prev 20, cur 1 → used 20 again. The
		// next fits when ceil(20×(60−el)/60) ≤ 18, el ≥ 6 s. The whole limit
		// is free when this window's hit has decayed, at t0+180 s.
		{63 * time.Second, 200, "0", epoch(180 * time.Second), "", `"free";r=0;t=3`},
		{64 * time.Second, 429, "0", epoch(66 * time.Second), "2", `"free";r=0;t=2`},
		{66 * time.Second, 200, "0", epoch(180 * time.Second), "", `"free";r=0;t=3`},
		// Half the window on: ceil(20×30/60)+2 = 12 used, 7 left after this
		// one. One more than 7 fits when ceil(20×(60−el)/60)+3+8 ≤ 20,
		// el ≥ 33 s, t0+93 s.
		{90 * time.Second, 200, "7", epoch(180 * time.Second), "", `"free";r=7;t=3`},
	}
	for i, st := range steps {
		f.clock.now = t0.Add(st.at)
		w := f.get(t, "free-1")
		h := w.Header()
		name := "step " + strconv.Itoa(i) + ": GET at t0+" + st.at.String()
		assert.Equal(t, st.status, w.Code, name)
		assert.Equal(t, st.remaining, hv(h, HeaderRemaining), "%s: Remaining", name)
		assert.Equal(t, st.reset, hv(h, HeaderReset), "%s: Reset (t0 is %d)", name, t0.Unix())
		assert.Equal(t, st.retryAfter, hv(h, HeaderRetryAfter), "%s: Retry-After", name)
		assert.Equal(t, st.rateLimit, hv(h, HeaderRateLimit), "%s: RateLimit", name)
	}
}

// oddTierNames are tier names a String cannot carry as they are.
var oddTierNames = []string{
	"free", "", `quo"te`, `back\slash`, `\"`, "tab\there", "new\nline", "cr\r\nX-Injected: 1", "nul\x00",
	"del\x7f", "ünïcode", "\xff\xfe", "100%", "%41", "a,b;c=d", `"free";r=999;t=0`, " spaced ", "(){}<>@:/[]?=",
	strings.Repeat("ü", 32), // 64 bytes, all percent-encoded
}

// TestRateLimitFieldsAreStructuredLists: RateLimit-Policy and RateLimit
// parse as the draft's Lists of one String item with Integer parameters,
// whatever the tier is called, and the item names the tier.
func TestRateLimitFieldsAreStructuredLists(t *testing.T) {
	now := t0.Add(250 * time.Millisecond)
	decisions := map[string]bucket.Decision{
		"allowed": {Allowed: true, Limit: 20, Remaining: 7, ResetAt: t0.Add(40 * time.Second), RefillAt: t0.Add(3 * time.Second)},
		"refused": {Limit: 20, ResetAt: t0.Add(40 * time.Second), RetryAt: t0.Add(63 * time.Second)},
	}
	for _, tier := range oddTierNames {
		for what, d := range decisions {
			h := http.Header{}
			writeHeaders(h, tier, 60, d, now)
			name := what + " tier " + strconv.Quote(tier)
			wantT := int64(3)
			if !d.Allowed {
				wantT = 63
			}
			checkList(t, name, h, HeaderPolicy, tier, map[string]int64{"q": 20, "w": 60})
			checkList(t, name, h, HeaderRateLimit, tier, map[string]int64{"r": int64(d.Remaining), "t": wantT})
		}
	}
}

// FuzzRateLimitFields: any tier name, limit and remaining give fields that
// parse, and name the tier.
func FuzzRateLimitFields(f *testing.F) {
	for _, tier := range oddTierNames {
		f.Add(tier, 20, 7, false)
	}
	f.Add("pro", -1, -5, true)
	f.Add("pro", 1<<62, 1<<62, true)
	f.Fuzz(func(t *testing.T, tier string, limit, remaining int, refused bool) {
		now := t0.Add(250 * time.Millisecond)
		d := bucket.Decision{Allowed: !refused, Limit: limit, Remaining: remaining, ResetAt: t0.Add(time.Minute)}
		if refused {
			d.RetryAt = t0.Add(3 * time.Second)
		}
		h := http.Header{}
		writeHeaders(h, tier, 60, d, now)
		checkList(t, "tier "+strconv.Quote(tier), h, HeaderPolicy, tier, map[string]int64{"q": sfInteger(int64(limit)), "w": 60})
		want := map[string]int64{"r": sfInteger(int64(remaining))}
		checkList(t, "tier "+strconv.Quote(tier), h, HeaderRateLimit, tier, want)
	})
}

// checkList parses field of h as a structured-field List and checks that it
// holds one String item, tier once percent-decoded, whose Integer parameters
// include want.
func checkList(t *testing.T, name string, h http.Header, field, tier string, want map[string]int64) {
	t.Helper()
	vs := h.Values(field)
	require.Len(t, vs, 1, "%s: %s values", name, field)
	for i := 0; i < len(vs[0]); i++ {
		if c := vs[0][i]; c < 0x20 || c >= 0x7f {
			require.Failf(t, "not a field value", "%s: %s = %q has byte %#x", name, field, vs[0], c)
		}
	}
	list, err := httpsfv.UnmarshalList(vs)
	require.NoError(t, err, "%s: UnmarshalList(%s: %s)", name, field, vs[0])
	require.Len(t, list, 1, "%s: %s = %s", name, field, vs[0])
	item, ok := list[0].(httpsfv.Item)
	require.True(t, ok, "%s: %s = %s: member is %T, want an Item", name, field, vs[0], list[0])
	s, ok := item.Value.(string)
	require.True(t, ok, "%s: %s = %s: item is %T, want a String", name, field, vs[0], item.Value)
	got, err := url.PathUnescape(s)
	require.NoError(t, err, "%s: %s = %s: percent-decoding %q", name, field, vs[0], s)
	assert.Equal(t, tier, got, "%s: %s = %s: the policy's name", name, field, vs[0])
	for k, v := range want {
		p, ok := item.Params.Get(k)
		if assert.True(t, ok, "%s: %s = %s: no %s", name, field, vs[0], k) {
			assert.Equal(t, v, p, "%s: %s = %s: %s", name, field, vs[0], k)
		}
	}
	for _, k := range item.Params.Names() {
		p, _ := item.Params.Get(k)
		n, ok := p.(int64)
		assert.True(t, ok, "%s: %s = %s: %s is %T, want an Integer", name, field, vs[0], k, p)
		assert.GreaterOrEqual(t, n, int64(0), "%s: %s = %s: %s", name, field, vs[0], k)
	}
}

func TestWriteHeadersAllocatesTwice(t *testing.T) {
	now := t0.Add(250 * time.Millisecond)
	for _, tier := range []string{"free", strings.Repeat("ü", 32)} {
		for _, d := range []bucket.Decision{
			{Allowed: true, Limit: 1e9, Remaining: 1e9 - 1, ResetAt: t0.Add(time.Minute), RefillAt: t0.Add(time.Minute)},
			{Limit: 1e9, ResetAt: t0.Add(time.Minute), RetryAt: t0.Add(time.Hour)},
		} {
			h := http.Header{}
			got := testing.AllocsPerRun(100, func() { writeHeaders(h, tier, 86400, d, now) })
			assert.InDelta(t, 2, got, 0, "writeHeaders(%q, %+v): allocations", tier, d)
		}
	}
}
