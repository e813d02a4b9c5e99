package main

import (
	"encoding/json"
	"fmt"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"

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
	out := make(map[string]float64)
	for item := range strings.SplitSeq(s, ",") {
		name, value, ok := strings.Cut(strings.TrimSpace(item), "=")
		if !ok || name == "" {
			return nil, fmt.Errorf("%s %q: %q is not TIER=NUMBER", flagName, s, item)
		}
		v, err := strconv.ParseFloat(value, 64)
		if err != nil || !(v > 0) {
			return nil, fmt.Errorf("%s %q: %s=%s: want a positive number", flagName, s, name, value)
		}
		if _, dup := out[name]; dup {
			return nil, fmt.Errorf("%s %q: tier %s given twice", flagName, s, name)
		}
		out[name] = v
	}
	return out, nil
}

// tierLoad is the load of one tier: its keys, taken in turn, and its rate.
type tierLoad struct {
	tier config.Tier
	keys []string
	rate float64 // requests per second, over all keys
}

// loadTiers reads the tiers file at path and picks, for each tier in keys,
// that many of its API keys (in sorted order), to be sent rate[tier]
// requests per second in all. Every tier of keys must have a rate and the
// other way round.
func loadTiers(path string, keys, rate map[string]float64) (*config.Tiers, []tierLoad, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, nil, fmt.Errorf("load tiers: %w", err)
	}
	tiers, err := config.Parse(data)
	if err != nil {
		return nil, nil, fmt.Errorf("load tiers %s: %w", path, err)
	}
	// config.Tiers hides its keys; read them again, already validated.
	var raw struct {
		APIKeys map[string]string `json:"api_keys"`
	}
	if err := json.Unmarshal(data, &raw); err != nil {
		return nil, nil, fmt.Errorf("load tiers %s: %w", path, err)
	}
	byTier := make(map[string][]string)
	for k, t := range raw.APIKeys {
		byTier[t] = append(byTier[t], k)
	}
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
		if n != float64(int(n)) {
			return nil, nil, fmt.Errorf("-keys %s=%v: want a whole number", name, n)
		}
		have := byTier[name]
		slices.Sort(have)
		if int(n) > len(have) {
			return nil, nil, fmt.Errorf("tier %s: -keys asks for %d keys, %s has %d (write more with bench/loadgen -gen-config)", name, int(n), path, len(have))
		}
		t, _ := tiers.Tier(name)
		out = append(out, tierLoad{tier: t, keys: have[:int(n)], rate: r})
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

// fit describes how a tier's load per key compares with its limits over
// one window, so that a person can tell, before the run, what it will show.
func fit(l tierLoad, window time.Duration) string {
	perKey := l.rate / float64(len(l.keys)) * window.Seconds()
	cmp := func(limit int) string {
		if perKey > float64(limit) {
			return "over"
		}
		return "within"
	}
	return fmt.Sprintf("%s: %d keys, %.4g req/s each = %.4g per key per %v window: %s the NORMAL limit %d, %s the DEGRADED limit %d",
		l.tier.Name, len(l.keys), l.rate/float64(len(l.keys)), perKey, window,
		cmp(l.tier.Burst), l.tier.Burst, cmp(l.tier.Degraded), l.tier.Degraded)
}

// recordTiers returns the Record tiers of loads, without counts.
func recordTiers(loads []tierLoad) []timeline.Tier {
	out := make([]timeline.Tier, len(loads))
	for i, l := range loads {
		out[i] = timeline.Tier{
			Name: l.tier.Name, Keys: len(l.keys), Rate: l.rate,
			Burst: l.tier.Burst, Limit: l.tier.Limit, Degraded: l.tier.Degraded,
		}
	}
	return out
}
