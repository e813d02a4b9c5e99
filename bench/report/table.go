package main

import (
	"bufio"
	"bytes"
	"fmt"
	"math"
	"os"
	"slices"
	"strconv"
	"strings"

	"github.com/tierlimit/tierlimit/bench/loadreport"
)

// Markers around the generated part of the README's benchmark section.
const (
	beginMarker = "<!-- bench:begin -->"
	endMarker   = "<!-- bench:end -->"
	// sectionTitle heads the README section written when it is missing.
	sectionTitle = "## Benchmark: cluster vs central Redis vs no limiter"
)

// Designs compared, as named in runs.tsv.
const (
	designFloor = "floor"
	designRedis = "redis"
	designTL    = "tierlimit"
)

// Loads, as named in runs.tsv.
const (
	loadEnterprise = "enterprise"
	loadMixed      = "mixed"
)

var designLabel = map[string]string{
	designFloor: "no limiter (floor)",
	designRedis: "central Redis",
	designTL:    "tierlimit cluster",
}

// exact reports whether every key of the tier was admitted exactly its
// bound, with nothing left undecided.
func exact(t loadreport.TierAccuracy) bool {
	return t.Bound > 0 && t.AdmittedMin == uint64(t.Bound) && t.AdmittedMax == uint64(t.Bound) &&
		t.Undecided == 0 && t.Unsaturated == 0 && t.Stale == 0
}

// result is one line of runs.tsv and its report.
type result struct {
	kind        string // load or accuracy
	load        string // of a load run: enterprise or mixed
	design      string
	variant     string // flags that set this configuration apart, if any
	nodes       int
	concurrency int
	fallbacks   string // decided without the count: fail-opens or local fallbacks; "-" when not applicable
	others      string // percent of the machine's CPUs other programs used during the run
	rep         *loadreport.Report
}

// fallbackShare returns the fallbacks as a share of the requests, and
// whether the count is known.
func (r *result) fallbackShare() (float64, bool) {
	n, err := strconv.ParseUint(r.fallbacks, 10, 64)
	if err != nil || r.rep.Requests == 0 {
		return 0, false
	}
	return float64(n) / float64(r.rep.Requests), true
}

// fallbackCell returns the fallbacks with their share of the requests.
func (r *result) fallbackCell() string {
	share, ok := r.fallbackShare()
	if !ok || share == 0 {
		return r.fallbacks
	}
	n, _ := strconv.ParseUint(r.fallbacks, 10, 64)
	return fmt.Sprintf("%s (%.1f%%)", thousands(float64(n)), 100*share)
}

// label names the configuration in the tables.
func (r *result) label() string {
	if r.variant != "" {
		return designLabel[r.design] + ", `" + r.variant + "`"
	}
	return designLabel[r.design]
}

// readRuns reads runs.tsv: kind[:load], design[:variant], nodes,
// concurrency, report path, fallbacks, others, tab-separated.
func readRuns(path string) ([]result, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var runs []result
	sc := bufio.NewScanner(bytes.NewReader(data))
	for line := 1; sc.Scan(); line++ {
		f := strings.Split(sc.Text(), "\t")
		if len(f) == 1 && f[0] == "" {
			continue
		}
		if len(f) != 7 {
			return nil, fmt.Errorf("%s:%d: %d fields, want 7", path, line, len(f))
		}
		r := result{fallbacks: f[5], others: f[6]}
		r.kind, r.load, _ = strings.Cut(f[0], ":")
		if r.kind == "load" && r.load == "" {
			r.load = loadEnterprise
		}
		r.design, r.variant, _ = strings.Cut(f[1], ":")
		if _, ok := designLabel[r.design]; !ok {
			return nil, fmt.Errorf("%s:%d: unknown design %q", path, line, r.design)
		}
		if r.nodes, err = strconv.Atoi(f[2]); err != nil {
			return nil, fmt.Errorf("%s:%d: nodes: %w", path, line, err)
		}
		if r.concurrency, err = strconv.Atoi(f[3]); err != nil {
			return nil, fmt.Errorf("%s:%d: concurrency: %w", path, line, err)
		}
		if r.rep, err = loadreport.ReadFile(f[4]); err != nil {
			return nil, fmt.Errorf("%s:%d: %w", path, line, err)
		}
		runs = append(runs, r)
	}
	return runs, sc.Err()
}

// readMeta reads key=value lines, keeping their order.
func readMeta(path string) ([][2]string, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var out [][2]string
	for line := range strings.SplitSeq(string(data), "\n") {
		k, v, ok := strings.Cut(line, "=")
		if ok && strings.TrimSpace(k) != "" {
			out = append(out, [2]string{strings.TrimSpace(k), strings.TrimSpace(v)})
		}
	}
	return out, nil
}

