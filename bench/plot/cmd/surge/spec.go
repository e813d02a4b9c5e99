package main

import (
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/tierlimit/tierlimit/bench/plot/internal/loadrun"
	"github.com/tierlimit/tierlimit/bench/plot/surge"
	"github.com/tierlimit/tierlimit/config"
)

// parsePerTier parses "free=30,pro=10" into values by tier name; every
// value must be positive, or, with zero true, not negative.
func parsePerTier(flagName, s string, zero bool) (map[string]float64, error) {
	if strings.TrimSpace(s) == "" {
		return make(map[string]float64), nil
	}
	ok := func(v float64) bool { return !(v < 0 || (v == 0 && !zero) || v > 1e6) }
	return loadrun.ParsePerTier(flagName, s, ok, "a positive number up to 1e6")
}

// tierLoad is one tier's load: its keys, taken in turn.
type tierLoad struct {
	name string
	tier config.Tier
	keys []string
}

// loadTiers reads the tiers file at path and picks, for each tier of keys,
// that many of its API keys in sorted order. A tier of base or surge must
// have keys, and every tier of keys a rate in one of them.
func loadTiers(path string, keys, base, surgeRates map[string]float64) (*config.Tiers, []tierLoad, error) {
	file, err := loadrun.ReadTiers(path)
	if err != nil {
		return nil, nil, err
	}
	tiers := file.Tiers
	for _, f := range []struct {
		name string
		m    map[string]float64
	}{{"-keys", keys}, {"-base", base}, {"-surge", surgeRates}} {
		flagName := f.name
		for _, name := range slices.Sorted(maps.Keys(f.m)) {
			if _, ok := tiers.Tier(name); !ok {
				return nil, nil, fmt.Errorf("%s: %s has no tier %q (it has %s)", flagName, path, name, strings.Join(tiers.Names(), ", "))
			}
			if _, ok := keys[name]; !ok {
				return nil, nil, fmt.Errorf("%s: tier %s has no -keys", flagName, name)
			}
		}
	}
	var out []tierLoad
	for _, name := range tiers.Names() {
		n, ok := keys[name]
		if !ok {
			continue
		}
		if base[name] == 0 && surgeRates[name] == 0 {
			return nil, nil, fmt.Errorf("-keys: tier %s has no rate in -base or -surge", name)
		}
		have, err := file.Keys(name, n, "")
		if err != nil {
			return nil, nil, err
		}
		t, _ := tiers.Tier(name)
		out = append(out, tierLoad{name: name, tier: t, keys: have})
	}
	return tiers, out, nil
}

// recordTiers returns the Record tiers of loads, without counts.
func recordTiers(loads []tierLoad) []surge.Tier {
	out := make([]surge.Tier, len(loads))
	for i, l := range loads {
		out[i] = surge.Tier{Name: l.name, Keys: len(l.keys), Burst: l.tier.Burst, Limit: l.tier.Limit, Degraded: l.tier.Degraded}
	}
	return out
}

// describeLoad says, before the run, what the load asks of the cluster:
// its jobs per second against the cluster's capacity in each phase, and
// each tier's requests per key against its limits over the phase (or
// over a window, if the phase is longer).
func describeLoad(loads []tierLoad, phases []surge.Phase, capacity, nodes int, work, window time.Duration) string {
	var b strings.Builder
	jobs := 0.0
	if work > 0 {
		jobs = float64(nodes*capacity) / work.Seconds()
		fmt.Fprintf(&b, "cluster: %d nodes x %d slots, jobs of %v: %.4g jobs/s\n", nodes, capacity, work, jobs)
	}
	for _, p := range phases {
		total := 0.0
		for _, r := range p.Rates {
			total += r
		}
		fmt.Fprintf(&b, "%s %.0f-%.0f s: %s = %.4g req/s", p.Name, p.Start.Seconds(), p.End.Seconds(), rates(p.Rates), total)
		if jobs > 0 {
			fmt.Fprintf(&b, ", %.2f of capacity", total/jobs)
		}
		b.WriteString("\n")
		span := min(p.End.Duration()-p.Start.Duration(), window)
		for _, l := range loads {
			r := p.Rates[l.name]
			if r == 0 {
				continue
			}
			perKey := r / float64(len(l.keys)) * span.Seconds()
			cmp := func(limit int) string {
				if perKey > float64(limit) {
					return "over"
				}
				return "within"
			}
			fmt.Fprintf(&b, "  %s: %d keys, %.4g requests per key in %v: %s the NORMAL limit %d, %s the DEGRADED limit %d per %v\n",
				l.name, len(l.keys), perKey, span, cmp(l.tier.Burst), l.tier.Burst, cmp(l.tier.Degraded), l.tier.Degraded, window)
		}
	}
	return strings.TrimRight(b.String(), "\n")
}

// rates formats per-tier rates in sorted order: "enterprise=30 pro=30".
func rates(m map[string]float64) string {
	var parts []string
	for _, name := range slices.Sorted(maps.Keys(m)) {
		parts = append(parts, name+"="+strconv.FormatFloat(m[name], 'f', -1, 64))
	}
	return strings.Join(parts, " ")
}
