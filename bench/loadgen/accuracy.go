package main

import (
	"fmt"
	"math"
	"slices"
	"time"

	"github.com/tierlimit/tierlimit/bench/loadreport"
)

// The accuracy table judges each accuracy key by two bounds that any
// correct limiter meets, whatever its algorithm, provided the key was
// fresh (no hits counted before the run):
//
//   - Upper: a key cannot be admitted more than its limit in each window
//     the run touches. The run of length elapsed touches at most
//     windows = max(1, ceil(elapsed / window)) of the key's windows, since
//     the node anchors a key's windows at its first hit. So
//     bound = L_max × windows, L_max being the largest X-RateLimit-Limit
//     the key's responses carried, and anything admitted above it is
//     over-admission. A run shorter than one window gives bound = L_max.
//   - Lower: the first L_min requests the limiter decides are admitted,
//     since before each of them fewer than L_min hits can have been
//     counted. So expected = min(decided, L_min), L_min being the
//     smallest limit seen, and a shortfall is under-admission.
//
// A key whose limit changed during the run (NORMAL to DEGRADED) is judged
// against the loosest limit for over- and the strictest for under-admission.
// Requests that got no decision (transport errors, 5xx) may have been
// counted by the node without loadgen seeing it; they are reported as
// undecided, and make both figures less certain.
const accuracyFormula = "bound = max X-RateLimit-Limit seen × windows, windows = max(1, ceil(elapsed / window)); " +
	"over-admission = Σ max(0, admitted − bound) / Σ bound; " +
	"under-admission = Σ max(0, min(decided, min limit seen) − admitted) / Σ min(decided, min limit seen)"

// windowsSpanned returns max(1, ceil(elapsed / window)).
func windowsSpanned(elapsed, window time.Duration) int {
	if window <= 0 || elapsed <= window {
		return 1
	}
	return int((elapsed + window - 1) / window)
}

// computeAccuracy judges the accuracy keys of p by what s counted in a run
// that lasted elapsed; see accuracyFormula. It returns nil when the plan
// has no accuracy keys.
func computeAccuracy(p *plan, s *stats, elapsed time.Duration) *loadreport.Accuracy {
	if len(p.accuracy) == 0 {
		return nil
	}
	windows := windowsSpanned(elapsed, p.window)
	rep := &loadreport.Accuracy{
		WindowSeconds:  p.window.Seconds(),
		ElapsedSeconds: elapsed.Seconds(),
		Windows:        windows,
		Formula:        accuracyFormula,
	}
	for _, t := range p.tiers {
		if t.nAccuracy == 0 {
			continue
		}
		ta := loadreport.TierAccuracy{Tier: t.name, Keys: t.nAccuracy}
		var admitted, sent, over, bound, under, expected uint64
		for j := range t.nAccuracy {
			idx := t.firstAccuracy + j
			ka := judgeKey(p.accuracy[idx].key, &s.keys[idx], windows)
			ta.Details = append(ta.Details, ka)
			for _, l := range ka.Limits {
				if !slices.Contains(ta.Limits, l) {
					ta.Limits = append(ta.Limits, l)
				}
			}
			ta.LimitChanged = ta.LimitChanged || len(ka.Limits) > 1
			ta.Bound = max(ta.Bound, ka.Bound)
			if j == 0 || ka.Admitted < ta.AdmittedMin {
				ta.AdmittedMin = ka.Admitted
			}
			ta.AdmittedMax = max(ta.AdmittedMax, ka.Admitted)
			admitted += ka.Admitted
			sent += ka.Sent
			ta.Undecided += ka.Undecided
			if ka.Bound > 0 && ka.Admitted+ka.Limited <= uint64(ka.Bound) {
				ta.Unsaturated++
			}
			if ka.Stale {
				ta.Stale++
			}
			bound += uint64(ka.Bound)
			over += excess(ka.Admitted, uint64(ka.Bound))
			expected += ka.Expected
			under += excess(ka.Expected, ka.Admitted)
		}
		slices.Sort(ta.Limits)
		ta.AdmittedAvg = float64(admitted) / float64(t.nAccuracy)
		ta.SentAvg = float64(sent) / float64(t.nAccuracy)
		ta.OverPercent = percent(over, bound)
		ta.UnderPercent = percent(under, expected)
		rep.Tiers = append(rep.Tiers, ta)
	}
	return rep
}

// judgeKey returns the line of one accuracy key in a run that touched
// windows windows.
func judgeKey(key string, k *keyStats, windows int) loadreport.KeyAccuracy {
	ka := loadreport.KeyAccuracy{
		Key:      key,
		Sent:     k.outcomes.total(),
		Admitted: k.outcomes[outcomeOK],
		Limited:  k.outcomes[outcomeLimited],
		Limits:   slices.Sorted(slices.Values(k.limits)),
	}
	ka.Undecided = ka.Sent - ka.Admitted - ka.Limited - k.outcomes[outcomeUnauthorized] - k.outcomes[outcomeClientError]
	if len(ka.Limits) == 0 {
		return ka // no decision carried a limit: nothing to judge against
	}
	lo, hi := ka.Limits[0], ka.Limits[len(ka.Limits)-1]
	ka.Bound = hi * windows
	ka.Expected = min(ka.Admitted+ka.Limited, uint64(lo))
	ka.OverPercent = percent(excess(ka.Admitted, uint64(ka.Bound)), uint64(ka.Bound))
	ka.UnderPercent = percent(excess(ka.Expected, ka.Admitted), ka.Expected)
	ka.Stale = len(ka.Limits) == 1 && ka.Undecided == 0 && k.maxRemaining >= 0 && k.maxRemaining < lo-1
	return ka
}

// excess returns max(0, a-b).
func excess(a, b uint64) uint64 {
	if a > b {
		return a - b
	}
	return 0
}

// percent returns 100 × part / whole rounded to two decimals, 0 when whole
// is 0.
func percent(part, whole uint64) float64 {
	if whole == 0 {
		return 0
	}
	return math.Round(10000*float64(part)/float64(whole)) / 100
}

// worstOver returns the tier of r with the highest over-admission and its
// percentage; "" and 0 when there is no accuracy table (r is nil).
func worstOver(r *loadreport.Accuracy) (string, float64) {
	if r == nil {
		return "", 0
	}
	tier, worst := "", -1.0
	for _, t := range r.Tiers {
		if t.OverPercent > worst {
			tier, worst = t.Tier, t.OverPercent
		}
	}
	return tier, max(worst, 0)
}

// accuracySummary returns the line printed under the accuracy table r.
func accuracySummary(r *loadreport.Accuracy) string {
	return fmt.Sprintf("windows = max(1, ceil(%.1fs / %gs)) = %d", r.ElapsedSeconds, r.WindowSeconds, r.Windows)
}
