package main

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
)

// defaultMix is the -mix used when none is given.
const defaultMix = "free=70,pro=25,enterprise=5"

// mixEntry is one tier's share of the requests, in percent.
type mixEntry struct {
	tier    string
	percent int
}

// parseMix parses a tier mix such as "free=70,pro=25,enterprise=5": tier
// names with whole percentages that add up to 100. A tier may be given at
// most once; a tier at 0 is allowed and gets no requests. The entries come
// back in the order given.
func parseMix(s string) ([]mixEntry, error) {
	var mix []mixEntry
	seen := make(map[string]bool)
	sum := 0
	for part := range strings.SplitSeq(s, ",") {
		part = strings.TrimSpace(part)
		if part == "" {
			continue
		}
		name, pct, ok := strings.Cut(part, "=")
		name = strings.TrimSpace(name)
		if !ok || name == "" {
			return nil, fmt.Errorf("mix %q: want tier=percent", part)
		}
		if seen[name] {
			return nil, fmt.Errorf("mix: tier %q given twice", name)
		}
		seen[name] = true
		p, err := strconv.Atoi(strings.TrimSpace(pct))
		if err != nil || p < 0 || p > 100 {
			return nil, fmt.Errorf("mix %q: percent must be a whole number from 0 to 100", part)
		}
		sum += p
		mix = append(mix, mixEntry{tier: name, percent: p})
	}
	if len(mix) == 0 {
		return nil, errors.New("mix: empty, want for example " + defaultMix)
	}
	if sum != 100 {
		return nil, fmt.Errorf("mix: percentages add up to %d, want 100", sum)
	}
	return mix, nil
}

// interleave returns the shortest repeating sequence of indices into
// weights in which index t appears weights[t]/g times, g being the greatest
// common divisor of the non-zero weights, spread as evenly as smooth
// weighted round robin spreads them: 70/25/5 gives a cycle of 20 in which
// the 5% tier comes once and the 25% tier every fourth slot or so. Zero
// weights never appear. At least one weight must be positive.
func interleave(weights []int) []int {
	g := 0
	for _, w := range weights {
		g = gcd(g, w)
	}
	total := 0
	reduced := make([]int, len(weights))
	for i, w := range weights {
		reduced[i] = w / g
		total += reduced[i]
	}
	// Smooth weighted round robin: each slot, every index gains its weight;
	// the richest one is chosen and pays the total. Ties go to the lower
	// index, so the result is deterministic.
	current := make([]int, len(weights))
	cycle := make([]int, 0, total)
	for range total {
		best := -1
		for i, w := range reduced {
			if w == 0 {
				continue
			}
			current[i] += w
			if best < 0 || current[i] > current[best] {
				best = i
			}
		}
		current[best] -= total
		cycle = append(cycle, best)
	}
	return cycle
}

// gcd returns the greatest common divisor of a and b; gcd(0, b) is b.
func gcd(a, b int) int {
	for b != 0 {
		a, b = b, a%b
	}
	return a
}

// splitKeys divides n keys among tiers in proportion to weights by the
// largest remainder method (ties to the lower index), then moves keys from
// the tier with the most to any positive-weight tier left with none, so
// that every tier that gets requests has a key: 5 keys at 70/25/5 become
// 3/1/1. It needs n at least the number of positive weights.
func splitKeys(n int, weights []int) ([]int, error) {
	total, active := 0, 0
	for _, w := range weights {
		total += w
		if w > 0 {
			active++
		}
	}
	if n < active {
		return nil, fmt.Errorf("-keys %d is fewer than the %d tiers in the mix", n, active)
	}
	out := make([]int, len(weights))
	left := n
	for i, w := range weights {
		out[i] = n * w / total
		left -= out[i]
	}
	served := make([]bool, len(weights))
	for ; left > 0; left-- {
		best, bestRem := -1, -1
		for i, w := range weights {
			if rem := n * w % total; w > 0 && !served[i] && rem > bestRem {
				best, bestRem = i, rem
			}
		}
		out[best]++
		served[best] = true
	}
	for i, w := range weights {
		if w == 0 || out[i] > 0 {
			continue
		}
		richest := 0
		for j := range out {
			if out[j] > out[richest] {
				richest = j
			}
		}
		out[richest]--
		out[i]++
	}
	return out, nil
}
