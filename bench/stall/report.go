package main

import (
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"
)

// The markers around the part of docs/stall.md that render writes.
const (
	beginMarker = "<!-- stall:begin -->"
	endMarker   = "<!-- stall:end -->"
)

// variantNames says where a variant's requests went.
var variantNames = map[string]string{
	"others": "the 2 other nodes",
	"all":    "all 3 nodes",
}

func variantName(v string) string {
	if n, ok := variantNames[v]; ok {
		return n
	}
	return v
}

// render returns the results of run as markdown: the run's facts, then
// one table per question.
func render(run Capture, res []KeyResult) string {
	var b strings.Builder
	p := run.Plan
	fmt.Fprintf(&b, "_date: %s; machine: %s; code: %s; mode: %s._\n\n", run.Date.UTC().Format("2006-01-02 15:04 UTC"), run.Machine, run.Commit, run.Mode)
	fmt.Fprintf(&b, "Command: `%s`\n\n", run.Command)
	fmt.Fprintf(&b, "3 `cmd/node` processes (%s), default flags; window %s; the owner, %s, stopped (SIGSTOP) %s into the keys' first window for %s, then SIGCONT. "+
		"Each key %.0f requests/s, each request in its own goroutine, client timeout %s, loaded for %d window(s) from its first request. "+
		"Probes: a key's next request after SIGCONT + %s goes to the owner (until one is admitted, at most %d); a witness key is loaded like its key until SIGCONT, then idle, and probed at SIGCONT + %s.\n\n",
		nodeList(run.Nodes), secs(run.Window), run.Owner, secs(run.Stop.Sub(run.T0)), secs(run.Cont.Sub(run.Stop)),
		p.Rate, secs(p.Timeout), p.Windows, secs(p.ProbeAfter), maxProbes, secs(p.WitnessProbeAfter))

	b.WriteString("**Admitted per window**, by the time each request was sent; windows start at the key's first request. " +
		"Reference: what one sliding-window store with the cluster's counting (`bucket.Store`), never stalled, admits of the same requests. " +
		"First 200: when the first request admitted in the window was sent, from the window's start.\n\n")
	b.WriteString("| requests to | key | L | window | offered | admitted | min(L, offered) | reference | 429 | no answer | first 200 | reference's first |\n")
	b.WriteString("|---|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|\n")
	for _, r := range res {
		for _, w := range r.Windows {
			fmt.Fprintf(&b, "| %s | %s | %d | %d | %d | %d | %d | %d | %d | %d | %s | %s |\n", variantName(r.Key.Variant), r.Key.Role, r.Key.Limit,
				w.Window, w.Offered, w.Admitted, min(r.Key.Limit, w.Offered), w.Reference, w.Refused, w.NoAnswer, since(w.FirstAdmitted), since(w.FirstReference))
		}
	}

	b.WriteString("\n**The stall.** During: requests sent while the owner was stopped. After: from SIGCONT to the end of that window; " +
		"a needless 429 is one the reference admits. Limits: the X-RateLimit-Limit values answered (value ×count).\n\n")
	b.WriteString("| requests to | key | during: sent | 200 | 429 | no answer | longest 429 run | Limit during | after: needless 429 | longest needless run | Limit in the 3 s after |\n")
	b.WriteString("|---|---|--:|--:|--:|--:|--:|---|--:|--:|---|\n")
	for _, r := range res {
		if r.Key.Witness {
			continue
		}
		d, a := r.During, r.After
		fmt.Fprintf(&b, "| %s | %s | %d | %d | %d | %d | %s | %s | %d | %s | %s |\n", variantName(r.Key.Variant), r.Key.Role,
			d.Sent, d.Admitted, d.Refused, d.NoAnswer, runText(d.Longest), limits(d.Limits), a.Needless, runText(a.LongestNeedless), limits(a.Limits))
	}

	b.WriteString(ownerWaits(run, res))

	b.WriteString("\n**Retry-After.** Kept: nothing was admitted before the moment (the 429's arrival + Retry-After) and the first request answered after it was admitted. " +
		"Broken: the first answered after it was refused. Early: a request sent before that moment was admitted, so the header said to wait longer than needed " +
		"(beyond rounding: sent even before the 429's send time + Retry-After − 1 s). Untested: the run ended first.\n\n")
	b.WriteString("| requests to | key | 429s | kept | broken (refused at another node) | broken: next 200 after the moment | early (beyond rounding) | early by, median / max | untested |\n")
	b.WriteString("|---|---|--:|--:|--:|--:|--:|--:|--:|\n")
	for _, r := range res {
		if r.Key.Witness {
			continue
		}
		t := r.Retry
		late := "–"
		if t.Broken > 0 {
			late = "≤ " + secs(t.MaxLate)
			if t.MaxLate < 0 {
				late = "never"
			}
		}
		excess := "–"
		if t.Early > 0 {
			excess = secs(t.MedianExcess) + " / " + secs(t.MaxExcess)
		}
		fmt.Fprintf(&b, "| %s | %s | %d | %d | %d (%d) | %s | %d (%d) | %s | %d |\n", variantName(r.Key.Variant), r.Key.Role,
			t.Refusals, t.Kept, t.Broken, t.BrokenOtherNode, late, t.Early, t.EarlyBeyondRound, excess, t.Untested)
	}

	b.WriteString("\n**Remaining.** A 200's X-RateLimit-Remaining r promises that r requests sent now are admitted: over-stated if, of the next r requests answered in the same window, " +
		"more were refused than requests in flight could have spent (shortfall). Its RateLimit field's t promises that no more than r fit until t seconds have passed: " +
		"under-stated if more than r of the requests sent within t − 1 s were admitted. Headers contradicting each other: a field missing, q ≠ Limit, r ≠ Remaining, " +
		"and on a 429 t ≠ Retry-After or Reset more than a second off Retry-After.\n\n")
	b.WriteString("| requests to | key | 200s with r > 0 tested | over-stated (refused at another node) | max shortfall | 200s with a t | under-stated | worst under-statement | headers contradicting each other |\n")
	b.WriteString("|---|---|--:|--:|--:|--:|--:|---|--:|\n")
	for _, r := range res {
		if r.Key.Witness {
			continue
		}
		m, f := r.Rem, r.Refill
		worst := "–"
		if f.Under > 0 {
			worst = fmt.Sprintf("%s said r=%d, t=%d; %d admitted", f.WorstNode, f.Worst.Promised, f.Worst.T, f.Worst.Admitted)
		}
		fmt.Fprintf(&b, "| %s | %s | %d | %d (%d) | %d | %d | %d | %s | %s |\n", variantName(r.Key.Variant), r.Key.Role,
			m.Promises, m.Broken, m.OtherNode, m.MaxShortfall, f.Promises, f.Under, worst, problems(r.Problems))
	}

	b.WriteString("\n**The owner's count after the stall**, read from the owner's answer to a probe (X-RateLimit-Limit − X-RateLimit-Remaining, the probe included; " +
		"exact in a first window), against the 200s the client received in that window up to the probe, the probe included. " +
		"For a key still loaded, the difference also holds the hits leased to the other nodes and not spent yet; a witness has been idle longer than a lease lasts, so its difference is hits counted that no client received.\n\n")
	b.WriteString("| requests to | key | probe sent | answer | owner's count | 200s received | counted, not received |\n")
	b.WriteString("|---|---|--:|---|--:|--:|--:|\n")
	for _, r := range res {
		if !r.HasOwner {
			continue
		}
		o := r.Owner
		recs := keyRecords(run.Records, r.Key)
		answer, count, extra := "429 (count ≥ Limit)", fmt.Sprintf("≥ %d", o.Counted), fmt.Sprintf("≥ %d", o.Extra)
		sent := "–"
		if o.Probe >= 0 {
			p := recs[o.Probe]
			answer = fmt.Sprintf("200, Limit %d, Remaining %d", p.H.Limit, p.H.Remaining)
			count, extra = fmt.Sprint(o.Counted), fmt.Sprint(o.Extra)
			sent = "SIGCONT + " + secs(p.Sent.Sub(run.Cont))
		}
		fmt.Fprintf(&b, "| %s | %s | %s | %s | %s | %d | %s |\n", variantName(r.Key.Variant), r.Key.Role, sent, answer, count, o.Received, extra)
	}

	b.WriteString("\n" + watchText(run) + "\n")
	return b.String()
}

