package main

import (
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/tierlimit/tierlimit/bench/loadreport"
)

// snapAt returns a snapshot at t0+d of nodes, each with the given CPU
// seconds, resident bytes, goroutines and decision counts and seconds by
// path.
func snapAt(d time.Duration, cpu, rss, goroutines float64, counts map[string][2]float64, names ...string) *snapshot {
	s := &snapshot{Time: t0.Add(d), Nodes: map[string][]sample{},
		Machine: &machineCPU{Total: uint64(200 * d.Seconds()), Idle: uint64(100 * d.Seconds()), CPUs: 2}}
	for _, n := range names {
		ss := []sample{
			{Name: "process_cpu_seconds_total", Value: cpu},
			{Name: "process_resident_memory_bytes", Value: rss},
			{Name: "go_goroutines", Value: goroutines},
		}
		for p, c := range counts {
			ss = append(ss,
				sample{Name: "tierlimit_decision_duration_seconds_count", Labels: map[string]string{"path": p}, Value: c[0]},
				sample{Name: "tierlimit_decision_duration_seconds_sum", Labels: map[string]string{"path": p}, Value: c[1]})
		}
		s.Nodes[n] = ss
	}
	return s
}

// goodRun is a size at which everything went well.
func goodRun() nRun {
	names := []string{"a", "b"}
	ok := func(max float64) spread { return spread{Want: 2, Met: 2, Median: max / 2, Max: max} }
	left, exit := spread{Want: 1, Met: 1, Max: 0.4}, spread{Want: 1, Met: 1, Max: 1.5}
	load0 := snapAt(40*time.Second, 2, 0, 0, map[string][2]float64{"forwarded": {0, 0}, "lease": {0, 0}, "local": {0, 0}}, names...)
	load0.Procs = map[string]uint64{"loadgen": 100}
	load1 := snapAt(50*time.Second, 4, 0, 0, map[string][2]float64{
		"forwarded": {300, 0.06}, "lease": {100, 0.0003}, "local": {100, 0.0001}, "fallback": {0, 0}}, names...)
	load1.Procs = map[string]uint64{"loadgen": 300}
	return nRun{
		N:         2,
		Notes:     []string{"the idle window was redone"},
		Formation: &membersResult{Timeout: "1m0s", Ring: ok(2.5), Changes: 5},
		Start:     &snapshot{UDP: &udpCounters{InDatagrams: 100, InErrors: 1}},
		End:       &snapshot{UDP: &udpCounters{InDatagrams: 12_100, InErrors: 4}},
		Health: &healthResult{Timeout: "20s", Agree: true, Writes: []write{
			{Status: "DEGRADED", Applied: ok(0.040), ViaPushPull: 1}, {Status: "NORMAL", Applied: ok(0.080)},
		}},
		Kill:    &membersResult{Timeout: "1m0s", Ring: ok(5)},
		Leave:   &membersResult{Timeout: "1m0s", Ring: ok(0.25), Left: &left, Exit: &exit, LeftAsFailed: []string{"b"}},
		Idle0:   snapAt(10*time.Second, 1, 20<<20, 40, nil, names...),
		Idle1:   snapAt(30*time.Second, 1.2, 22<<20, 41, nil, names...),
		Load0:   load0,
		LoadMid: snapAt(45*time.Second, 0, 30<<20, 60, nil, names...),
		Load1:   load1,
		Load:    &loadreport.Report{RequestsPerSecond: 500, Latency: loadreport.Latency{P50: 400, P99: 2500}},
		Events:  &events{Warnings: []msgCount{{Msg: "WARN: peer failed", Count: 1}}},
		Ring:    &ringTime{Members: 2, NsPerOp: 58000, AllocsPerOp: 12},
	}
}

