package timeline

import (
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func ms(n int) Offset { return Offset(time.Duration(n) * time.Millisecond) }

func TestCounterBuckets(t *testing.T) {
	type add struct {
		at            Offset
		status, limit int
		want          bool
	}
	for _, tc := range []struct {
		name                             string
		adds                             []add
		admitted, refused, other, failed []int
		limitMin, limitMax               []int
		otherStatus                      map[string]int
	}{
		{
			name:     "second edges",
			adds:     []add{{ms(0), 200, 20, true}, {ms(999), 200, 20, true}, {ms(1000), 200, 20, true}, {ms(2999), 429, 2, true}},
			admitted: []int{2, 1, 0}, refused: []int{0, 0, 1}, other: []int{0, 0, 0}, failed: []int{0, 0, 0},
			limitMin: []int{20, 20, 2}, limitMax: []int{20, 20, 2},
		},
		{
			name:     "outside the run",
			adds:     []add{{ms(-1), 200, 20, false}, {ms(3000), 200, 20, false}, {ms(3500), 429, 2, false}},
			admitted: []int{0, 0, 0}, refused: []int{0, 0, 0}, other: []int{0, 0, 0}, failed: []int{0, 0, 0},
			limitMin: []int{0, 0, 0}, limitMax: []int{0, 0, 0},
		},
		{
			name:     "other statuses and no response",
			adds:     []add{{ms(10), 503, 0, true}, {ms(20), 401, 0, true}, {ms(1500), NoResponse, 0, true}, {ms(2100), 503, 0, true}},
			admitted: []int{0, 0, 0}, refused: []int{0, 0, 0}, other: []int{2, 0, 1}, failed: []int{0, 1, 0},
			limitMin: []int{0, 0, 0}, limitMax: []int{0, 0, 0},
			otherStatus: map[string]int{"401": 1, "503": 2},
		},
		{
			name:     "limit changes within a second",
			adds:     []add{{ms(100), 200, 20, true}, {ms(400), 429, 2, true}, {ms(900), 200, 20, true}, {ms(1200), 429, 2, true}},
			admitted: []int{2, 0, 0}, refused: []int{1, 1, 0}, other: []int{0, 0, 0}, failed: []int{0, 0, 0},
			limitMin: []int{2, 2, 0}, limitMax: []int{20, 2, 0},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := NewCounter([]Tier{{Name: "free", Keys: 3, Rate: 9, Burst: 20, Limit: 10, Degraded: 2}}, 3*time.Second)
			require.Equal(t, 3, c.Seconds())
			for _, a := range tc.adds {
				assert.Equal(t, a.want, c.Add("free", a.at, a.status, a.limit), "Add(free, %v ms, %d, %d)", a.at.Duration().Milliseconds(), a.status, a.limit)
			}
			got := c.Tiers()
			require.Len(t, got, 1)
			g := got[0]
			assert.Equal(t, "free", g.Name)
			assert.Equal(t, 20, g.Burst)
			assert.Equal(t, tc.admitted, g.Admitted, "admitted")
			assert.Equal(t, tc.refused, g.Refused, "refused")
			assert.Equal(t, tc.other, g.Other, "other")
			assert.Equal(t, tc.failed, g.Failed, "failed")
			assert.Equal(t, tc.limitMin, g.LimitMin, "limit_min")
			assert.Equal(t, tc.limitMax, g.LimitMax, "limit_max")
			assert.Equal(t, tc.otherStatus, g.OtherStatus, "other_status")
		})
	}
}

func TestCounterRoundsUpAndKnowsTiers(t *testing.T) {
	c := NewCounter([]Tier{{Name: "free"}, {Name: "pro"}}, 2500*time.Millisecond)
	assert.Equal(t, 3, c.Seconds(), "Seconds() for 2.5 s")
	assert.True(t, c.Add("pro", ms(2400), 200, 150))
	assert.False(t, c.Add("gold", ms(10), 200, 1), "Add for a tier the counter was not given")
	got := c.Tiers()
	assert.Equal(t, []int{0, 0, 1}, got[1].Admitted)
	assert.Equal(t, []int{0, 0, 0}, got[0].Admitted)
}

func TestCounterTiersIsACopy(t *testing.T) {
	c := NewCounter([]Tier{{Name: "free"}}, time.Second)
	c.Add("free", ms(1), 503, 0)
	got := c.Tiers()
	got[0].Admitted[0] = 99
	got[0].OtherStatus["503"] = 99
	again := c.Tiers()
	assert.Equal(t, 0, again[0].Admitted[0])
	assert.Equal(t, 1, again[0].OtherStatus["503"])
}

func TestCounterConcurrentAdds(t *testing.T) {
	c := NewCounter([]Tier{{Name: "free"}, {Name: "pro"}}, 2*time.Second)
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Go(func() {
			for i := range 250 {
				tier := "free"
				if g%2 == 1 {
					tier = "pro"
				}
				c.Add(tier, ms(i*8), 200, 20)
			}
		})
	}
	wg.Wait()
	got := c.Tiers()
	assert.Equal(t, []int{500, 500}, got[0].Admitted, "free: 4 goroutines x 250 over 2 s")
	assert.Equal(t, []int{500, 500}, got[1].Admitted, "pro")
}
