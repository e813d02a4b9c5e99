package main

import (
	"math"
	"slices"
	"time"
)

// The formulas below are memberlist v0.7.0's (util.go), copied so that the
// report can say what a setting does at a size it did not run.

// pushPullScale returns the push/pull interval a member of an n-member
// cluster uses: interval up to 32 members, then one more interval for each
// doubling (3x at 100, 5x at 300).
func pushPullScale(interval time.Duration, n int) time.Duration {
	const threshold = 32
	if n <= threshold {
		return interval
	}
	mult := math.Ceil(math.Log2(float64(n))-math.Log2(threshold)) + 1
	return time.Duration(mult) * interval
}

// retransmitLimit returns how many times a member sends one queued
// broadcast in an n-member cluster: mult * ceil(log10(n+1)).
func retransmitLimit(mult, n int) int {
	return mult * int(math.Ceil(math.Log10(float64(n+1))))
}

// suspicionTimeout returns the shortest time a suspected member of an
// n-member cluster has to refute before it is declared dead: mult *
// max(1, log10(n)) probe intervals. It starts SuspicionMaxTimeoutMult times
// longer and shrinks as other members confirm the suspicion.
func suspicionTimeout(mult, n int, probe time.Duration) time.Duration {
	scale := math.Max(1, math.Log10(math.Max(1, float64(n))))
	return time.Duration(float64(mult) * scale * float64(probe))
}

// expectedPushPullWait returns the mean time until a member that missed a
// state learns it by push/pull, when each member pushes/pulls with one
// random member every scaled interval T. The member's own exchange comes
// after a uniform wait in [0, T); the others pick it at a rate of about one
// per T, an exponential wait of mean T; the first of the two wins, after
// T/e on average (the integral of (1 - t/T) e^(-t/T) over [0, T)), and never
// after more than T.
func expectedPushPullWait(scaled time.Duration) time.Duration {
	return time.Duration(float64(scaled) / math.E)
}

// missProbability returns the chance that one member hears none of the
// copies of a broadcast that every member of an n-member cluster passes on
// limit times to random others: about limit copies reach each member, a
// Poisson count, so none with e^-limit.
func missProbability(limit int) float64 {
	return math.Exp(-float64(limit))
}

// expectedMissingPairs is a naive estimate of how many (member, member)
// pairs of n members that all join at once miss every alive message about
// each other, with memberlist sending each RetransmitMult *
// ceil(log10(n+1)) times: about half the pairs depend on gossip (the
// other half learn each other in the join's push/pull with the seed). It is
// low, because members that know few others yet retire an alive message
// after fewer sends.
func expectedMissingPairs(mult, n int) float64 {
	return float64(n*(n-1)) / 2 * missProbability(retransmitLimit(mult, n))
}

// quantile returns the q-quantile (0 to 1) of ds by the nearest rank, or 0
// for none. It does not change ds.
func quantile(ds []time.Duration, q float64) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	s := slices.Clone(ds)
	slices.Sort(s)
	i := int(math.Ceil(q*float64(len(s)))) - 1
	return s[min(max(i, 0), len(s)-1)]
}

// mean returns the mean of ds, or 0 for none.
func mean(ds []time.Duration) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	var sum time.Duration
	for _, d := range ds {
		sum += d
	}
	return sum / time.Duration(len(ds))
}