// writeTable renders the runs and writes them to out and, if readme is not
// empty, into its bench section.
func writeTable(runsPath, metaPath, out, readme string) error {
	runs, err := readRuns(runsPath)
	if err != nil {
		return err
	}
	meta, err := readMeta(metaPath)
	if err != nil {
		return err
	}
	md := render(runs, meta)
	if err := os.WriteFile(out, []byte("# Benchmark results\n\nWritten by `bench/run.sh`; the README's benchmark section holds the same text.\n\n"+md), 0o644); err != nil {
		return err
	}
	if readme == "" {
		return nil
	}
	old, err := os.ReadFile(readme)
	if err != nil {
		return err
	}
	return os.WriteFile(readme, replaceSection(old, md), 0o644)
}

// replaceSection returns doc with the text between the markers replaced by
// md, or with the section appended when the markers are missing.
func replaceSection(doc []byte, md string) []byte {
	s := string(doc)
	i := strings.Index(s, beginMarker)
	j := strings.Index(s, endMarker)
	if i >= 0 && j > i {
		return []byte(s[:i+len(beginMarker)] + "\n" + md + s[j:])
	}
	s = strings.TrimRight(s, "\n") + "\n\n" + sectionTitle + "\n\n" + beginMarker + "\n" + md + endMarker + "\n"
	return []byte(s)
}

// render returns the markdown of the results: the machine, the load table,
// the targets and the accuracy table.
func render(runs []result, meta [][2]string) string {
	var b strings.Builder
	if len(meta) > 0 {
		parts := make([]string, len(meta))
		for i, kv := range meta {
			parts[i] = kv[0] + ": " + kv[1]
		}
		b.WriteString("_" + strings.Join(parts, "; ") + "._\n\n")
	}

	floor := floors(runs)
	b.WriteString("| load | design | nodes | c | req/s | of floor | of floor, same nodes | p50 | p99 | p50 vs floor | p99 vs floor | 429 | errors | fallbacks | others' CPU |\n")
	b.WriteString("|---|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|\n")
	rps := func(l *loadreport.Report) float64 { return l.RequestsPerSecond }
	for _, r := range runs {
		if r.kind != "load" {
			continue
		}
		f := floor[floorKey{r.load, r.concurrency, 1}]
		fmt.Fprintf(&b, "| %s | %s | %d | %d | %s | %s | %s | %s | %s | %s | %s | %d | %d | %s | %s%% |\n",
			r.load, r.label(), r.nodes, r.concurrency, thousands(r.rep.RequestsPerSecond),
			percentOf(r.rep.RequestsPerSecond, f, rps),
			percentOf(r.rep.RequestsPerSecond, floor[floorKey{r.load, r.concurrency, r.nodes}], rps),
			micros(r.rep.Latency.P50), micros(r.rep.Latency.P99),
			ratioOf(r.rep.Latency.P50, f, func(l *loadreport.Report) float64 { return l.Latency.P50 }),
			ratioOf(r.rep.Latency.P99, f, func(l *loadreport.Report) float64 { return l.Latency.P99 }),
			r.rep.Status.Limited, r.rep.Status.Errors(), r.fallbackCell(), r.others)
	}
	b.WriteString("\nLoads: enterprise, fresh enterprise keys whose limit never binds, so every request is a full check; " +
		"mixed, 60% free, 30% pro and 10% enterprise requests, so most free requests are refusals. " +
		"Of floor: throughput against one bare process; of floor, same nodes: against as many bare processes as the configuration has nodes, " +
		"round-robin like it, which takes out what running several processes on these 2 CPUs costs by itself. " +
		"c = concurrent loadgen workers, each with one request in flight, round-robin over the nodes. " +
		"Fallbacks: checks decided without the shared count (central Redis: failed open after an error or its 20 ms deadline; " +
		"tierlimit: decided locally after a failed or late forward, or while the peer's breaker was open). " +
		"Errors: any status but 200 and 429, and transport errors. Others' CPU: share of the machine's CPUs that programs other than this " +
		"benchmark used during the run (the machine is shared: each run first waits up to a minute for it to be idle, and a run above 15% is redone once, keeping the cleaner try).\n")

	b.WriteString("\n**Targets**, as measured:\n\n")
	for _, line := range targets(runs, floor) {
		b.WriteString("- " + line + "\n")
	}

	b.WriteString("\n**Accuracy**: fresh keys, 5 per tier, each sent well over its limit L within one window at c = 64, over all nodes:\n\n")
	b.WriteString("| design | nodes | free | pro | enterprise | over-admission | under-admission | fallbacks | verdict |\n")
	b.WriteString("|---|--:|---|---|---|--:|--:|--:|---|\n")
	for _, r := range runs {
		if r.kind != "accuracy" || r.rep.Accuracy == nil {
			continue
		}
		cells := map[string]string{}
		over, under := 0.0, 0.0
		allExact := true
		for _, t := range r.rep.Accuracy.Tiers {
			cells[t.Tier] = accuracyCell(t)
			over, under = math.Max(over, t.OverPercent), math.Max(under, t.UnderPercent)
			allExact = allExact && exact(t)
		}
		verdict := "exact: every key admitted exactly L"
		if !allExact {
			verdict = "not exact"
		}
		fmt.Fprintf(&b, "| %s | %d | %s | %s | %s | %.2f%% | %.2f%% | %s | %s |\n", r.label(), r.nodes,
			orDash(cells["free"]), orDash(cells["pro"]), orDash(cells["enterprise"]), over, under, r.fallbacks, verdict)
	}
	b.WriteString("\nA cell reads admitted per key (min–max) / L, and how many requests each key was sent on average.\n")
	return b.String()
}