// ownerWaits tells what became of the requests sent to the owner while it
// was stopped, key by key, or nothing if none were.
func ownerWaits(run Capture, res []KeyResult) string {
	var parts []string
	for _, r := range res {
		sent, answered, gaveUp := 0, 0, 0
		var longest time.Duration
		for _, q := range keyRecords(run.Records, r.Key) {
			if q.Node != run.Owner || q.Sent.Before(run.Stop) || !q.Sent.Before(run.Cont) {
				continue
			}
			sent++
			if q.Answered() {
				answered++
				longest = max(longest, q.Done.Sub(q.Sent))
			} else {
				gaveUp++
			}
		}
		if sent > 0 {
			parts = append(parts, fmt.Sprintf("%s, %s: %d, of which %d answered after SIGCONT (the longest after %s) and %d given up",
				variantName(r.Key.Variant), r.Key.Role, sent, answered, secs(longest), gaveUp))
		}
	}
	if len(parts) == 0 {
		return ""
	}
	return "\nRequests sent to the stopped owner: " + strings.Join(parts, "; ") + ".\n"
}

// watchText tells how the observer saw the owner around the stall, and how
// many checks each node decided locally.
func watchText(run Capture) string {
	var parts []string
	for _, s := range run.Watch.Seen {
		parts = append(parts, fmt.Sprintf("%s from SIGSTOP %+.1f s", s.State, s.Since.Sub(run.Stop).Seconds()))
	}
	var fb []string
	for _, name := range slices.Sorted(maps.Keys(run.Fallbacks)) {
		fb = append(fb, fmt.Sprintf("%s %.0f", name, run.Fallbacks[name]))
	}
	return fmt.Sprintf("%s saw %s as: %s. Checks decided locally from SIGSTOP to SIGCONT + %s (tierlimit_local_fallbacks_total): %s.",
		run.Watch.Observer, run.Owner, strings.Join(parts, ", "), secs(afterSpan), strings.Join(fb, ", "))
}

