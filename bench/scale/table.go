package main

import (
	"bufio"
	"cmp"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/tierlimit/tierlimit/bench/loadreport"
	"github.com/tierlimit/tierlimit/bench/mdsection"
)

// The markers between which the table command writes in the doc.
const (
	beginMarker = "<!-- scale:begin -->"
	endMarker   = "<!-- scale:end -->"
)

// Paths the Router names in tierlimit_decision_duration_seconds.
const (
	pathLocal     = "local"
	pathLease     = "lease"
	pathForwarded = "forwarded"
	pathFallback  = "fallback"
)

// nRun is everything measured at one cluster size; a nil field is a step
// that left no result.
type nRun struct {
	N         int
	Formation *membersResult
	Health    *healthResult
	Kill      *membersResult
	Leave     *membersResult
	// Snapshots: the machine's counters before the seed started and before
	// the teardown; the idle window; before, during and after the load.
	Start, End            *snapshot
	Idle0, Idle1          *snapshot
	Load0, LoadMid, Load1 *snapshot
	Load                  *loadreport.Report
	Events                *events
	Ring                  *ringTime
	// Died names the nodes that exited without being told to.
	Died []string
	// Notes are the script's remarks on the run (notes.txt), one a line.
	Notes []string
}

// results is a whole run: each size, and what they share.
type results struct {
	Meta  [][2]string
	Runs  []nRun
	Floor *loadreport.Report
	// FloorA and FloorB are the machine's counters around the floor's load.
	FloorA, FloorB *snapshot
	// RingBench is the output lines of go test's BenchmarkRingSet, if run.
	RingBench []string
	// Notes are the script's remarks on the run outside any N (notes.txt).
	Notes []string
}

func runTable(args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("scale table", flag.ContinueOnError)
	fs.SetOutput(stderr)
	dir := fs.String("dir", "", "run directory: n<N>/ per size, ring.json, floor.json, ringbench.txt")
	ns := fs.String("ns", "", "cluster sizes, in order, such as \"10 30 60\"")
	meta := fs.String("meta", "", "key=value lines about the machine and the run")
	out := fs.String("out", "", "markdown file to write")
	doc := fs.String("doc", "", "doc to write the table into, between "+beginMarker+" and "+endMarker+" (optional)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *dir == "" || *ns == "" || *out == "" {
		return errors.New("table: -dir, -ns and -out are required")
	}
	sizes, err := parseSizes(*ns)
	if err != nil {
		return fmt.Errorf("table: -ns: %w", err)
	}
	res, err := loadResults(*dir, sizes, *meta)
	if err != nil {
		return err
	}
	md, problems := render(res)
	if err := os.WriteFile(*out, []byte(md), 0o644); err != nil {
		return fmt.Errorf("write %s: %w", *out, err)
	}
	if *doc != "" {
		b, err := os.ReadFile(*doc)
		if err != nil {
			return err
		}
		next, err := mdsection.Replace(b, beginMarker, endMarker, md)
		if err != nil {
			return fmt.Errorf("%s: %w", *doc, err)
		}
		if err := os.WriteFile(*doc, next, 0o644); err != nil {
			return fmt.Errorf("write %s: %w", *doc, err)
		}
	}
	fmt.Fprint(stdout, md)
	if len(problems) > 0 {
		return errProblems
	}
	return nil
}

