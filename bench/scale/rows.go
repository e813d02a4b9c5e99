package main

import (
	"fmt"
	"maps"
	"math"
	"slices"

	"github.com/tierlimit/tierlimit/bench/loadreport"
)

// row is one measure of the table: its label and how to show it at a size.
type row struct {
	label string
	cell  func(r *nRun) string
}

// rows returns the table's measures; floor, if not nil, is the load's
// floor.
func rows(floor *loadreport.Report) []row {
	return []row{
		{"every node's ring holds all N members, from starting the other N − 1 (the seed already up): max (median)", func(r *nRun) string {
			return waitCell(r.Formation, func(m *membersResult) *spread { return &m.Ring }, secs)
		}},
		{"… ring rebuilds (\"members changed\") per node meanwhile; their CPU in all, at the rebuild time below", func(r *nRun) string {
			f := r.Formation
			if f == nil || f.Ring.Want == 0 {
				return "-"
			}
			cell := num(float64(f.Changes)/float64(f.Ring.Want), 1)
			if r.Ring != nil {
				cell += "; " + took(float64(f.Changes)*float64(r.Ring.NsPerOp)/1e9)
			}
			return cell
		}},
		{"CPU per node from its start to the idle window (start-up, formation, settling): mean / max", func(r *nRun) string {
			if r.Idle0 == nil || len(r.Idle0.Nodes) == 0 {
				return "-"
			}
			var vs []float64
			var t float64
			for _, ss := range r.Idle0.Nodes {
				v := sum(ss, "process_cpu_seconds_total")
				vs = append(vs, v)
				t += v
			}
			return secs(t/float64(len(vs))) + " / " + secs(maxOf(vs))
		}},
		{"admin `POST /system/health` until every other node applied it: median / max over the writes", func(r *nRun) string {
			h := r.Health
			if h == nil || len(h.Writes) == 0 {
				return "-"
			}
			var each []float64
			for _, w := range h.Writes {
				if !w.Applied.complete() {
					return fmt.Sprintf("a write missed %d nodes (> %s)", w.Applied.Want-w.Applied.Met, h.Timeout)
				}
				each = append(each, w.Applied.Max)
			}
			return fmt.Sprintf("%s / %s (%d writes)", millis(median(each)), millis(maxOf(each)), len(each))
		}},
		{"… of those adoptions, by push/pull rather than gossip", func(r *nRun) string {
			h := r.Health
			if h == nil {
				return "-"
			}
			via, all := 0, 0
			for _, w := range h.Writes {
				via += w.ViaPushPull
				all += w.Applied.Met
			}
			return fmt.Sprintf("%d of %d", via, all)
		}},
		{"`kill -9` of one node until every survivor's ring is without it (its keys have new owners): max (median)", func(r *nRun) string {
			return waitCell(r.Kill, func(m *membersResult) *spread { return &m.Ring }, secs)
		}},
		{"graceful leave (SIGTERM) until it is out of every ring: max (median)", func(r *nRun) string {
			return waitCell(r.Leave, func(m *membersResult) *spread { return &m.Ring }, secs)
		}},
		{"… until every node heard it left, or failed (memberlist) / its process exited", func(r *nRun) string {
			if r.Leave == nil || r.Leave.Left == nil || r.Leave.Exit == nil {
				return "-"
			}
			left := waitCell(r.Leave, func(m *membersResult) *spread { return m.Left }, secs)
			if r.Leave.Left.complete() {
				left = secs(r.Leave.Left.Max)
			}
			if n := len(r.Leave.LeftAsFailed); n > 0 {
				left += fmt.Sprintf(" (%d heard it failed, not left)", n)
			}
			exit := "not within " + r.Leave.Timeout
			if r.Leave.Exit.complete() {
				exit = secs(r.Leave.Exit.Max)
			}
			return left + " / " + exit
		}},
		{"resident memory per node, idle: median / max", func(r *nRun) string {
			return perNode(r.Idle1, "process_resident_memory_bytes", mib)
		}},
		{"resident memory per node, under load", func(r *nRun) string {
			return perNode(r.LoadMid, "process_resident_memory_bytes", mib)
		}},
		{"goroutines per node, idle: median / max", func(r *nRun) string {
			return perNode(r.Idle1, "go_goroutines", whole)
		}},
		{"goroutines per node, under load", func(r *nRun) string {
			return perNode(r.LoadMid, "go_goroutines", whole)
		}},
		{"CPU per node, idle (gossip alone): mean / max, % of one CPU", func(r *nRun) string {
			return cpuPerNode(r.Idle0, r.Idle1)
		}},
		{"CPU of all nodes together, idle: share of the machine (other programs meanwhile)", func(r *nRun) string {
			return cpuAll(r.Idle0, r.Idle1)
		}},
		{"CPU per node under load: mean / max, % of one CPU", func(r *nRun) string {
			return cpuPerNode(r.Load0, r.Load1)
		}},
		{"CPU of all nodes together under load: share of the machine (loadgen, other programs meanwhile)", func(r *nRun) string {
			return cpuAll(r.Load0, r.Load1)
		}},
		{"CPU of all nodes per request served, above their idle CPU", func(r *nRun) string {
			idle, ok1 := nodesCPU(r.Idle0, r.Idle1)
			load, ok2 := nodesCPU(r.Load0, r.Load1)
			if !ok1 || !ok2 || r.Load == nil || r.Load.RequestsPerSecond <= 0 {
				return "-"
			}
			return micros((load - idle) / r.Load.RequestsPerSecond * 1e6)
		}},
		{"ring rebuild, `Ring.Set` of N members (one changed)", func(r *nRun) string {
			if r.Ring == nil {
				return "-"
			}
			return fmt.Sprintf("%s, %d allocs", micros(float64(r.Ring.NsPerOp)/1000), r.Ring.AllocsPerOp)
		}},
		{"load over all N nodes, round-robin: req/s served (429, errors)", func(r *nRun) string {
			l := r.Load
			if l == nil {
				return "-"
			}
			s := l.Status
			return fmt.Sprintf("%s (%d, %d)", num(l.RequestsPerSecond, 0), s.Limited, s.Errors())
		}},
		{"requests that paid a round trip to the owner (forwarded); by lease, local", func(r *nRun) string {
			d := decisions(r.Load0, r.Load1)
			if d == nil {
				return "-"
			}
			return fmt.Sprintf("**%s**; %s, %s", pct(d.share(pathForwarded)), pct(d.share(pathLease)), pct(d.share(pathLocal)))
		}},
		{"fallbacks (decided locally: owner late, failing or cut off)", func(r *nRun) string {
			d := decisions(r.Load0, r.Load1)
			if d == nil {
				return "-"
			}
			return fmt.Sprintf("%s (%s)", whole(d.count[pathFallback]), pct(d.share(pathFallback)))
		}},
		{"time to decide at the node, mean: forwarded / lease / local", func(r *nRun) string {
			d := decisions(r.Load0, r.Load1)
			if d == nil {
				return "-"
			}
			return fmt.Sprintf("%s / %s / %s", micros(d.meanMicros(pathForwarded)), micros(d.meanMicros(pathLease)), micros(d.meanMicros(pathLocal)))
		}},
		{"client latency p50 / p99", func(r *nRun) string {
			if r.Load == nil {
				return "-"
			}
			return micros(r.Load.Latency.P50) + " / " + micros(r.Load.Latency.P99)
		}},
		{"added to the floor's p50 / p99", func(r *nRun) string {
			if r.Load == nil || floor == nil {
				return "-"
			}
			return signedMicros(r.Load.Latency.P50-floor.Latency.P50) + " / " + signedMicros(r.Load.Latency.P99-floor.Latency.P99)
		}},
		{"UDP datagrams the kernel dropped, of all received (the machine, seed start to teardown)", func(r *nRun) string {
			if r.Start == nil || r.End == nil || r.Start.UDP == nil || r.End.UDP == nil {
				return "-"
			}
			a, b := r.Start.UDP, r.End.UDP
			return fmt.Sprintf("%s of %s", whole(float64(b.InErrors-a.InErrors)), whole(float64(b.InDatagrams-a.InDatagrams)))
		}},
		{"live members declared dead by a peer; seed joins retried", func(r *nRun) string {
			if r.Events == nil {
				return "-"
			}
			return fmt.Sprintf("%d; %d", r.Events.FalseFailures, r.Events.JoinRetries)
		}},
	}
}

