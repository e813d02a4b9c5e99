package timeline

import (
	"maps"
	"slices"
	"strconv"
	"sync"
	"time"
)

// NoResponse is the Status of an Outcome for a request that got no
// response.
const NoResponse = 0

// Outcome is what came back for one request.
type Outcome struct {
	// Status is the HTTP status of the response, NoResponse if none came.
	Status int
	// Limit is the X-RateLimit-Limit it carried, 0 if none.
	Limit int
	// Cost is, for a 200, what the request's job was charged; counted
	// for admitted requests of a tier with a cost limit only.
	Cost int
	// RefusedBy is, for a 429, the limit its body named ("requests",
	// "cost", "concurrency"); empty if it named none.
	RefusedBy string
}

// Counter counts outcomes per second and tier while a run is under way. It
// is safe for concurrent use; it never reads the clock (every Add says when
// its request was sent). The zero value is not usable: call NewCounter.
type Counter struct {
	seconds int

	// mu guards tiers.
	mu    sync.Mutex
	tiers []Tier
}

// NewCounter returns a Counter for the tiers (their Name, Keys, Rate,
// limits and costs are kept; their counts are replaced) over a run of
// length d, rounded up to whole seconds. A tier with a cost limit (Cost)
// gets CostAdmitted counts.
func NewCounter(tiers []Tier, d time.Duration) *Counter {
	n := int((d + time.Second - 1) / time.Second)
	c := &Counter{seconds: n, tiers: make([]Tier, len(tiers))}
	for i, t := range tiers {
		c.tiers[i] = Tier{
			Name: t.Name, Keys: t.Keys, Rate: t.Rate, Burst: t.Burst, Limit: t.Limit, Degraded: t.Degraded,
			Cost: clonePtr(t.Cost), Concurrency: clonePtr(t.Concurrency), Estimate: t.Estimate, CostPerJob: t.CostPerJob,
			Admitted: make([]int, n), Refused: make([]int, n), Other: make([]int, n), Failed: make([]int, n),
			LimitMin: make([]int, n), LimitMax: make([]int, n),
		}
		if t.Cost != nil {
			c.tiers[i].CostAdmitted = make([]int, n)
		}
	}
	return c
}

// Seconds returns the number of seconds counted.
func (c *Counter) Seconds() int { return c.seconds }

// Add counts one request of tier sent at offset at, with what came back
// for it. An admitted request's cost adds to the second's CostAdmitted, if
// the tier has a cost limit; a refused one counts in RefusedBy under the
// limit its body named (RefusedUnnamed if none). It reports whether it
// counted the request: not if the tier is unknown or at lies outside the
// run.
func (c *Counter) Add(tier string, at Offset, o Outcome) bool {
	s, ok := at.Second(c.seconds)
	if !ok {
		return false
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	i := slices.IndexFunc(c.tiers, func(t Tier) bool { return t.Name == tier })
	if i < 0 {
		return false
	}
	t := &c.tiers[i]
	status, limit := o.Status, o.Limit
	switch status {
	case 200:
		t.Admitted[s]++
		if t.CostAdmitted != nil {
			t.CostAdmitted[s] += o.Cost
		}
	case 429:
		t.Refused[s]++
		by := o.RefusedBy
		if by == "" {
			by = RefusedUnnamed
		}
		if t.RefusedBy == nil {
			t.RefusedBy = make(map[string][]int)
		}
		if t.RefusedBy[by] == nil {
			t.RefusedBy[by] = make([]int, c.seconds)
		}
		t.RefusedBy[by][s]++
	case NoResponse:
		t.Failed[s]++
	default:
		t.Other[s]++
		if t.OtherStatus == nil {
			t.OtherStatus = make(map[string]int)
		}
		t.OtherStatus[strconv.Itoa(status)]++
	}
	if limit > 0 {
		if t.LimitMin[s] == 0 || limit < t.LimitMin[s] {
			t.LimitMin[s] = limit
		}
		t.LimitMax[s] = max(t.LimitMax[s], limit)
	}
	return true
}

// Tiers returns a copy of the counts so far.
func (c *Counter) Tiers() []Tier {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := make([]Tier, len(c.tiers))
	for i, t := range c.tiers {
		t.Admitted = slices.Clone(t.Admitted)
		t.CostAdmitted = slices.Clone(t.CostAdmitted)
		if t.RefusedBy != nil {
			by := make(map[string][]int, len(t.RefusedBy))
			for k, v := range t.RefusedBy {
				by[k] = slices.Clone(v)
			}
			t.RefusedBy = by
		}
		t.Cost, t.Concurrency = clonePtr(t.Cost), clonePtr(t.Concurrency)
		t.Refused = slices.Clone(t.Refused)
		t.Other = slices.Clone(t.Other)
		t.Failed = slices.Clone(t.Failed)
		t.LimitMin = slices.Clone(t.LimitMin)
		t.LimitMax = slices.Clone(t.LimitMax)
		t.OtherStatus = maps.Clone(t.OtherStatus)
		out[i] = t
	}
	return out
}

// clonePtr returns a copy of *p, or nil.
func clonePtr[T any](p *T) *T {
	if p == nil {
		return nil
	}
	v := *p
	return &v
}
