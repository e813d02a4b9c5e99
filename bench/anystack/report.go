package main

import (
	"fmt"
	"math"
	"slices"
	"strconv"
	"strings"
)

// Markers around the generated part of docs/anystack.md.
const (
	beginMarker = "<!-- anystack:begin -->"
	endMarker   = "<!-- anystack:end -->"
)

// profileTitles say what each profile the script takes is of, by file
// name, in the order they are shown.
var profileTitles = [][2]string{
	{"proxy-node", "cmd/node -upstream (the proxy) under c=1 load: Go CPU profile, top by self time, then by cumulative time"},
	{"tierlimit-node-c1", "node n1 of the FastAPI + TierLimitMiddleware stack under c=1 load: Go CPU profile, top by self time, then by cumulative time"},
	{"tierlimit-node", "node n1 of the FastAPI + TierLimitMiddleware stack under c=64 load: Go CPU profile, top by self time, then by cumulative time"},
	{"tierlimit-app", "uvicorn 1 of FastAPI + TierLimitMiddleware under c=64 load: cProfile"},
	{"redis-app", "uvicorn 1 of FastAPI + Redis middleware under c=64 load: cProfile"},
}

// sortProfiles orders ps as profileTitles does, unknown names last, and
// returns each with its title.
func sortProfiles(ps []profile) []profile {
	rank := func(name string) int {
		for i, t := range profileTitles {
			if t[0] == name {
				return i
			}
		}
		return len(profileTitles)
	}
	out := slices.Clone(ps)
	slices.SortStableFunc(out, func(a, b profile) int { return rank(a.name) - rank(b.name) })
	return out
}

// profileTitle returns the title of the profile named name.
func profileTitle(name string) string {
	for _, t := range profileTitles {
		if t[0] == name {
			return t[1]
		}
	}
	return name
}

// render writes the results section.
func render(in *inputs) string {
	var b strings.Builder
	b.WriteString("### The run\n\n| | |\n|---|---|\n")
	for _, kv := range in.meta {
		fmt.Fprintf(&b, "| %s | %s |\n", kv[0], cell(kv[1]))
	}

	b.WriteString("\n### Targets\n\n| target | measured | |\n|---|---|---|\n")
	for _, t := range judge(in) {
		v := "not measured"
		switch {
		case t.met == nil:
		case *t.met:
			v = "**met**"
		default:
			v = "**missed**"
		}
		if t.info && t.met != nil {
			v = strings.Trim(v, "*") + " (informational)"
		}
		fmt.Fprintf(&b, "| %s | %s | %s |\n", t.what, orDash(t.measured), v)
	}
	smokeSection(&b, in)

	b.WriteString("\n### (a) The proxy: cmd/node -upstream in front of a Go upstream\n\n")
	b.WriteString("One node, enterprise keys whose limit never binds (every request is a full check, then proxied). ")
	b.WriteString("CPU: seconds used during the measured run by the node, the upstream and loadgen.\n\n")
	loadTable(&b, in, kindLoad, []string{stackFloor, stackProxy}, []string{"node", "upstream", "loadgen"})
	decisionTable(&b, in, stackProxy, kindLoad)
	addedLine(&b, in, "Added by the proxy", stackFloor, stackProxy, "direct")
	uploadTable(&b, in.uploads)

	b.WriteString("\n### (b) FastAPI three ways, 500 keys\n\n")
	b.WriteString("Three uvicorn processes per stack, the load round-robin over them; 500 enterprise keys whose limit never binds. ")
	b.WriteString("CPU: seconds used during the measured run by the three uvicorns, the three nodes, redis-server and loadgen; ")
	b.WriteString("per request: the servers' CPU (all but loadgen) over the requests. ")
	b.WriteString("Missing headers: 200s and 429s without X-RateLimit-Limit, which a limiter that failed open would send.\n\n")
	loadTable(&b, in, kindLoad, []string{stackBare, stackTL, stackRedis}, []string{"app", "node", "redis", "loadgen"})
	overBare(&b, in, kindLoad, []int{1, 64})
	decisionTable(&b, in, stackTL, kindLoad, kindAccuracy)

	if in.find(kindHot, stackTL, 1) != nil || in.find(kindHot, stackRedis, 1) != nil {
		b.WriteString("\n### (b) FastAPI three ways, 30 hot keys, c=1\n\n")
		b.WriteString("The same stacks at c=1 over 30 enterprise keys instead of 500: each key comes to each node often enough ")
		b.WriteString("for the node to hold a lease on it (r_k × τ / N ≥ 1.7, with a key's r_k requests a second, τ = 1 s, N = 3 nodes), ")
		b.WriteString("so that a check can be spent from a lease rather than forwarded (the decisions below show how many were). ")
		b.WriteString("The limit still never binds. Columns as above.\n\n")
		loadTable(&b, in, kindHot, []string{stackBare, stackTL, stackRedis}, []string{"app", "node", "redis", "loadgen"})
		overBare(&b, in, kindHot, []int{1})
		decisionTable(&b, in, stackTL, kindHot)
	}

	b.WriteString("\n### Accuracy\n\n")
	accuracyTable(&b, in)

	if in.find(kindLoad, stackNginx, 1) != nil || in.find(kindLoad, stackNginxAuth, 1) != nil {
		b.WriteString("\n### (c) nginx forward auth: examples/nginx/nginx.conf in front of the Go upstream\n\n")
		b.WriteString("nginx (`worker_processes auto`) in front of the same upstream, with bench/nginx/plain.conf (the shipped file's server, ")
		b.WriteString("no check) and with examples/nginx/nginx.conf as shipped (`auth_request` to one node's /authorize, default flags, ")
		b.WriteString("then the upstream); enterprise keys whose limit never binds. CPU: seconds used during the measured run ")
		b.WriteString("by nginx (master and workers), the node, the upstream and loadgen.\n\n")
		loadTable(&b, in, kindLoad, []string{stackNginx, stackNginxAuth}, []string{"nginx", "node", "upstream", "loadgen"})
		decisionTable(&b, in, stackNginxAuth, kindLoad)
		addedLine(&b, in, "Added by the check", stackNginx, stackNginxAuth, "plain nginx")
		addedLine(&b, in, "Added by nginx with the check over the upstream reached directly (its runs in (a))", stackFloor, stackNginxAuth, "direct")
	}

	if len(in.profiles) > 0 {
		b.WriteString("\n### Profiles\n\nTaken in every run, after the measured runs, under the same load; they show where the time of a missed target goes.\n")
		for _, p := range sortProfiles(in.profiles) {
			fmt.Fprintf(&b, "\n#### %s\n\n", profileTitle(p.name))
			if strings.HasPrefix(p.text, "|") || strings.Contains(p.text, " s profiled (") {
				b.WriteString(strings.TrimSpace(p.text) + "\n") // already markdown (pstats_top.py)
			} else {
				b.WriteString("```\n" + strings.TrimSpace(p.text) + "\n```\n")
			}
		}
	}
	return b.String()
}