// waitCell shows a wait's spread: "max (median)", or how many missed it.
func waitCell(m *membersResult, pick func(*membersResult) *spread, unit func(float64) string) string {
	if m == nil || pick(m) == nil {
		return "-"
	}
	s := pick(m)
	if !s.complete() {
		return fmt.Sprintf("%d of %d not within %s", s.Want-s.Met, s.Want, m.Timeout)
	}
	return fmt.Sprintf("%s (%s)", unit(s.Max), unit(s.Median))
}

// perNode shows the median and the largest value of a series over the
// nodes of a snapshot.
func perNode(s *snapshot, name string, unit func(float64) string) string {
	if s == nil || len(s.Nodes) == 0 {
		return "-"
	}
	var vs []float64
	for _, samples := range s.Nodes {
		vs = append(vs, sum(samples, name))
	}
	return unit(median(vs)) + " / " + unit(maxOf(vs))
}

// cpuShares returns each node's CPU use between two snapshots, as a
// share of one CPU, for the nodes in both.
func cpuShares(a, b *snapshot) []float64 {
	if a == nil || b == nil {
		return nil
	}
	dt := b.Time.Sub(a.Time).Seconds()
	if dt <= 0 {
		return nil
	}
	var out []float64
	for name, sb := range b.Nodes {
		sa, ok := a.Nodes[name]
		if !ok {
			continue
		}
		out = append(out, (sum(sb, "process_cpu_seconds_total")-sum(sa, "process_cpu_seconds_total"))/dt)
	}
	return out
}