func nodeList(nodes []Node) string {
	var parts []string
	for _, n := range nodes {
		parts = append(parts, n.Name+" "+strings.TrimPrefix(n.URL, "http://"))
	}
	return strings.Join(parts, ", ")
}

// since writes an offset from a window's start, or – for none.
func since(d time.Duration) string {
	if d < 0 {
		return "–"
	}
	return secs(d)
}

// secs writes d in seconds, to a tenth.
func secs(d time.Duration) string {
	return fmt.Sprintf("%.1f s", d.Seconds())
}

// runText writes a run of refusals: how many, over how long.
func runText(r Run) string {
	if r.Refusals == 0 {
		return "0"
	}
	return fmt.Sprintf("%d (%s)", r.Refusals, secs(r.Span()))
}

// limits writes counts by X-RateLimit-Limit, largest limit first.
func limits(m map[int]int) string {
	if len(m) == 0 {
		return "–"
	}
	ks := slices.Sorted(maps.Keys(m))
	slices.Reverse(ks)
	var parts []string
	for _, k := range ks {
		parts = append(parts, fmt.Sprintf("%d ×%d", k, m[k]))
	}
	return strings.Join(parts, ", ")
}

// problems writes counts by problem, or 0.
func problems(m map[string]int) string {
	if len(m) == 0 {
		return "0"
	}
	var parts []string
	for _, k := range slices.Sorted(maps.Keys(m)) {
		parts = append(parts, fmt.Sprintf("%d: %s", m[k], k))
	}
	return strings.Join(parts, "; ")
}