// addedLine writes what stack adds to base, at c=1 and c=64, as one line
// starting with title; nothing if no c has both runs.
func addedLine(b *strings.Builder, in *inputs, title, base, stack, baseName string) {
	var added []string
	for _, c := range []int{1, 64} {
		d, p := in.find(kindLoad, base, c), in.find(kindLoad, stack, c)
		if d == nil || p == nil {
			continue
		}
		added = append(added, fmt.Sprintf("c=%d: p50 %s ms, p99 %s ms, throughput %s of %s", c,
			signedMS(p.rep.Latency.P50-d.rep.Latency.P50), signedMS(p.rep.Latency.P99-d.rep.Latency.P99),
			pct(p.rep.RequestsPerSecond, d.rep.RequestsPerSecond), baseName))
	}
	if len(added) > 0 {
		fmt.Fprintf(b, "\n%s: %s.\n", title, strings.Join(added, "; "))
	}
}

// loadTable writes the runs of kind of stacks at c=1 and c=64, with the
// CPU of roles.
func loadTable(b *strings.Builder, in *inputs, kind string, stacks, roles []string) {
	fmt.Fprintf(b, "| stack | c | p50 ms | p99 ms | p99.9 ms | req/s | 200 | 429 | errors | missing headers | CPU s: %s | CPU ms/request | others %% |\n",
		strings.Join(roles, " / "))
	b.WriteString("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n")
	for _, c := range []int{1, 64} {
		for _, s := range stacks {
			r := in.find(kind, s, c)
			if r == nil {
				continue
			}
			l := r.rep.Latency
			var cpus []string
			servers := 0.0
			for _, role := range roles {
				v, ok := r.cpu[role]
				if !ok {
					cpus = append(cpus, "-")
					continue
				}
				cpus = append(cpus, fmt.Sprintf("%.2f", v))
				if role != "loadgen" {
					servers += v
				}
			}
			perReq := "-"
			if r.rep.Requests > 0 {
				perReq = fmt.Sprintf("%.3f", 1000*servers/float64(r.rep.Requests))
			}
			missing := fmt.Sprint(r.rep.MissingLimitHeader)
			if noLimiter[s] {
				missing = "-" // no limiter, no headers
			}
			fmt.Fprintf(b, "| %s | %d | %s | %s | %s | %s | %d | %d | %d | %s | %s | %s | %d |\n",
				stackLabel[s], c, ms(l.P50), ms(l.P99), ms(l.P999), thousands(r.rep.RequestsPerSecond),
				r.rep.Status.OK, r.rep.Status.Limited, r.rep.Status.Errors(), missing,
				strings.Join(cpus, " / "), perReq, r.others)
		}
	}
}

