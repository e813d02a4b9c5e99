package timeline

import (
	"maps"
	"slices"
	"strconv"
	"sync"
	"time"
)

// NoResponse is the status to pass to Counter.Add for a request that got
// no response.
const NoResponse = 0

// Counter counts outcomes per second and tier while a run is under way. It
// is safe for concurrent use; it never reads the clock (every Add says when
// its request was sent). The zero value is not usable: call NewCounter.
type Counter struct {
	seconds int

	// mu guards tiers.
	mu    sync.Mutex
	tiers []Tier
}

// NewCounter returns a Counter for the tiers (their Name, Keys, Rate and
// limits are kept; their counts are replaced) over a run of length d,
// rounded up to whole seconds.
func NewCounter(tiers []Tier, d time.Duration) *Counter {
	n := int((d + time.Second - 1) / time.Second)
	c := &Counter{seconds: n, tiers: make([]Tier, len(tiers))}
	for i, t := range tiers {
		c.tiers[i] = Tier{
			Name: t.Name, Keys: t.Keys, Rate: t.Rate, Burst: t.Burst, Limit: t.Limit, Degraded: t.Degraded,
			Admitted: make([]int, n), Refused: make([]int, n), Other: make([]int, n), Failed: make([]int, n),
			LimitMin: make([]int, n), LimitMax: make([]int, n),
		}
	}
	return c
}

// Seconds returns the number of seconds counted.
func (c *Counter) Seconds() int { return c.seconds }

// Add counts one request of tier sent at offset at: status is the HTTP
// status of its response (NoResponse if none came) and limit the
// X-RateLimit-Limit it carried (0 if none). It reports whether it counted
// the request: not if the tier is unknown or at lies outside the run.
func (c *Counter) Add(tier string, at Offset, status, limit int) bool {
	if at < 0 {
		return false
	}
	s := int(at.Duration() / time.Second)
	if s >= c.seconds {
		return false
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	i := slices.IndexFunc(c.tiers, func(t Tier) bool { return t.Name == tier })
	if i < 0 {
		return false
	}
	t := &c.tiers[i]
	switch status {
	case 200:
		t.Admitted[s]++
	case 429:
		t.Refused[s]++
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