// floorKey picks the floor run a run is compared with: same load, same
// concurrency.
type floorKey struct {
	load  string
	c     int
	nodes int
}

// floors returns the floor's load runs by load, concurrency and processes.
func floors(runs []result) map[floorKey]*loadreport.Report {
	out := map[floorKey]*loadreport.Report{}
	for i := range runs {
		if r := &runs[i]; r.kind == "load" && r.design == designFloor {
			out[floorKey{r.load, r.concurrency, r.nodes}] = r.rep
		}
	}
	return out
}

// targets returns one line per target of the issue and tierlimit
// configuration, with the measured figures and whether the target was met.
func targets(runs []result, floor map[floorKey]*loadreport.Report) []string {
	find := func(kind, load, design, variant string, nodes, c int) *result {
		for i := range runs {
			r := &runs[i]
			if r.kind == kind && r.design == design && r.variant == variant && r.nodes == nodes &&
				(kind == "accuracy" || (r.concurrency == c && r.load == load)) {
				return r
			}
		}
		return nil
	}
	// decidedLocally qualifies a figure reached by deciding without the
	// shared count.
	decidedLocally := func(r *result, met bool) string {
		share, ok := r.fallbackShare()
		switch {
		case !ok || share < 0.01:
			return ""
		case met:
			return fmt.Sprintf(", but only because %.0f%% of its requests were decided locally, without their owner (fallbacks)", 100*share)
		}
		return fmt.Sprintf(", with %.0f%% of its requests decided locally, without their owner (fallbacks)", 100*share)
	}
	var variants []string // of tierlimit, in order of appearance
	for _, r := range runs {
		if r.design == designTL && !slices.Contains(variants, r.variant) {
			variants = append(variants, r.variant)
		}
	}
	name := func(variant string) string {
		if variant == "" {
			return "tierlimit"
		}
		return "tierlimit (`" + variant + "`)"
	}
	var out []string
	// Throughput at c = 64, per load: a cluster keeps 75% of the floor,
	// one node 90%.
	for _, load := range []string{loadEnterprise, loadMixed} {
		f := floor[floorKey{load, 64, 1}]
		if f == nil || f.RequestsPerSecond == 0 {
			continue
		}
		for _, n := range []int{1, 3} {
			want := map[int]float64{1: 90, 3: 75}[n]
			rd := find("load", load, designRedis, "", n, 64)
			for _, v := range variants {
				tl := find("load", load, designTL, v, n, 64)
				if tl == nil {
					continue
				}
				pct := 100 * tl.rep.RequestsPerSecond / f.RequestsPerSecond
				same := ""
				if fn := floor[floorKey{load, 64, n}]; n > 1 && fn != nil && fn.RequestsPerSecond > 0 {
					same = fmt.Sprintf(" (%.0f%% of %d bare processes', which keep %.0f%% of one's)", 100*tl.rep.RequestsPerSecond/fn.RequestsPerSecond,
						n, 100*fn.RequestsPerSecond/f.RequestsPerSecond)
				}
				line := fmt.Sprintf("%s load, c = 64, %d node%s: %s keeps **%.0f%%** of the floor's throughput%s (target ≥ %.0f%%): %s%s",
					load, n, plural(n), name(v), pct, same, want, metWord(pct >= want), decidedLocally(tl, pct >= want))
				if rd != nil {
					line += fmt.Sprintf("; central Redis keeps %.0f%%", 100*rd.rep.RequestsPerSecond/f.RequestsPerSecond)
				}
				out = append(out, line+".")
			}
		}
	}
	// Added p99 at c = 1: at most 0.15 ms.
	for _, load := range []string{loadEnterprise, loadMixed} {
		f := floor[floorKey{load, 1, 1}]
		if f == nil {
			continue
		}
		for _, n := range []int{1, 3} {
			rd := find("load", load, designRedis, "", n, 1)
			for _, v := range variants {
				tl := find("load", load, designTL, v, n, 1)
				if tl == nil {
					continue
				}
				add := tl.rep.Latency.P99 - f.Latency.P99
				same := ""
				if fn := floor[floorKey{load, 1, n}]; n > 1 && fn != nil {
					same = fmt.Sprintf(" (%s to %d bare processes', whose p99 is %s)", signedMicros(tl.rep.Latency.P99-fn.Latency.P99), n, micros(fn.Latency.P99))
				}
				line := fmt.Sprintf("%s load, c = 1, %d node%s: %s adds **%s** to the floor's p99%s (target ≤ +150 µs): %s%s",
					load, n, plural(n), name(v), signedMicros(add), same, metWord(add <= 150), decidedLocally(tl, add <= 150))
				if rd != nil {
					line += fmt.Sprintf("; central Redis adds %s", signedMicros(rd.rep.Latency.P99-f.Latency.P99))
				}
				out = append(out, line+".")
			}
		}
	}
	// Accuracy: no over-admission in any tier; under-admission at most 1%
	// of L.
	for _, n := range []int{1, 3} {
		for _, v := range variants {
			a := find("accuracy", "", designTL, v, n, 0)
			if a == nil || a.rep.Accuracy == nil || len(a.rep.Accuracy.Tiers) == 0 {
				continue
			}
			over, under := 0.0, 0.0
			for _, t := range a.rep.Accuracy.Tiers {
				over, under = math.Max(over, t.OverPercent), math.Max(under, t.UnderPercent)
			}
			out = append(out, fmt.Sprintf("Accuracy, %s, %d node%s: over-admission **%.2f%%** at most in any tier (target 0): %s; under-admission **%.2f%%** (target ≤ 1%% of L): %s.",
				name(v), n, plural(n), over, metWord(over == 0), under, metWord(under <= 1)))
		}
	}
	return out
}