// loadResults reads what the script left in dir. A missing file leaves its
// field nil; a file that cannot be decoded is an error.
func loadResults(dir string, sizes []int, metaPath string) (results, error) {
	var res results
	if metaPath != "" {
		m, err := readMeta(metaPath)
		if err != nil {
			return res, err
		}
		res.Meta = m
	}
	var rings []ringTime
	if err := readOptional(filepath.Join(dir, "ring.json"), &rings); err != nil {
		return res, err
	}
	var floor loadreport.Report
	if ok, err := readIfExists(filepath.Join(dir, "floor.json"), &floor); err != nil {
		return res, err
	} else if ok {
		res.Floor = &floor
	}
	var fa, fb snapshot
	okA, err := readIfExists(filepath.Join(dir, "floor0.json"), &fa)
	if err != nil {
		return res, err
	}
	okB, err := readIfExists(filepath.Join(dir, "floor1.json"), &fb)
	if err != nil {
		return res, err
	}
	if okA && okB {
		res.FloorA, res.FloorB = &fa, &fb
	}
	res.Notes = readLines(filepath.Join(dir, "notes.txt"))
	if b, err := os.ReadFile(filepath.Join(dir, "ringbench.txt")); err == nil {
		for _, l := range strings.Split(string(b), "\n") {
			if strings.HasPrefix(l, "BenchmarkRingSet") {
				res.RingBench = append(res.RingBench, strings.Join(strings.Fields(l), " "))
			}
		}
	}
	for _, n := range sizes {
		r := nRun{N: n}
		d := filepath.Join(dir, fmt.Sprintf("n%d", n))
		for _, f := range []struct {
			name string
			set  func() any
		}{
			{"formation.json", func() any { r.Formation = new(membersResult); return r.Formation }},
			{"health.json", func() any { r.Health = new(healthResult); return r.Health }},
			{"kill.json", func() any { r.Kill = new(membersResult); return r.Kill }},
			{"leave.json", func() any { r.Leave = new(membersResult); return r.Leave }},
			{"start.json", func() any { r.Start = new(snapshot); return r.Start }},
			{"end.json", func() any { r.End = new(snapshot); return r.End }},
			{"idle0.json", func() any { r.Idle0 = new(snapshot); return r.Idle0 }},
			{"idle1.json", func() any { r.Idle1 = new(snapshot); return r.Idle1 }},
			{"load0.json", func() any { r.Load0 = new(snapshot); return r.Load0 }},
			{"loadmid.json", func() any { r.LoadMid = new(snapshot); return r.LoadMid }},
			{"load1.json", func() any { r.Load1 = new(snapshot); return r.Load1 }},
			{"load.json", func() any { r.Load = new(loadreport.Report); return r.Load }},
			{"events.json", func() any { r.Events = new(events); return r.Events }},
		} {
			path := filepath.Join(d, f.name)
			if _, err := os.Stat(path); err != nil {
				continue
			}
			if err := readJSON(path, f.set()); err != nil {
				return res, err
			}
		}
		if b, err := os.ReadFile(filepath.Join(d, "died.txt")); err == nil {
			r.Died = strings.Fields(string(b))
		}
		r.Notes = readLines(filepath.Join(d, "notes.txt"))
		for i := range rings {
			if rings[i].Members == n {
				r.Ring = &rings[i]
			}
		}
		res.Runs = append(res.Runs, r)
	}
	return res, nil
}

// readLines returns the lines of path that are not blank; none if it
// cannot be read.
func readLines(path string) []string {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil
	}
	var out []string
	for _, l := range strings.Split(string(b), "\n") {
		if l = strings.TrimSpace(l); l != "" {
			out = append(out, l)
		}
	}
	return out
}

// readIfExists reads path into v if it exists, and reports whether it did.
func readIfExists(path string, v any) (bool, error) {
	if _, err := os.Stat(path); err != nil {
		return false, nil
	}
	return true, readJSON(path, v)
}

// readOptional reads path into v if it exists.
func readOptional(path string, v any) error {
	_, err := readIfExists(path, v)
	return err
}

// readMeta reads key=value lines, in order, skipping blank ones.
func readMeta(path string) ([][2]string, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var out [][2]string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		k, v, ok := strings.Cut(sc.Text(), "=")
		if k = strings.TrimSpace(k); ok && k != "" {
			out = append(out, [2]string{k, strings.TrimSpace(v)})
		}
	}
	return out, sc.Err()
}

// render returns the results as markdown (the run's facts, the table, the
// notes) and the problems it found, which the notes list too.
func render(res results) (string, []string) {
	var b strings.Builder
	if len(res.Meta) > 0 {
		parts := make([]string, len(res.Meta))
		for i, kv := range res.Meta {
			parts[i] = kv[0] + ": " + kv[1]
		}
		b.WriteString("_" + strings.Join(parts, "; ") + "._\n\n")
	}
	b.WriteString("| measure |")
	for _, r := range res.Runs {
		fmt.Fprintf(&b, " N = %d |", r.N)
	}
	b.WriteString("\n|---|")
	for range res.Runs {
		b.WriteString("--:|")
	}
	b.WriteString("\n")
	for _, rw := range rows(res.Floor) {
		b.WriteString("| " + rw.label + " |")
		for i := range res.Runs {
			b.WriteString(" " + rw.cell(&res.Runs[i]) + " |")
		}
		b.WriteString("\n")
	}
	b.WriteString("\n")

	var notes, problems []string
	if f := res.Floor; f != nil {
		machine := ""
		if r := restCell(res.FloorA, res.FloorB); r != "" {
			machine = "; the machine meanwhile: " + r
		}
		notes = append(notes, fmt.Sprintf("Floor (`bench/floor`, one process, no limiter, the same load): %s req/s, p50 %s, p99 %s%s.",
			num(f.RequestsPerSecond, 0), micros(f.Latency.P50), micros(f.Latency.P99), machine))
	}
	notes = append(notes, res.Notes...)
	if len(res.RingBench) > 0 {
		notes = append(notes, "`go test -run '^$' -bench RingSet ./ring` in the same run: "+strings.Join(quoteAll(res.RingBench), "; ")+".")
	}
	for i := range res.Runs {
		r := &res.Runs[i]
		problems = append(problems, r.problems()...)
		for _, n := range r.Notes {
			notes = append(notes, fmt.Sprintf("N = %d: %s", r.N, n))
		}
		if s := r.Formation.stragglers(); s != "" {
			notes = append(notes, fmt.Sprintf("N = %d, formation: %s.", r.N, s))
		}
		if e := r.Events; e != nil && len(e.Warnings) > 0 {
			var ws []string
			for _, w := range e.Warnings[:min(len(e.Warnings), 4)] {
				ws = append(ws, fmt.Sprintf("%d× %q", w.Count, w.Msg))
			}
			more := ""
			if len(e.Warnings) > 4 {
				more = fmt.Sprintf(" and %d more kinds", len(e.Warnings)-4)
			}
			notes = append(notes, fmt.Sprintf("N = %d, warnings and errors in the node logs: %s%s.", r.N, strings.Join(ws, ", "), more))
		}
		if e := r.Events; e != nil && len(e.FalselyFailed) > 0 {
			notes = append(notes, fmt.Sprintf("N = %d, live members some peer declared dead: %s.", r.N, strings.Join(e.FalselyFailed, ", ")))
		}
	}
	for _, n := range notes {
		if !strings.HasSuffix(n, ".") {
			n += "."
		}
		b.WriteString("- " + n + "\n")
	}
	if len(problems) > 0 {
		if len(notes) > 0 {
			b.WriteString("\n")
		}
		b.WriteString("**Problems in this run:**\n\n")
		for _, p := range problems {
			b.WriteString("- " + p + "\n")
		}
	}
	return b.String(), problems
}

