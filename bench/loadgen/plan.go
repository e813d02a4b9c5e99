package main

import (
	"fmt"
	"strings"
	"time"
)

// maxAccuracyKeys bounds -accuracy-keys, per tier.
const maxAccuracyKeys = 10_000

// maxKeys bounds -keys.
const maxKeys = 1_000_000

// plan decides, from nothing but its sequence number, which key the i-th
// request of a run carries and which target it goes to. The same flags give
// the same requests, so a run with -n sends an exact, known number of
// requests to every key. A plan is immutable and safe for concurrent use.
//
// Tiers take turns in the cycle interleave builds from the mix; within a
// tier, keys take turns in order. Each key's successive requests move one
// target along, starting from a target that depends on the key, so every
// key's requests and the load as a whole spread evenly over the targets.
type plan struct {
	tiers []planTier
	// cycle holds, per slot, an index into tiers; rank holds how often the
	// slot's tier came earlier in the cycle, so a tier's k-th request is
	// found without counting.
	cycle []int
	rank  []int
	// perCycle holds how often each tier comes in one cycle.
	perCycle []int
	// accuracy lists the accuracy keys of all tiers, tier by tier; their
	// index here is the index a result carries.
	accuracy []accuracyKey
	window   time.Duration
}

// planTier is one tier with a positive share of the requests.
type planTier struct {
	name string
	// limits are from -config, burst and degraded filled in.
	limits tierSpec
	// keys holds the accuracy keys first, then the load keys.
	keys      []string
	nAccuracy int
	// firstAccuracy is the index in plan.accuracy of keys[0], if nAccuracy > 0.
	firstAccuracy int
	// keyBase is the number of keys in earlier tiers, to spread keys of
	// different tiers over different targets.
	keyBase int
}

// accuracyKey is a key whose admissions are counted exactly.
type accuracyKey struct {
	key  string
	tier int
}

// pick is what the plan says about one request.
type pick struct {
	tier int
	key  string
	// accuracy is the key's index in plan.accuracy, or -1.
	accuracy int
	// target is reduced modulo the number of targets to choose one.
	target uint64
}

// newPlan builds the plan for a run. Limits and the window come from cfg
// (-config), keys from keys (-keys-file, else cfg too), in the order
// tiersFile.keysOf gives. Each tier in the mix with a positive share gets
// nAccuracy accuracy keys and then its load keys: all its other keys when
// nKeys is 0, else its share of nKeys as splitKeys divides them. Accuracy
// keys take their turn with the load keys, so they see the same traffic.
func newPlan(cfg, keys tiersFile, mix []mixEntry, nKeys, nAccuracy int) (*plan, error) {
	p := &plan{window: cfg.window()}
	var weights []int
	for _, m := range mix {
		limits, ok := cfg.tier(m.tier)
		if !ok {
			return nil, fmt.Errorf("mix: tier %q is not in the config (tiers: %s)", m.tier, strings.Join(cfg.tierNames(), ", "))
		}
		if m.percent == 0 {
			continue
		}
		p.tiers = append(p.tiers, planTier{name: m.tier, limits: limits})
		weights = append(weights, m.percent)
	}
	var shares []int
	if nKeys > 0 {
		var err error
		if shares, err = splitKeys(nKeys, weights); err != nil {
			return nil, err
		}
	}
	base := 0
	for i := range p.tiers {
		t := &p.tiers[i]
		have := keys.keysOf(t.name)
		want := len(have)
		if shares != nil {
			want = nAccuracy + shares[i]
		}
		if want = max(want, nAccuracy, 1); len(have) < want {
			return nil, fmt.Errorf("tier %q: need %d keys (%d accuracy + %d load), the keys file has %d; write a config with more keys using -gen-config",
				t.name, want, nAccuracy, want-nAccuracy, len(have))
		}
		t.keys = have[:want]
		t.nAccuracy = nAccuracy
		t.firstAccuracy = len(p.accuracy)
		t.keyBase = base
		base += want
		for _, k := range have[:nAccuracy] {
			p.accuracy = append(p.accuracy, accuracyKey{key: k, tier: i})
		}
	}
	p.cycle = interleave(weights)
	p.perCycle = make([]int, len(p.tiers))
	p.rank = make([]int, len(p.cycle))
	for s, t := range p.cycle {
		p.rank[s] = p.perCycle[t]
		p.perCycle[t]++
	}
	return p, nil
}

// pick returns the key and target of the i-th request, i from 0.
func (p *plan) pick(i uint64) pick {
	n := uint64(len(p.cycle))
	slot := i % n
	ti := p.cycle[slot]
	t := &p.tiers[ti]
	k := i/n*uint64(p.perCycle[ti]) + uint64(p.rank[slot]) // the tier's k-th request
	nk := uint64(len(t.keys))
	j := k % nk
	pk := pick{
		tier:     ti,
		key:      t.keys[j],
		accuracy: -1,
		target:   uint64(t.keyBase) + j + k/nk,
	}
	if j < uint64(t.nAccuracy) {
		pk.accuracy = t.firstAccuracy + int(j)
	}
	return pk
}

// tierNames returns the names of the plan's tiers, in plan order.
func (p *plan) tierNames() []string {
	names := make([]string, len(p.tiers))
	for i, t := range p.tiers {
		names[i] = t.name
	}
	return names
}