// decisionPaths are the node's decision paths, in the order shown.
var decisionPaths = []string{"local", "lease", "forwarded", "cached", "fallback", "blocked"}

// runLabels name the kinds of runs in the decision tables.
var runLabels = map[string]string{kindLoad: "load, 500 keys", kindHot: "load, 30 hot keys", kindAccuracy: "accuracy"}

// decisionTable writes how the nodes of stack decided in each of its runs
// of kinds: each path's share of the decisions and its mean decision time.
func decisionTable(b *strings.Builder, in *inputs, stack string, kinds ...string) {
	var rows []string
	for _, r := range in.runs {
		if r.stack != stack || len(r.paths) == 0 || !slices.Contains(kinds, r.kind) {
			continue
		}
		var total int64
		for _, d := range r.paths {
			total += d.count
		}
		cells := []string{runLabels[r.kind], fmt.Sprint(r.c), fmt.Sprint(total)}
		for _, p := range decisionPaths {
			c := "-"
			for _, d := range r.paths {
				if d.path == p && d.count > 0 {
					c = fmt.Sprintf("%.1f%% (%.0f µs)", 100*float64(d.count)/float64(total), 1e6*d.seconds/float64(d.count))
				}
			}
			cells = append(cells, c)
		}
		rows = append(rows, "| "+strings.Join(cells, " | ")+" |")
	}
	if len(rows) == 0 {
		return
	}
	who := "the node"
	if stack == stackTL {
		who = "the nodes"
	}
	fmt.Fprintf(b, "\nHow %s decided (tierlimit_decision_duration_seconds, summed over the nodes): each path's share of the decisions, "+
		"and its mean time from reading the key to the decision. local: the node owns the key; lease: spent from a lease its owner granted; "+
		"forwarded: one gRPC round trip to the owner.\n\n", who)
	b.WriteString("| run | c | decisions | " + strings.Join(decisionPaths, " | ") + " |\n")
	b.WriteString("|---|---:|---:|" + strings.Repeat("---:|", len(decisionPaths)) + "\n")
	for _, r := range rows {
		b.WriteString(r + "\n")
	}
}

// overBare writes what each limiter adds to bare FastAPI in the runs of
// kind at each of cs (c=1 first), and the throughput at the last.
func overBare(b *strings.Builder, in *inputs, kind string, cs []int) {
	last := cs[len(cs)-1]
	b.WriteString("\nAdded over bare FastAPI:\n\n| stack |")
	for _, c := range cs {
		fmt.Fprintf(b, " c=%d p50 | c=%d p99 |", c, c)
	}
	fmt.Fprintf(b, " c=%d throughput, %% of bare |\n|---|%s---:|\n", last, strings.Repeat("---:|---:|", len(cs)))
	for _, s := range []string{stackTL, stackRedis} {
		cells := []string{stackLabel[s]}
		for _, c := range cs {
			r, base := in.find(kind, s, c), in.find(kind, stackBare, c)
			if r == nil || base == nil {
				cells = append(cells, "-", "-")
				continue
			}
			cells = append(cells, signedMS(r.rep.Latency.P50-base.rep.Latency.P50)+" ms", signedMS(r.rep.Latency.P99-base.rep.Latency.P99)+" ms")
		}
		r, base := in.find(kind, s, last), in.find(kind, stackBare, last)
		if r != nil && base != nil {
			cells = append(cells, pct(r.rep.RequestsPerSecond, base.rep.RequestsPerSecond))
		} else {
			cells = append(cells, "-")
		}
		fmt.Fprintf(b, "| %s |\n", strings.Join(cells, " | "))
	}
}