// stragglers names the nodes, slowest first and at most three, that took
// more than twice the median node's time and over 5 s to see every member;
// "" for none.
func (m *membersResult) stragglers() string {
	if m == nil {
		return ""
	}
	type took struct {
		name string
		s    float64
	}
	var slow []took
	for n, s := range m.Ring.PerNode {
		if s > 2*m.Ring.Median && s > 5 {
			slow = append(slow, took{n, s})
		}
	}
	if len(slow) == 0 {
		return ""
	}
	slices.SortFunc(slow, func(a, b took) int { return cmp.Or(cmp.Compare(b.s, a.s), strings.Compare(a.name, b.name)) })
	var parts []string
	for _, t := range slow[:min(len(slow), 3)] {
		parts = append(parts, t.name+" took "+secs(t.s))
	}
	more := ""
	if len(slow) > 3 {
		more = fmt.Sprintf(" and %d more", len(slow)-3)
	}
	return strings.Join(parts, ", ") + more + ", the median node " + secs(m.Ring.Median)
}

// quoteAll puts each of ss in backquotes.
func quoteAll(ss []string) []string {
	out := make([]string, len(ss))
	for i, s := range ss {
		out[i] = "`" + s + "`"
	}
	return out
}

// problems lists what went wrong at this size.
func (r *nRun) problems() []string {
	var out []string
	p := func(format string, args ...any) {
		out = append(out, fmt.Sprintf("N = %d: ", r.N)+fmt.Sprintf(format, args...))
	}
	waited := func(what string, m *membersResult) {
		switch {
		case m == nil:
			p("%s: no result", what)
		case !m.Ring.complete():
			p("%s: %d of %d nodes did not get there within %s (%s)", what, m.Ring.Want-m.Ring.Met, m.Ring.Want, m.Timeout, strings.Join(m.Ring.Missing, ", "))
		}
	}
	waited("formation", r.Formation)
	waited("kill -9", r.Kill)
	waited("graceful leave", r.Leave)
	if h := r.Health; h == nil {
		p("admin writes: no result")
	} else {
		for i, w := range h.Writes {
			if !w.Applied.complete() {
				p("admin write %d (%s to %s): %d of %d nodes did not apply it within %s", i+1, w.Status, w.To, w.Applied.Want-w.Applied.Met, w.Applied.Want, h.Timeout)
			}
		}
		if !h.Agree {
			p("after the admin writes, nodes showing another state: %s", strings.Join(h.Disagree, ", "))
		}
	}
	if l := r.Load; l == nil {
		p("load: no loadgen report")
	} else if s := l.Status; s.Errors() > 0 {
		p("load: %d requests were neither 200 nor 429 (5xx %d, transport errors %d, 401 %d, other 4xx %d, other %d)",
			s.Errors(), s.ServerError, s.TransportError, s.Unauthorized, s.ClientError, s.Other)
	}
	if len(r.Died) > 0 {
		p("nodes exited by themselves: %s", strings.Join(r.Died, ", "))
	}
	if e := r.Events; e != nil && e.Crashes > 0 {
		p("%d panics, fatal errors or data races in the node logs", e.Crashes)
	}
	return out
}
