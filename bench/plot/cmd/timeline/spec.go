package main

import (
	"fmt"
	"strings"
	"time"

	"github.com/tierlimit/tierlimit/bench/plot/internal/loadrun"
	"github.com/tierlimit/tierlimit/bench/plot/timeline"
	"github.com/tierlimit/tierlimit/config"
)

// phaseSpec is one phase asked for on the command line.
type phaseSpec struct {
	status string
	length time.Duration
}

// parsePhases parses "NORMAL=20s,DEGRADED=20s,NORMAL=20s". Each length is a
// positive whole number of seconds, so that phases start on a counted
// second; the status is NORMAL or DEGRADED, in any case.
func parsePhases(s string) ([]phaseSpec, error) {
	var out []phaseSpec
	for item := range strings.SplitSeq(s, ",") {
		name, length, ok := strings.Cut(strings.TrimSpace(item), "=")
		if !ok {
			return nil, fmt.Errorf("-phases %q: %q is not STATUS=LENGTH", s, item)
		}
		status := strings.ToUpper(strings.TrimSpace(name))
		if status != "NORMAL" && status != "DEGRADED" {
			return nil, fmt.Errorf("-phases %q: status %q: want NORMAL or DEGRADED", s, name)
		}
		d, err := time.ParseDuration(strings.TrimSpace(length))
		if err != nil {
			return nil, fmt.Errorf("-phases %q: %w", s, err)
		}
		if d <= 0 || d%time.Second != 0 {
			return nil, fmt.Errorf("-phases %q: length %v: want a positive whole number of seconds", s, d)
		}
		out = append(out, phaseSpec{status: status, length: d})
	}
	return out, nil
}

// parsePerTier parses "free=30,pro=10" into values by tier name; every
// value must be positive.
func parsePerTier(flagName, s string) (map[string]float64, error) {
	return loadrun.ParsePerTier(flagName, s, func(v float64) bool { return v > 0 }, "a positive number")
}

// tierLoad is the load of one tier: its keys, taken in turn, its rate,
// and the job each request stands for.
type tierLoad struct {
	tier config.Tier
	keys []string
	rate float64 // requests per second, over all keys
	// estimate is sent as the request's Tierlimit-Cost, 0 for none; cost
	// as its GET /test?cost=, what its job reports, -1 for none.
	estimate, cost int
}

// reserved returns what each request of l reserves at admission: its
// estimate, or the tier's default_estimate; 0 if the tier limits no cost.
func (l tierLoad) reserved() int {
	switch {
	case !l.tier.Cost.Set():
		return 0
	case l.estimate > 0:
		return l.estimate
	default:
		return l.tier.CostEstimate
	}
}

// charged returns what an admitted request of l is charged once its job
// ends: the cost it reports, or with none what it reserved; 0 if the tier
// limits no cost.
func (l tierLoad) charged() int {
	switch {
	case !l.tier.Cost.Set():
		return 0
	case l.cost >= 0:
		return l.cost
	default:
		return l.reserved()
	}
}

// loadSpec is the load asked for, per tier: how many keys, how many
// requests per second, and each request's estimate and reported cost
// (optional).
type loadSpec struct {
	keys, rate, estimate, cost map[string]float64
}