func accuracyCell(t loadreport.TierAccuracy) string {
	lim := t.Bound
	if len(t.Limits) > 0 {
		lim = t.Limits[len(t.Limits)-1]
	}
	adm := strconv.FormatUint(t.AdmittedMin, 10)
	if t.AdmittedMax != t.AdmittedMin {
		adm += "–" + strconv.FormatUint(t.AdmittedMax, 10)
	}
	s := fmt.Sprintf("%s / %d (sent %.0f)", adm, lim, t.SentAvg)
	if t.Undecided > 0 {
		s += fmt.Sprintf(", %d undecided", t.Undecided)
	}
	return s
}

func metWord(ok bool) string {
	if ok {
		return "met"
	}
	return "**missed**"
}

func plural(n int) string {
	if n == 1 {
		return ""
	}
	return "s"
}

func orDash(s string) string {
	if s == "" {
		return "–"
	}
	return s
}

// percentOf returns v as a percentage of what get reads from the floor.
func percentOf(v float64, floor *loadreport.Report, get func(*loadreport.Report) float64) string {
	if floor == nil || get(floor) == 0 {
		return "–"
	}
	return fmt.Sprintf("%.0f%%", 100*v/get(floor))
}

// ratioOf returns v as a multiple of what get reads from the floor.
func ratioOf(v float64, floor *loadreport.Report, get func(*loadreport.Report) float64) string {
	if floor == nil || get(floor) == 0 {
		return "–"
	}
	return fmt.Sprintf("×%.2f", v/get(floor))
}

// micros formats a latency given in microseconds.
func micros(us float64) string {
	if us < 1000 {
		return fmt.Sprintf("%.0f µs", us)
	}
	return fmt.Sprintf("%.2f ms", us/1000)
}

func signedMicros(us float64) string {
	if us < 0 {
		return "−" + micros(-us)
	}
	return "+" + micros(us)
}

// thousands formats v rounded, with commas: 12,345.
func thousands(v float64) string {
	s := strconv.FormatInt(int64(math.Round(v)), 10)
	var b strings.Builder
	for i, c := range s {
		if i > 0 && (len(s)-i)%3 == 0 {
			b.WriteByte(',')
		}
		b.WriteRune(c)
	}
	return b.String()
}