func cpuPerNode(a, b *snapshot) string {
	shares := cpuShares(a, b)
	if len(shares) == 0 {
		return "-"
	}
	var total float64
	for _, s := range shares {
		total += s
	}
	return pct(total/float64(len(shares))) + " / " + pct(maxOf(shares))
}

// cpuAll shows the nodes' CPU together as a share of the machine, and
// what the rest of the machine did meanwhile (restCell).
func cpuAll(a, b *snapshot) string {
	nodes, ok := nodesCPU(a, b)
	if !ok {
		return "-"
	}
	r := restCell(a, b)
	if r == "" {
		return pct(nodes) + " of one CPU"
	}
	return pct(nodes/float64(b.Machine.CPUs)) + " (" + r + ")"
}

// restCell shows what the machine did between two snapshots besides the
// nodes (from /proc/stat): the run's other processes, other programs, and
// softirq time (network packets, ours too) when it is 1% or more; "" if it
// cannot tell.
func restCell(a, b *snapshot) string {
	procs, others, softirq, ok := rest(a, b)
	if !ok {
		return ""
	}
	var cell string
	for _, n := range slices.Sorted(maps.Keys(procs)) {
		cell += n + " " + pct(procs[n]) + ", "
	}
	cell += "others " + pct(others)
	if softirq >= 0.01 {
		cell += "; softirq " + pct(softirq)
	}
	return cell
}

// nodesCPU returns the CPU of all nodes together between two snapshots,
// in CPUs (1.5: one and a half CPUs busy).
func nodesCPU(a, b *snapshot) (float64, bool) {
	shares := cpuShares(a, b)
	if len(shares) == 0 {
		return 0, false
	}
	var t float64
	for _, s := range shares {
		t += s
	}
	return t, true
}

// decisionDelta is the decisions of all nodes between two snapshots, by
// path: how many, and the seconds they took together.
type decisionDelta struct {
	count, seconds map[string]float64
	total          float64
}

// decisions returns the decisions between a and b, summed over the nodes
// in both, or nil if there were none.
func decisions(a, b *snapshot) *decisionDelta {
	if a == nil || b == nil {
		return nil
	}
	d := &decisionDelta{count: map[string]float64{}, seconds: map[string]float64{}}
	for name, sb := range b.Nodes {
		sa, ok := a.Nodes[name]
		if !ok {
			continue
		}
		for _, s := range sb {
			p := s.Labels["path"]
			switch s.Name {
			case "tierlimit_decision_duration_seconds_count":
				c := s.Value - sum(sa, s.Name, "path", p)
				d.count[p] += c
				d.total += c
			case "tierlimit_decision_duration_seconds_sum":
				d.seconds[p] += s.Value - sum(sa, s.Name, "path", p)
			}
		}
	}
	if d.total <= 0 {
		return nil
	}
	return d
}

// share returns path's part of all decisions.
func (d *decisionDelta) share(path string) float64 { return d.count[path] / d.total }

// meanMicros returns the mean time of a decision by path, in µs; NaN for
// none.
func (d *decisionDelta) meanMicros(path string) float64 {
	if d.count[path] == 0 {
		return math.NaN()
	}
	return d.seconds[path] / d.count[path] * 1e6
}
