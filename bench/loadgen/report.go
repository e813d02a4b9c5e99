package main

import (
	"cmp"
	"fmt"
	"io"
	"math"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/tierlimit/tierlimit/bench/loadreport"
)

// distributionPercentiles are the percentiles of the report's latency
// distribution: 50, then 1, 2 and 5 steps of each decade of the tail
// (100 - p = 20, 10, 5, 2, 1, 0.5, …, 0.01), so the points are evenly
// spaced on a plot whose axis is log(1 / (1 - p)).
var distributionPercentiles = [...]float64{50, 80, 90, 95, 98, 99, 99.5, 99.8, 99.9, 99.95, 99.98, 99.99}

// newReport builds the report of a run of p that lasted elapsed and
// counted s. targets are the targets named at the start.
func newReport(p *plan, s *stats, elapsed time.Duration, targets []string, concurrency int) *loadreport.Report {
	o := &s.outcomes
	r := &loadreport.Report{
		Targets:           targets,
		Concurrency:       concurrency,
		ElapsedSeconds:    elapsed.Seconds(),
		Requests:          o.total(),
		RequestsPerSecond: perSecond(o.total(), elapsed),
		Status: loadreport.Status{
			OK: o[outcomeOK], Unauthorized: o[outcomeUnauthorized], Limited: o[outcomeLimited],
			ClientError: o[outcomeClientError], ServerError: o[outcomeServerError], Other: o[outcomeOther],
			TransportError: o[outcomeTransport], Canceled: o[outcomeCanceled],
		},
		Latency:            latency(s.latency),
		PerTarget:          []loadreport.Target{},
		PerTier:            []loadreport.Tier{},
		MissingLimitHeader: s.missingLimit,
		TransportErrors:    []loadreport.ErrorCount{},
		Accuracy:           computeAccuracy(p, s, elapsed),
		Failures:           []string{},
	}
	for name, c := range s.targets {
		r.PerTarget = append(r.PerTarget, loadreport.Target{
			Target: name, Requests: c.total(), OK: c[outcomeOK], Limited: c[outcomeLimited],
			Errors: c[outcomeServerError] + c[outcomeTransport],
		})
	}
	slices.SortFunc(r.PerTarget, func(a, b loadreport.Target) int { return strings.Compare(a.Target, b.Target) })
	for i, t := range p.tiers {
		c := &s.tiers[i]
		r.PerTier = append(r.PerTier, loadreport.Tier{
			Tier: t.name, Requests: c.total(), OK: c[outcomeOK], Limited: c[outcomeLimited],
			Errors: c[outcomeServerError] + c[outcomeTransport],
		})
	}
	for msg, n := range s.errors {
		r.TransportErrors = append(r.TransportErrors, loadreport.ErrorCount{Error: msg, Count: n})
	}
	slices.SortFunc(r.TransportErrors, func(a, b loadreport.ErrorCount) int {
		return cmp.Or(cmp.Compare(b.Count, a.Count), strings.Compare(a.Error, b.Error))
	})
	return r
}

// latency sums up h, which holds the latencies of the responses.
func latency(h *histogram) loadreport.Latency {
	l := loadreport.Latency{
		Count:        h.Count(),
		Mean:         micros(h.Mean()),
		P50:          micros(h.Quantile(0.50)),
		P90:          micros(h.Quantile(0.90)),
		P99:          micros(h.Quantile(0.99)),
		P999:         micros(h.Quantile(0.999)),
		Max:          micros(h.Max()),
		Distribution: []loadreport.Quantile{},
	}
	for i, v := range h.Percentiles(distributionPercentiles[:]) {
		l.Distribution = append(l.Distribution, loadreport.Quantile{Percentile: distributionPercentiles[i], Value: micros(v)})
	}
	return l
}

// perSecond returns n / d in events per second, 0 for no time.
func perSecond(n uint64, d time.Duration) float64 {
	if d <= 0 {
		return 0
	}
	return float64(n) / d.Seconds()
}

// micros returns d in microseconds, to the nanosecond.
func micros(d time.Duration) float64 {
	return float64(d) / float64(time.Microsecond)
}

// failures returns why a run that produced r must exit 1: 5xx or transport
// errors with failOn5xx, a tier over-admitting by more than maxOver percent
// (negative: no check).
func failures(r *loadreport.Report, failOn5xx bool, maxOver float64) []string {
	var out []string
	if failOn5xx && r.Status.ServerError+r.Status.TransportError > 0 {
		out = append(out, fmt.Sprintf("%d 5xx responses and %d transport errors (-fail-on-5xx)",
			r.Status.ServerError, r.Status.TransportError))
	}
	if maxOver >= 0 {
		if tier, over := worstOver(r.Accuracy); over > maxOver {
			out = append(out, fmt.Sprintf("tier %s over-admitted %.2f%%, more than -max-over-admission %g", tier, over, maxOver))
		}
	}
	return out
}

