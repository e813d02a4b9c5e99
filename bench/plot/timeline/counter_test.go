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
				assert.Equal(t, a.want, c.Add("free", a.at, Outcome{Status: a.status, Limit: a.limit}), "Add(free, %v ms, %d, %d)", a.at.Duration().Milliseconds(), a.status, a.limit)
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
	assert.True(t, c.Add("pro", ms(2400), Outcome{Status: 200, Limit: 150}))
	assert.False(t, c.Add("gold", ms(10), Outcome{Status: 200, Limit: 1}), "Add for a tier the counter was not given")
	got := c.Tiers()
	assert.Equal(t, []int{0, 0, 1}, got[1].Admitted)
	assert.Equal(t, []int{0, 0, 0}, got[0].Admitted)
}

func TestCounterTiersIsACopy(t *testing.T) {
	c := NewCounter([]Tier{{Name: "free", Cost: &Limits{Burst: 600, Limit: 300, Degraded: 60}}}, time.Second)
	c.Add("free", ms(1), Outcome{Status: 503})
	c.Add("free", ms(2), Outcome{Status: 429, RefusedBy: "cost"})
	c.Add("free", ms(3), Outcome{Status: 200, Cost: 15})
	got := c.Tiers()
	got[0].Admitted[0] = 99
	got[0].OtherStatus["503"] = 99
	got[0].CostAdmitted[0] = 99
	got[0].RefusedBy["cost"][0] = 99
	got[0].Cost.Degraded = 99
	again := c.Tiers()
	assert.Equal(t, 1, again[0].Admitted[0], "admitted")
	assert.Equal(t, 1, again[0].OtherStatus["503"])
	assert.Equal(t, []int{15}, again[0].CostAdmitted)
	assert.Equal(t, map[string][]int{"cost": {1}}, again[0].RefusedBy)
	assert.Equal(t, &Limits{Burst: 600, Limit: 300, Degraded: 60}, again[0].Cost)
}

func TestCounterConcurrentAdds(t *testing.T) {
	c := NewCounter([]Tier{{Name: "free", Cost: &Limits{Burst: 600}}, {Name: "pro"}}, 2*time.Second)
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Go(func() {
			for i := range 250 {
				tier := "free"
				if g%2 == 1 {
					tier = "pro"
				}
				c.Add(tier, ms(i*8), Outcome{Status: 200, Limit: 20, Cost: 3})
			}
		})
	}
	wg.Wait()
	got := c.Tiers()
	assert.Equal(t, []int{500, 500}, got[0].Admitted, "free: 4 goroutines x 250 over 2 s")
	assert.Equal(t, []int{500, 500}, got[1].Admitted, "pro")
	assert.Equal(t, []int{1500, 1500}, got[0].CostAdmitted, "free: 500 a second at 3 each")
	assert.Nil(t, got[1].CostAdmitted, "pro: no cost limit, no cost counted")
}

func TestCounterCostAndRefusals(t *testing.T) {
	c := NewCounter([]Tier{{Name: "free", Keys: 30, Rate: 9, Burst: 20, Limit: 10, Degraded: 2,
		Cost: &Limits{Burst: 600, Limit: 300, Degraded: 60}, Concurrency: &Limits{Burst: 2, Limit: 1, Degraded: 1},
		Estimate: 20, CostPerJob: 15}}, 3*time.Second)
	for _, a := range []struct {
		at Offset
		o  Outcome
	}{
		// Second 0: three jobs admitted at 15 and one at 7 (the cost is
		// each request's own); a 429 costs nothing.
		{ms(0), Outcome{Status: 200, Limit: 20, Cost: 15}},
		{ms(300), Outcome{Status: 200, Limit: 20, Cost: 15}},
		{ms(600), Outcome{Status: 200, Limit: 20, Cost: 7}},
		{ms(999), Outcome{Status: 200, Limit: 20, Cost: 15}},
		{ms(999), Outcome{Status: 429, Limit: 20, Cost: 15, RefusedBy: "concurrency"}},
		// Second 1: refused by each limit, and by none named.
		{ms(1000), Outcome{Status: 429, Limit: 2, RefusedBy: "requests"}},
		{ms(1100), Outcome{Status: 429, Limit: 2, RefusedBy: "requests"}},
		{ms(1200), Outcome{Status: 429, Limit: 2, RefusedBy: "cost"}},
		{ms(1300), Outcome{Status: 429, Limit: 2}},
		// Second 2: a failure and another status cost nothing either.
		{ms(2000), Outcome{Status: NoResponse, Cost: 15}},
		{ms(2100), Outcome{Status: 503, Cost: 15}},
		{ms(2200), Outcome{Status: 200, Limit: 20, Cost: 15}},
		{ms(3000), Outcome{Status: 200, Limit: 20, Cost: 15}}, // after the run: not counted
	} {
		c.Add("free", a.at, a.o)
	}
	got := c.Tiers()[0]
	assert.Equal(t, []int{4, 0, 1}, got.Admitted)
	assert.Equal(t, []int{52, 0, 15}, got.CostAdmitted, "15+15+7+15, nothing, 15")
	assert.Equal(t, []int{1, 4, 0}, got.Refused)
	assert.Equal(t, map[string][]int{
		"requests":    {0, 2, 0},
		"cost":        {0, 1, 0},
		"concurrency": {1, 0, 0},
		"unnamed":     {0, 1, 0},
	}, got.RefusedBy)
	assert.Equal(t, []int{0, 0, 1}, got.Failed)
	assert.Equal(t, []int{0, 0, 1}, got.Other)
	assert.Equal(t, &Limits{Burst: 600, Limit: 300, Degraded: 60}, got.Cost, "limits kept")
	assert.Equal(t, &Limits{Burst: 2, Limit: 1, Degraded: 1}, got.Concurrency)
	assert.Equal(t, 20, got.Estimate)
	assert.Equal(t, 15, got.CostPerJob)
	r := &Record{Phases: []Phase{{Status: "NORMAL", End: ms(3000)}}, Tiers: []Tier{got}, Seconds: 3}
	assert.NoError(t, r.Validate(), "a counter's record is valid")
}

func TestCounterNoRefusals(t *testing.T) {
	c := NewCounter([]Tier{{Name: "pro", Cost: &Limits{Burst: 9000, Limit: 6000, Degraded: 6000}}}, time.Second)
	c.Add("pro", ms(10), Outcome{Status: 200, Cost: 40})
	got := c.Tiers()[0]
	assert.Nil(t, got.RefusedBy, "no 429, no refused_by")
	assert.Equal(t, []int{40}, got.CostAdmitted)
}
