package ownership

import (
	"testing"
	"testing/synctest"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestRTTDeadlineSteps: the deadline follows twice the bucket of the p99
// round trip of the last two periods, within its bounds, and stays put on
// too few round trips.
func TestRTTDeadlineSteps(t *testing.T) {
	r := newRTT(time.Millisecond, 20*time.Millisecond)
	many := func(n int, d time.Duration) {
		for range n {
			r.record(d)
		}
	}
	steps := []struct {
		name string
		do   func()
		want time.Duration
	}{
		{"before any round trip: the maximum", func() {}, 20 * time.Millisecond},
		{"too few to tell", func() { many(rttMinSamples-1, 100*time.Microsecond) }, 20 * time.Millisecond},
		// 300 µs is in the bucket up to 512 µs: twice that.
		{"fast peer", func() { many(1000, 300*time.Microsecond) }, 1024 * time.Microsecond},
		{"faster still: the minimum", func() { r.roll(); many(1000, 100*time.Microsecond) }, time.Millisecond},
		// 1000 at 100 µs from the last period and 1000 at 3 ms now: the
		// p99 lies in the 3 ms bucket, up to 4.096 ms.
		{"slower", func() { many(1000, 3*time.Millisecond) }, 8192 * time.Microsecond},
		{"1% slow does not move it", func() { many(990, 300*time.Microsecond); many(9, 15*time.Millisecond) }, 8192 * time.Microsecond},
		{"2% at 15 ms: the maximum", func() { many(960, 300*time.Microsecond); many(40, 15*time.Millisecond) }, 20 * time.Millisecond},
		{"fast again for two periods", func() { many(1000, 100*time.Microsecond); r.roll(); many(1000, 100*time.Microsecond) }, time.Millisecond},
	}
	for _, st := range steps {
		st.do()
		r.roll()
		assert.Equal(t, st.want, r.timeout(), st.name)
	}
	// A check that gives up doubles the deadline at once, up to the
	// maximum; the next period's p99 brings it down again.
	r.backOff(r.timeout())
	assert.Equal(t, 2*time.Millisecond, r.timeout(), "backed off once")
	r.backOff(time.Millisecond) // a check that started before the first back-off
	assert.Equal(t, 2*time.Millisecond, r.timeout(), "never lowered by a back-off")
	for range 10 {
		r.backOff(r.timeout())
	}
	assert.Equal(t, 20*time.Millisecond, r.timeout(), "backed off to the maximum")
	many(1000, 100*time.Microsecond)
	r.roll()
	many(1000, 100*time.Microsecond)
	r.roll()
	assert.Equal(t, time.Millisecond, r.timeout(), "quick again")
	assert.Equal(t, 0, bucketOf(-time.Second))
	assert.Equal(t, rttBuckets-1, bucketOf(time.Hour))
}

// TestRouterDeadlineAdaptsToTheOwner: once an owner's round trips are
// known to be quick, a check that it stops answering is given up on after
// the adapted deadline, not the maximum.
func TestRouterDeadlineAdaptsToTheOwner(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		peer := &batchPeer{delay: 200 * time.Microsecond}
		r := newTestRouter(t, []string{"a", "b"}, peerMap{"b": peer}, func(cfg *RouterConfig) { cfg.LeaseTTL = -1 })
		key := keyOwnedBy(t, r.ring, "b")
		for range 2 * rttMinSamples {
			require.True(t, r.Check(t.Context(), routerT0, key, 1<<30).Allowed)
		}
		r.rollDeadlines()
		assert.Equal(t, map[string]time.Duration{"b": time.Millisecond}, r.Deadlines(), "twice the 256 µs bucket, at least 1 ms")

		peer.block = true
		start := time.Now()
		d := r.Check(t.Context(), routerT0, key, 1<<30)
		assert.Equal(t, time.Millisecond, time.Since(start), "a check to the hanging owner waited")
		assert.Equal(t, []string{FallbackTimeout}, r.events.reasons())
		assert.True(t, d.Allowed)
	})
}