func TestRenderGoodRun(t *testing.T) {
	fa, fb := snapAt(0, 0, 0, 0, nil), snapAt(10*time.Second, 0, 0, 0, nil)
	fa.Procs, fb.Procs = map[string]uint64{"floor": 0, "loadgen": 0}, map[string]uint64{"floor": 100, "loadgen": 100}
	res := results{
		FloorA:    fa,
		FloorB:    fb,
		Meta:      [][2]string{{"date", "today"}},
		Runs:      []nRun{goodRun()},
		Floor:     &loadreport.Report{RequestsPerSecond: 500, Latency: loadreport.Latency{P50: 150, P99: 900}},
		RingBench: []string{"BenchmarkRingSet/members=10-2 100 5000 ns/op"},
	}
	md, problems := render(res)
	assert.Empty(t, problems)
	for _, want := range []string{
		"_date: today._",
		"| measure | N = 2 |",
		"| every node's ring holds all N members, from starting the other N − 1 (the seed already up): max (median) | 2.50 s (1.25 s) |",
		"| admin `POST /system/health` until every other node applied it: median / max over the writes | 60 ms / 80 ms (2 writes) |",
		"| … of those adoptions, by push/pull rather than gossip | 1 of 4 |",
		"| … until every node heard it left, or failed (memberlist) / its process exited | 0.40 s (1 heard it failed, not left) / 1.50 s |",
		"| resident memory per node, idle: median / max | 22.0 MiB / 22.0 MiB |",
		"| goroutines per node, under load | 60 / 60 |",
		// 0.2 CPU seconds in 20 s: 1% of one CPU; two nodes on two CPUs: 1% of
		// the machine, which was half busy.
		"| CPU per node, idle (gossip alone): mean / max, % of one CPU | 1.00% / 1.00% |",
		"| … ring rebuilds (\"members changed\") per node meanwhile; their CPU in all, at the rebuild time below | 2.5; 0.3 ms |",
		"| CPU per node from its start to the idle window (start-up, formation, settling): mean / max | 1.00 s / 1.00 s |",
		"| CPU of all nodes together, idle: share of the machine (other programs meanwhile) | 1.00% (others 49.0%) |",
		// Half the machine busy: nodes 20%, loadgen 10%.
		"| CPU of all nodes together under load: share of the machine (loadgen, other programs meanwhile) | 20.0% (loadgen 10.0%, others 20.0%) |",
		"| CPU per node under load: mean / max, % of one CPU | 20.0% / 20.0% |",
		// 0.4 CPU under load, 0.02 idle, 500 req/s: 0.76 ms of CPU a request.
		"| CPU of all nodes per request served, above their idle CPU | 760 µs |",
		"| UDP datagrams the kernel dropped, of all received (the machine, seed start to teardown) | 3 of 12,000 |",
		"| ring rebuild, `Ring.Set` of N members (one changed) | 58 µs, 12 allocs |",
		"| requests that paid a round trip to the owner (forwarded); by lease, local | **60.0%**; 20.0%, 20.0% |",
		"| fallbacks (decided locally: owner late, failing or cut off) | 0 (0.00%) |",
		"| time to decide at the node, mean: forwarded / lease / local | 200 µs / 3.0 µs / 1.0 µs |",
		"| client latency p50 / p99 | 400 µs / 2.50 ms |",
		"| added to the floor's p50 / p99 | +250 µs / +1.60 ms |",
		"Floor (`bench/floor`, one process, no limiter, the same load): 500 req/s, p50 150 µs, p99 900 µs; the machine meanwhile: floor 5.00%, loadgen 5.00%, others 40.0%.",
		"- N = 2: the idle window was redone.\n",
		"`BenchmarkRingSet/members=10-2 100 5000 ns/op`",
		`N = 2, warnings and errors in the node logs: 1× "WARN: peer failed".`,
	} {
		assert.Contains(t, md, want)
	}
	assert.NotContains(t, md, "Problems")
}

