package forward

import (
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
)

// TestRTTDeadlineSteps: the deadline follows twice the bucket of the p99
// round trip of the last two periods, within its bounds, and stays put on
// too few round trips.
func TestRTTDeadlineSteps(t *testing.T) {
	r := NewDeadline(time.Millisecond, 20*time.Millisecond)
	many := func(n int, d time.Duration) {
		for range n {
			r.Record(d)
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
		{"faster still: the minimum", func() { r.Roll(); many(1000, 100*time.Microsecond) }, time.Millisecond},
		// 1000 at 100 µs from the last period and 1000 at 3 ms now: the
		// p99 lies in the 3 ms bucket, up to 4.096 ms.
		{"slower", func() { many(1000, 3*time.Millisecond) }, 8192 * time.Microsecond},
		{"1% slow does not move it", func() { many(990, 300*time.Microsecond); many(9, 15*time.Millisecond) }, 8192 * time.Microsecond},
		{"2% at 15 ms: the maximum", func() { many(960, 300*time.Microsecond); many(40, 15*time.Millisecond) }, 20 * time.Millisecond},
		{"fast again for two periods", func() { many(1000, 100*time.Microsecond); r.Roll(); many(1000, 100*time.Microsecond) }, time.Millisecond},
	}
	for _, st := range steps {
		st.do()
		r.Roll()
		assert.Equal(t, st.want, r.Timeout(), st.name)
	}
	// A check that gives up doubles the deadline at once, up to the
	// maximum; the next period's p99 brings it down again.
	r.BackOff(r.Timeout())
	assert.Equal(t, 2*time.Millisecond, r.Timeout(), "backed off once")
	r.BackOff(time.Millisecond) // a check that started before the first back-off
	assert.Equal(t, 2*time.Millisecond, r.Timeout(), "never lowered by a back-off")
	for range 10 {
		r.BackOff(r.Timeout())
	}
	assert.Equal(t, 20*time.Millisecond, r.Timeout(), "backed off to the maximum")
	many(1000, 100*time.Microsecond)
	r.Roll()
	many(1000, 100*time.Microsecond)
	r.Roll()
	assert.Equal(t, time.Millisecond, r.Timeout(), "quick again")
	assert.Equal(t, 0, bucketOf(-time.Second))
	assert.Equal(t, rttBuckets-1, bucketOf(time.Hour))
}