// loadTiers reads the tiers file at path and picks, for each tier in
// spec.keys, that many of its API keys (in sorted order), to be sent
// spec.rate[tier] requests per second in all. Every tier of keys must have
// a rate and the other way round; a tier of spec.estimate or spec.cost
// must be in the file, and they apply to the tiers loaded.
func loadTiers(path string, spec loadSpec) (*config.Tiers, []tierLoad, error) {
	keys, rate := spec.keys, spec.rate
	file, err := loadrun.ReadTiers(path)
	if err != nil {
		return nil, nil, err
	}
	tiers := file.Tiers
	var out []tierLoad
	for _, name := range tiers.Names() {
		n, hasKeys := keys[name]
		r, hasRate := rate[name]
		if !hasKeys && !hasRate {
			continue
		}
		if !hasKeys || !hasRate {
			return nil, nil, fmt.Errorf("tier %s: give both -keys and -rate for it, or neither", name)
		}
		have, err := file.Keys(name, n, "write more with bench/loadgen -gen-config")
		if err != nil {
			return nil, nil, err
		}
		t, _ := tiers.Tier(name)
		l := tierLoad{tier: t, keys: have, rate: r, cost: -1}
		if e, ok := spec.estimate[name]; ok {
			l.estimate = int(e)
		}
		if c, ok := spec.cost[name]; ok {
			l.cost = int(c)
		}
		out = append(out, l)
	}
	for flagName, m := range map[string]map[string]float64{"-estimate": spec.estimate, "-cost": spec.cost} {
		for name, v := range m {
			if _, ok := tiers.Tier(name); !ok {
				return nil, nil, fmt.Errorf("%s: %s has no tier %q (it has %s)", flagName, path, name, strings.Join(tiers.Names(), ", "))
			}
			if v != float64(int(v)) || v > maxCost {
				return nil, nil, fmt.Errorf("%s %s=%v: want a whole number up to %d", flagName, name, v, maxCost)
			}
		}
	}
	for name := range keys {
		if _, ok := tiers.Tier(name); !ok {
			return nil, nil, fmt.Errorf("-keys: %s has no tier %q (it has %s)", path, name, strings.Join(tiers.Names(), ", "))
		}
	}
	for name := range rate {
		if _, ok := tiers.Tier(name); !ok {
			return nil, nil, fmt.Errorf("-rate: %s has no tier %q (it has %s)", path, name, strings.Join(tiers.Names(), ", "))
		}
	}
	if len(out) == 0 {
		return nil, nil, fmt.Errorf("no tier to load: -keys and -rate name none")
	}
	return tiers, out, nil
}

// maxCost is the largest cost a node takes (Tierlimit-Cost, ?cost=).
const maxCost = 1_000_000_000

// fit describes how a tier's load per key compares with its limits over
// one window, so that a person can tell, before the run, what it will show:
// its requests, and, for a tier that limits them, its cost (what it is
// charged; while it runs it also holds what it reserved) and its jobs at
// once (each holds its slot for work, on average).
func fit(l tierLoad, window, work time.Duration, unit string) string {
	perSecond := l.rate / float64(len(l.keys))
	perKey := perSecond * window.Seconds()
	cmp := func(v float64, limit int) string {
		if v > float64(limit) {
			return "over"
		}
		return "within"
	}
	out := fmt.Sprintf("%s: %d keys, %.4g req/s each = %.4g per key per %v window: %s the NORMAL limit %d, %s the DEGRADED limit %d",
		l.tier.Name, len(l.keys), perSecond, perKey, window,
		cmp(perKey, l.tier.Burst), l.tier.Burst, cmp(perKey, l.tier.Degraded), l.tier.Degraded)
	if c := l.tier.Cost; c.Set() {
		cost := perKey * float64(l.charged())
		out += fmt.Sprintf("; cost %d %s a job (reserving %d) = %.0f per key per window: %s the NORMAL limit %d, %s the DEGRADED limit %d",
			l.charged(), unit, l.reserved(), cost, cmp(cost, c.Burst), c.Burst, cmp(cost, c.Degraded), c.Degraded)
	}
	if c := l.tier.Concurrency; c.Set() {
		out += fmt.Sprintf("; %.2g jobs at once per key on average (limits %d NORMAL, %d DEGRADED)",
			perSecond*work.Seconds(), c.Burst, c.Degraded)
	}
	return out
}

// recordTiers returns the Record tiers of loads, without counts.
func recordTiers(loads []tierLoad) []timeline.Tier {
	out := make([]timeline.Tier, len(loads))
	for i, l := range loads {
		out[i] = timeline.Tier{
			Name: l.tier.Name, Keys: len(l.keys), Rate: l.rate,
			Burst: l.tier.Burst, Limit: l.tier.Limit, Degraded: l.tier.Degraded,
			Cost: limits(l.tier.Cost), Concurrency: limits(l.tier.Concurrency),
			Estimate: l.reserved(), CostPerJob: l.charged(),
		}
	}
	return out
}

// limits returns l as a Record's limits, nil if l limits nothing.
func limits(l config.Limits) *timeline.Limits {
	if !l.Set() {
		return nil
	}
	return &timeline.Limits{Burst: l.Burst, Limit: l.Limit, Degraded: l.Degraded}
}