func TestRenderListsProblems(t *testing.T) {
	r := goodRun()
	r.Kill.Ring = spread{Want: 2, Met: 1, Max: 5, Missing: []string{"b"}}
	r.Health.Writes[1].Applied = spread{Want: 2, Met: 0, Missing: []string{"a", "b"}}
	r.Load.Status.TransportError = 3
	r.Died = []string{"b"}
	r.Formation = nil
	md, problems := render(results{Runs: []nRun{r}})
	assert.Equal(t, []string{
		"N = 2: formation: no result",
		"N = 2: kill -9: 1 of 2 nodes did not get there within 1m0s (b)",
		"N = 2: admin write 2 (NORMAL to ): 2 of 2 nodes did not apply it within 20s",
		"N = 2: load: 3 requests were neither 200 nor 429 (5xx 0, transport errors 3, 401 0, other 4xx 0, other 0)",
		"N = 2: nodes exited by themselves: b",
	}, problems)
	assert.Contains(t, md, "**Problems in this run:**")
	assert.Contains(t, md, "| 1 of 2 not within 1m0s |")
	assert.Contains(t, md, "a write missed 2 nodes (> 20s)")
	assert.Contains(t, md, "| every node's ring holds all N members, from starting the other N − 1 (the seed already up): max (median) | - |")
}

func TestTableWritesTheDocSection(t *testing.T) {
	dir := t.TempDir()
	run := goodRun()
	n := filepath.Join(dir, "n2")
	require.NoError(t, os.MkdirAll(n, 0o755))
	require.NoError(t, writeJSON(filepath.Join(n, "formation.json"), run.Formation))
	require.NoError(t, writeJSON(filepath.Join(n, "load.json"), run.Load))
	require.NoError(t, writeJSON(filepath.Join(dir, "ring.json"), []ringTime{*run.Ring}))
	require.NoError(t, os.WriteFile(filepath.Join(dir, "meta.txt"), []byte("date=today\nmachine = 2 CPUs\n"), 0o644))
	require.NoError(t, os.WriteFile(filepath.Join(dir, "notes.txt"), []byte("floor try 1: other programs took 40% of the machine\n\n"), 0o644))
	require.NoError(t, os.WriteFile(filepath.Join(n, "notes.txt"), []byte("idle: kept try 2\n"), 0o644))
	require.NoError(t, os.WriteFile(filepath.Join(n, "died.txt"), []byte("b\n"), 0o644))
	doc := filepath.Join(dir, "scale.md")
	require.NoError(t, os.WriteFile(doc, []byte("# Scale\n\nintro\n\n"+beginMarker+"\nOLD SECTION\n"+endMarker+"\n\nafter\n"), 0o644))
	out := filepath.Join(dir, "results.md")
	var stdout strings.Builder
	err := runTable([]string{"-dir", dir, "-ns", "2", "-meta", filepath.Join(dir, "meta.txt"), "-out", out, "-doc", doc}, &stdout, io.Discard)
	assert.ErrorIs(t, err, errProblems, "the steps without results are problems")
	b, err := os.ReadFile(doc)
	require.NoError(t, err)
	s := string(b)
	assert.True(t, strings.HasPrefix(s, "# Scale\n\nintro\n\n"+beginMarker+"\n_date: today; machine: 2 CPUs._"), "doc:\n%s", s)
	assert.True(t, strings.HasSuffix(s, endMarker+"\n\nafter\n"), "doc:\n%s", s)
	assert.NotContains(t, s, "OLD SECTION")
	assert.Contains(t, s, "| 2.50 s (1.25 s) |")
	assert.Contains(t, s, "| 58 µs, 12 allocs |")
	assert.Contains(t, s, "- floor try 1: other programs took 40% of the machine.\n- N = 2: idle: kept try 2.\n\n**Problems in this run:**\n\n- N = 2: kill -9: no result\n")
	assert.Contains(t, s, "- N = 2: nodes exited by themselves: b\n")
	assert.Equal(t, stdout.String(), s[strings.Index(s, beginMarker)+len(beginMarker)+1:strings.Index(s, endMarker)])
}

func TestStragglers(t *testing.T) {
	m := &membersResult{Ring: spread{Median: 2, PerNode: map[string]float64{
		"a": 2, "b": 2.1, "c": 56.4, "d": 32.5, "e": 4.5, "f": 6, "g": 7}}}
	assert.Equal(t, "c took 56.40 s, d took 32.50 s, g took 7.00 s and 1 more, the median node 2.00 s", m.stragglers(),
		"e is over twice the median but under 5 s")
	m.Ring.PerNode = map[string]float64{"a": 2, "b": 3}
	assert.Empty(t, m.stragglers())
	assert.Empty(t, (*membersResult)(nil).stragglers())
}
