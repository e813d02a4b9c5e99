package main

import (
	"fmt"
	"strings"

	"github.com/tierlimit/tierlimit/bench/loadreport"
)

// Targets, from the issue.
const (
	maxProxyAddedP50 = 200.0  // µs the proxy may add to p50 at c=1
	maxPathAddedP50  = 1000.0 // µs TierLimitMiddleware may add to FastAPI's p50
)

// find returns the run of kind (load or hot) of stack at concurrency c,
// or nil.
func (in *inputs) find(kind, stack string, c int) *result {
	for i := range in.runs {
		r := &in.runs[i]
		if r.kind == kind && r.stack == stack && r.c == c {
			return r
		}
	}
	return nil
}

// accuracy returns the accuracy run of stack, or nil.
func (in *inputs) accuracy(stack string) *result {
	for i := range in.runs {
		r := &in.runs[i]
		if r.kind == kindAccuracy && r.stack == stack {
			return r
		}
	}
	return nil
}

// target is one line of the targets table.
type target struct {
	what, measured string
	// met is nil when the target could not be judged (a run is missing).
	met *bool
	// info marks a row shown for information: the targets are
	// judged on the 500-key runs, the harder, spread case.
	info bool
}

func verdict(ok bool) *bool { return &ok }

// judge returns the targets, each met or missed by the load runs
// over 500 keys, then the same latency targets on the hot-key runs, for
// information.
func judge(in *inputs) []target {
	var out []target

	floor1, proxy1 := in.find(kindLoad, stackFloor, 1), in.find(kindLoad, stackProxy, 1)
	t := target{what: "the proxy adds ≤ 0.2 ms to p50 at c=1"}
	if floor1 != nil && proxy1 != nil {
		added := proxy1.rep.Latency.P50 - floor1.rep.Latency.P50
		t.measured = fmt.Sprintf("%s ms (%s → %s ms)", signedMS(added), ms(floor1.rep.Latency.P50), ms(proxy1.rep.Latency.P50))
		t.met = verdict(added <= maxProxyAddedP50)
	}
	out = append(out, t)

	out = append(out, pathAdded(in, kindLoad, "the FastAPI path (TierLimitMiddleware + node) adds ≤ 1 ms to p50 over bare FastAPI at c=1"))

	tl64, rd64 := in.find(kindLoad, stackTL, 64), in.find(kindLoad, stackRedis, 64)
	t = target{what: "FastAPI + tierlimit beats the Redis stack on throughput at c=64"}
	if tl64 != nil && rd64 != nil {
		a, b := tl64.rep.RequestsPerSecond, rd64.rep.RequestsPerSecond
		t.measured = fmt.Sprintf("%s vs %s req/s (%s)", thousands(a), thousands(b), ratio(a, b))
		t.met = verdict(a > b)
	}
	out = append(out, t)

	for _, c := range []int{1, 64} {
		if t, ok := p99Beats(in, kindLoad, c, "FastAPI + tierlimit beats the Redis stack on p99 at c=%d"); ok {
			out = append(out, t)
		}
	}

	t = target{what: "… while exact: every accuracy key of every tier admitted exactly its limit"}
	if acc := in.accuracy(stackTL); acc != nil && acc.rep.Accuracy != nil {
		ok, summary := exactness(acc.rep)
		t.measured, t.met = summary, verdict(ok)
	}
	out = append(out, t)

	if in.find(kindHot, stackTL, 1) != nil {
		t := pathAdded(in, kindHot, "30 hot keys, for information: the FastAPI path adds ≤ 1 ms to p50 over bare FastAPI at c=1")
		t.info = true
		out = append(out, t)
		if t, ok := p99Beats(in, kindHot, 1, "30 hot keys, for information: FastAPI + tierlimit beats the Redis stack on p99 at c=%d"); ok {
			t.info = true
			out = append(out, t)
		}
	}
	return out
}

// pathAdded judges what TierLimitMiddleware adds to bare FastAPI's p50 at
// c=1 in the runs of kind.
func pathAdded(in *inputs, kind, what string) target {
	t := target{what: what}
	bare1, tl1 := in.find(kind, stackBare, 1), in.find(kind, stackTL, 1)
	if bare1 != nil && tl1 != nil {
		added := tl1.rep.Latency.P50 - bare1.rep.Latency.P50
		t.measured = fmt.Sprintf("%s ms (%s → %s ms)", signedMS(added), ms(bare1.rep.Latency.P50), ms(tl1.rep.Latency.P50))
		t.met = verdict(added <= maxPathAddedP50)
	}
	return t
}

// p99Beats judges the tierlimit stack's p99 against the Redis stack's in
// the runs of kind at c, what a format with c's verb; ok is false when a
// run is missing.
func p99Beats(in *inputs, kind string, c int, what string) (target, bool) {
	tl, rd := in.find(kind, stackTL, c), in.find(kind, stackRedis, c)
	if tl == nil || rd == nil {
		return target{}, false
	}
	a, b := tl.rep.Latency.P99, rd.rep.Latency.P99
	return target{what: fmt.Sprintf(what, c), measured: fmt.Sprintf("%s vs %s ms", ms(a), ms(b)), met: verdict(a < b)}, true
}

// exactness reports whether every tier of an accuracy run was admitted
// exactly its bound, and sums it up.
func exactness(rep *loadreport.Report) (bool, string) {
	ok := true
	var parts []string
	for _, tr := range rep.Accuracy.Tiers {
		if tr.OverPercent != 0 || tr.UnderPercent != 0 || tr.Undecided != 0 || tr.Unsaturated != 0 || tr.Stale != 0 {
			ok = false
		}
		parts = append(parts, fmt.Sprintf("%s %d–%d of %d", tr.Tier, tr.AdmittedMin, tr.AdmittedMax, tr.Bound))
	}
	return ok, "admitted " + strings.Join(parts, ", ")
}
