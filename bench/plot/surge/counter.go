package surge

import (
	"math"
	"slices"
	"sync"
	"time"
)

// NoResponse is the Status of an Outcome for a request that got no
// answer, or was not sent.
const NoResponse = 0

// Outcome is what came of one request.
type Outcome struct {
	// Status is the HTTP status of the answer, NoResponse if none came.
	Status int
	// TimedOut reports that no answer came within the client's timeout
	// (Status is NoResponse).
	TimedOut bool
	// Unsent reports that the request was not sent: the client's bound on
	// requests in flight was reached (Status is NoResponse).
	Unsent bool
	// Deferred reports that the client did not send the request: it waits
	// out the Retry-After of a 429 its key got (Status is NoResponse). It
	// counts apart, without a latency.
	Deferred bool
	// RetryAfter is the Retry-After of a 429, in whole seconds; 0 if none.
	RetryAfter int
	// Latency is the time from when the request was due to its answer, or
	// to its failure.
	Latency time.Duration
}

// Counter counts outcomes and keeps latencies per second and tier while a
// run is under way. It is safe for concurrent use and never reads the
// clock: every Add says when its request was due. The zero value is not
// usable: call NewCounter.
type Counter struct {
	seconds int
	timeout time.Duration

	// mu guards tiers and lat.
	mu    sync.Mutex
	tiers []Tier
	lat   [][][]float64 // per tier, per second: latencies in ms
	keep  []bool        // per tier: whether Tiers returns its latencies
}

// NewCounter returns a Counter for tiers (their Name, Keys and limits are
// kept, their counts replaced) over seconds whole seconds. A request that
// got no answer, or was not sent, counts at timeout in the latencies (or
// at the time it took, if longer). Tiers returns the latencies themselves
// of the tiers named in keep.
func NewCounter(tiers []Tier, seconds int, timeout time.Duration, keep []string) *Counter {
	c := &Counter{seconds: seconds, timeout: timeout, tiers: make([]Tier, len(tiers)),
		lat: make([][][]float64, len(tiers)), keep: make([]bool, len(tiers))}
	for i, t := range tiers {
		c.tiers[i] = Tier{Name: t.Name, Keys: t.Keys, Burst: t.Burst, Limit: t.Limit, Degraded: t.Degraded,
			Admitted: make([]int, seconds), Refused: make([]int, seconds), Other: make([]int, seconds),
			Failed: make([]int, seconds), TimedOut: make([]int, seconds), Unsent: make([]int, seconds),
			Deferred: make([]int, seconds)}
		c.lat[i] = make([][]float64, seconds)
		c.keep[i] = slices.Contains(keep, t.Name)
	}
	return c
}

// Add counts one request of tier, due at offset due, with what came of it.
// It reports whether it counted it: not if the tier is unknown or due lies
// outside the run.
func (c *Counter) Add(tier string, due Offset, o Outcome) bool {
	s, ok := due.Second(c.seconds)
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
	lat := o.Latency
	switch {
	case o.Deferred:
		t.Deferred[s]++
		return true
	case o.Unsent:
		t.Unsent[s]++
		lat = max(lat, c.timeout)
	case o.Status == NoResponse:
		t.Failed[s]++
		if o.TimedOut {
			t.TimedOut[s]++
		}
		lat = max(lat, c.timeout)
	case o.Status == 200:
		t.Admitted[s]++
	case o.Status == 429:
		t.Refused[s]++
	default:
		t.Other[s]++
	}
	c.lat[i][s] = append(c.lat[i][s], Millis(lat))
	return true
}

// Tiers returns the counts so far, with each second's latency
// percentiles, and the latencies of the tiers to keep.
func (c *Counter) Tiers() []Tier {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := make([]Tier, len(c.tiers))
	for i, t := range c.tiers {
		t.Admitted, t.Refused, t.Other = slices.Clone(t.Admitted), slices.Clone(t.Refused), slices.Clone(t.Other)
		t.Failed, t.TimedOut, t.Unsent = slices.Clone(t.Failed), slices.Clone(t.TimedOut), slices.Clone(t.Unsent)
		t.Deferred = slices.Clone(t.Deferred)
		t.P50, t.P99, t.Max = make([]float64, c.seconds), make([]float64, c.seconds), make([]float64, c.seconds)
		if c.keep[i] {
			t.Latency = make([][]float64, c.seconds)
		}
		for s, l := range c.lat[i] {
			l = slices.Clone(l)
			slices.Sort(l)
			t.P50[s], t.P99[s], t.Max[s] = Quantile(l, 0.5), Quantile(l, 0.99), Quantile(l, 1)
			if c.keep[i] {
				t.Latency[s] = orEmpty(l)
			}
		}
		out[i] = t
	}
	return out
}

// orEmpty returns l, or an empty slice for nil, so that JSON has [].
func orEmpty(l []float64) []float64 {
	if l == nil {
		return []float64{}
	}
	return l
}

// Millis returns d in milliseconds, to 0.1 ms.
func Millis(d time.Duration) float64 {
	return math.Round(float64(d)/float64(100*time.Microsecond)) / 10
}

// Quantile returns the q-quantile (0 < q <= 1) of sorted by nearest rank:
// the smallest value with at least q of the values at or below it; 0 for
// none.
func Quantile(sorted []float64, q float64) float64 {
	n := len(sorted)
	if n == 0 {
		return 0
	}
	// The rank, rounded to 1e-9 so that 0.99 × 100 is 99, not 99.00000000000001.
	rank := int(math.Ceil(math.Round(q*float64(n)*1e9) / 1e9))
	return sorted[min(max(rank, 1), n)-1]
}