// uploadTable writes the upload timings and the proxy's memory.
func uploadTable(b *strings.Builder, ups []upload) {
	if len(ups) == 0 {
		return
	}
	b.WriteString("\nA 200 MB upload (POST, streamed from a file by curl, to the upstream's /upload, which reads and discards it), ")
	b.WriteString("direct and through the proxy; time is the median of the runs. Memory: the proxy node's VmRSS just before the upload ")
	b.WriteString("and its VmHWM (peak RSS) after it, the peak reset (`/proc/<pid>/clear_refs`) before each upload.\n\n")
	b.WriteString("| path | runs | bytes | status | time s (each) | MB/s | node RSS before MB | node peak RSS during MB | peak − before MB |\n")
	b.WriteString("|---|---:|---:|---|---:|---:|---:|---:|---:|\n")
	for _, path := range []string{"direct", "proxy"} {
		var secs []float64
		var codes []string
		var before, peak int64
		var bytes int64
		reset := true
		for _, u := range ups {
			if u.path != path {
				continue
			}
			secs = append(secs, u.seconds)
			codes = append(codes, fmt.Sprint(u.code))
			bytes = u.bytes
			before = max(before, u.rssBefore)
			peak = max(peak, u.peak)
			reset = reset && u.peakReset
		}
		if len(secs) == 0 {
			continue
		}
		med := median(secs)
		each := make([]string, len(secs))
		for i, s := range secs {
			each[i] = fmt.Sprintf("%.3f", s)
		}
		mem := "| - | - | - "
		if path == "proxy" {
			note := ""
			if !reset {
				note = " (peak since start: not reset)"
			}
			mem = fmt.Sprintf("| %.1f | %.1f%s | %+.1f ", mb(before), mb(peak), note, mb(peak)-mb(before))
		}
		fmt.Fprintf(b, "| %s | %d | %d | %s | %.3f (%s) | %.0f %s|\n", path, len(secs), bytes,
			strings.Join(slices.Compact(codes), ", "), med, strings.Join(each, ", "), float64(bytes)/1e6/med, mem)
	}
}

// accuracyTable writes every accuracy run, tier by tier.
func accuracyTable(b *strings.Builder, in *inputs) {
	b.WriteString("Fresh keys, 5 per tier, sent well over their limits at c=64 (loadgen -accuracy-keys; `loadgen -h` states the rules: ")
	b.WriteString("the bound is the limit seen × the windows the run touched, 1 here).\n\n")
	b.WriteString("| stack | tier | limit | admitted min / avg / max | sent per key | over % | under % | undecided | missing headers | exact |\n")
	b.WriteString("|---|---|---:|---|---:|---:|---:|---:|---:|---|\n")
	for _, r := range in.runs {
		if r.kind != kindAccuracy || r.rep.Accuracy == nil {
			continue
		}
		for _, tr := range r.rep.Accuracy.Tiers {
			ex := "yes"
			if tr.OverPercent != 0 || tr.UnderPercent != 0 || tr.Undecided != 0 || tr.Unsaturated != 0 || tr.Stale != 0 {
				ex = "**no**"
			}
			fmt.Fprintf(b, "| %s | %s | %s | %d / %.1f / %d | %.0f | %.2f | %.2f | %d | %d | %s |\n",
				stackLabel[r.stack], tr.Tier, ints(tr.Limits), tr.AdmittedMin, tr.AdmittedAvg, tr.AdmittedMax,
				tr.SentAvg, tr.OverPercent, tr.UnderPercent, tr.Undecided, r.rep.MissingLimitHeader, ex)
		}
	}
}

// ms formats microseconds as milliseconds.
func ms(us float64) string {
	if math.Abs(us) >= 10000 {
		return fmt.Sprintf("%.1f", us/1000)
	}
	return fmt.Sprintf("%.3f", us/1000)
}

// signedMS formats microseconds as milliseconds with a sign.
func signedMS(us float64) string {
	if us >= 0 {
		return "+" + ms(us)
	}
	return ms(us)
}

// pct formats a as a percentage of b.
func pct(a, b float64) string {
	if b == 0 {
		return "-"
	}
	return fmt.Sprintf("%.0f%%", 100*a/b)
}

// ratio formats a / b as "×1.23".
func ratio(a, b float64) string {
	if b == 0 {
		return "-"
	}
	return fmt.Sprintf("×%.2f", a/b)
}

// thousands formats v rounded, with commas between thousands.
func thousands(v float64) string {
	s := strconv.FormatInt(int64(math.Round(v)), 10)
	var b strings.Builder
	for i, c := range s {
		if i > 0 && c != '-' && s[i-1] != '-' && (len(s)-i)%3 == 0 {
			b.WriteByte(',')
		}
		b.WriteRune(c)
	}
	return b.String()
}

// mb converts kB to MB (of 2^20 bytes).
func mb(kb int64) float64 { return float64(kb) / 1024 }

// median returns the median of xs, which must not be empty.
func median(xs []float64) float64 {
	s := slices.Sorted(slices.Values(xs))
	n := len(s)
	if n%2 == 1 {
		return s[n/2]
	}
	return (s[n/2-1] + s[n/2]) / 2
}

// ints formats limits as "20" or "20, 2".
func ints(v []int) string {
	parts := make([]string, len(v))
	for i, x := range v {
		parts[i] = fmt.Sprint(x)
	}
	return strings.Join(parts, ", ")
}

// cell escapes a value for a markdown table cell.
func cell(s string) string { return strings.ReplaceAll(s, "|", "\\|") }

// orDash returns s, or "-" if it is empty.
func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}