// warnings returns what a reader of r should know besides the numbers.
func warnings(r *loadreport.Report) []string {
	var out []string
	if n := r.Status.Unauthorized; n > 0 {
		out = append(out, fmt.Sprintf("%d requests got 401: the nodes do not know those keys; start them with the config the keys came from (see -gen-config)", n))
	}
	if n := r.MissingLimitHeader; n > 0 {
		out = append(out, fmt.Sprintf("%d responses (200 or 429) had no numeric X-RateLimit-Limit", n))
	}
	if a := r.Accuracy; a != nil {
		for _, t := range a.Tiers {
			if t.Stale > 0 {
				out = append(out, fmt.Sprintf("tier %s: %d accuracy keys look used before the run (X-RateLimit-Remaining never reached limit-1): generate fresh keys with -gen-config", t.Tier, t.Stale))
			}
			if t.Unsaturated > 0 {
				out = append(out, fmt.Sprintf("tier %s: %d accuracy keys got no more decided requests than their bound, so over-admission could not show on them: send more requests or use fewer keys", t.Tier, t.Unsaturated))
			}
			if t.LimitChanged {
				out = append(out, fmt.Sprintf("tier %s: the limit changed during the run (%s)", t.Tier, joinInts(t.Limits)))
			}
		}
		if a.Windows > 1 {
			out = append(out, fmt.Sprintf("the run spanned %d windows: accuracy bounds are the limit × %d", a.Windows, a.Windows))
		}
	}
	return out
}

// writeText prints r as tables.
func writeText(w io.Writer, r *loadreport.Report) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	s := r.Status
	fmt.Fprintf(tw, "requests\t%d in %.3fs = %.1f req/s, %d workers, %d targets\n",
		r.Requests, r.ElapsedSeconds, r.RequestsPerSecond, r.Concurrency, len(r.PerTarget))
	fmt.Fprintf(tw, "status\t200: %d  401: %d  429: %d  other 4xx: %d  5xx: %d  other: %d  transport errors: %d",
		s.OK, s.Unauthorized, s.Limited, s.ClientError, s.ServerError, s.Other, s.TransportError)
	if s.Canceled > 0 {
		fmt.Fprintf(tw, "  canceled: %d", s.Canceled)
	}
	fmt.Fprintln(tw)
	l := r.Latency
	fmt.Fprintf(tw, "latency\tp50 %s  p90 %s  p99 %s  p99.9 %s  max %s  mean %s  (%d responses)\n",
		fmtMicros(l.P50), fmtMicros(l.P90), fmtMicros(l.P99), fmtMicros(l.P999), fmtMicros(l.Max), fmtMicros(l.Mean), l.Count)
	for _, e := range r.TransportErrors {
		fmt.Fprintf(tw, "error\t%d × %s\n", e.Count, e.Error)
	}

	fmt.Fprintln(tw, "\ntarget\trequests\tshare\t200\t429\terrors")
	for _, t := range r.PerTarget {
		fmt.Fprintf(tw, "%s\t%d\t%.1f%%\t%d\t%d\t%d\n", t.Target, t.Requests, share(t.Requests, r.Requests), t.OK, t.Limited, t.Errors)
	}
	fmt.Fprintln(tw, "\ntier\trequests\tshare\t200\t429\terrors")
	for _, t := range r.PerTier {
		fmt.Fprintf(tw, "%s\t%d\t%.1f%%\t%d\t%d\t%d\n", t.Tier, t.Requests, share(t.Requests, r.Requests), t.OK, t.Limited, t.Errors)
	}
	if a := r.Accuracy; a != nil {
		fmt.Fprintf(tw, "\naccuracy\tkeys\tlimit\tbound\tadmitted min/avg/max\tsent avg\tover %%\tunder %%\tundecided\n")
		for _, t := range a.Tiers {
			fmt.Fprintf(tw, "%s\t%d\t%s\t%d\t%d / %.1f / %d\t%.1f\t%.2f\t%.2f\t%d\n",
				t.Tier, t.Keys, joinInts(t.Limits), t.Bound, t.AdmittedMin, t.AdmittedAvg, t.AdmittedMax,
				t.SentAvg, t.OverPercent, t.UnderPercent, t.Undecided)
		}
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	if a := r.Accuracy; a != nil {
		fmt.Fprintf(w, "(accuracy assumes fresh keys; %s;\n %s)\n", accuracySummary(a), strings.ReplaceAll(a.Formula, "; ", ";\n "))
	}
	for _, m := range warnings(r) {
		fmt.Fprintf(w, "warning: %s\n", m)
	}
	if r.Interrupted {
		fmt.Fprintln(w, "interrupted: the numbers cover the run until then")
	}
	for _, f := range r.Failures {
		fmt.Fprintf(w, "FAIL: %s\n", f)
	}
	return nil
}

// share returns 100 × n / total, 0 for an empty total.
func share(n, total uint64) float64 {
	if total == 0 {
		return 0
	}
	return 100 * float64(n) / float64(total)
}

// fmtMicros formats a number of microseconds as a duration to the
// microsecond: "812µs", "1.235ms".
func fmtMicros(us float64) string {
	return (time.Duration(math.Round(us)) * time.Microsecond).String()
}

// joinInts returns ns joined by commas; "-" for none.
func joinInts(ns []int) string {
	if len(ns) == 0 {
		return "-"
	}
	parts := make([]string, len(ns))
	for i, n := range ns {
		parts[i] = fmt.Sprint(n)
	}
	return strings.Join(parts, ",")
}
