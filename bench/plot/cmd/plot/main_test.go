package main

import (
	"encoding/json"
	"encoding/xml"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/tierlimit/tierlimit/bench/loadreport"
	"github.com/tierlimit/tierlimit/bench/plot/latency"
	"github.com/tierlimit/tierlimit/bench/plot/surge"
	"github.com/tierlimit/tierlimit/bench/plot/timeline"
)

// wellFormed fails the test unless the file at path is well-formed XML
// whose root is an svg element.
func wellFormed(t *testing.T, path string) {
	t.Helper()
	f, err := os.Open(path)
	require.NoError(t, err)
	defer f.Close()
	dec := xml.NewDecoder(f)
	root := ""
	for {
		tok, err := dec.Token()
		if err == io.EOF {
			break
		}
		require.NoError(t, err)
		if el, ok := tok.(xml.StartElement); ok && root == "" {
			root = el.Name.Local
		}
	}
	assert.Equal(t, "svg", root)
}

func TestTimeline(t *testing.T) {
	dir := t.TempDir()
	off := func(s float64) timeline.Offset { return timeline.Offset(time.Duration(s * float64(time.Second))) }
	counts := func(xs ...int) []int { return xs }
	rec := &timeline.Record{
		Targets: []string{"http://a"}, WindowSeconds: 60, CostUnit: "audio-seconds", Work: off(0.1), Seconds: 3,
		Phases: []timeline.Phase{
			{Status: "NORMAL", Start: off(0), End: off(1)},
			{Status: "DEGRADED", Start: off(1), End: off(2), Post: &timeline.Post{Target: "http://a", Node: "a", Sent: off(1), Answered: off(1.001), HTTPStatus: 200}},
			{Status: "NORMAL", Start: off(2), End: off(3), Post: &timeline.Post{Target: "http://a", Node: "a", Sent: off(2), Answered: off(2.001), HTTPStatus: 200}},
		},
		Tiers: []timeline.Tier{{Name: "free", Keys: 1, Rate: 5, Burst: 20, Limit: 10, Degraded: 2,
			Cost: &timeline.Limits{Burst: 600, Limit: 300, Degraded: 60}, Estimate: 20, CostPerJob: 15,
			Admitted: counts(5, 0, 5), CostAdmitted: counts(75, 0, 75),
			Refused: counts(0, 5, 0), RefusedBy: map[string][]int{"requests": counts(0, 4, 0), "cost": counts(0, 1, 0)},
			Other: counts(0, 0, 0), Failed: counts(0, 0, 0),
			LimitMin: counts(20, 2, 20), LimitMax: counts(20, 2, 20)}},
		Nodes: []timeline.Node{{Target: "http://a", Name: "a", Changes: []timeline.Change{
			{At: off(-0.1), Status: "NORMAL"}, {At: off(1.01), Status: "DEGRADED"}, {At: off(2.01), Status: "NORMAL"}}}},
	}
	in := filepath.Join(dir, "timeline.json")
	f, err := os.Create(in)
	require.NoError(t, err)
	require.NoError(t, timeline.Write(f, rec))
	require.NoError(t, f.Close())

	out := filepath.Join(dir, "timeline.svg")
	var stdout strings.Builder
	require.NoError(t, run([]string{"timeline", "-in", in, "-out", out}, &stdout, io.Discard))
	wellFormed(t, out)
	assert.Contains(t, stdout.String(), "wrote "+out)
	assert.Contains(t, stdout.String(), "every node reported it 10 ms after the POST")
	assert.Contains(t, stdout.String(), "free       sent    5.0  admitted    5.0  refused    0.0  cost 75.0 audio-seconds/s")

	png := filepath.Join(dir, "timeline.png")
	require.NoError(t, run([]string{"timeline", "-in", in, "-out", png}, io.Discard, io.Discard))
	b, err := os.ReadFile(png)
	require.NoError(t, err)
	assert.Equal(t, "\x89PNG", string(b[:4]))
}

func TestLatency(t *testing.T) {
	dir := t.TempDir()
	var runs []string
	for _, cfg := range []struct {
		name, design string
		nodes, c     int
	}{{"floor", "floor", 1, 1}, {"tl3", "tierlimit", 3, 1}, {"floor-64", "floor", 1, 64}, {"tl3-64", "tierlimit", 3, 64}} {
		rep := loadreport.Report{Concurrency: cfg.c, Latency: loadreport.Latency{Count: 100_000, P50: 100, P90: 200, P99: 400, P999: 800, Max: 1000,
			Distribution: []loadreport.Quantile{{Percentile: 50, Value: 100}, {Percentile: 90, Value: 200}, {Percentile: 99, Value: 400}, {Percentile: 99.9, Value: 800}}}}
		b, err := json.Marshal(rep)
		require.NoError(t, err)
		path := filepath.Join(dir, cfg.name+".json")
		require.NoError(t, os.WriteFile(path, b, 0o644))
		runs = append(runs, strings.Join([]string{"load:enterprise", cfg.design, itoa(cfg.nodes), itoa(cfg.c), path, "0", "1"}, "\t"))
	}
	tsv := filepath.Join(dir, "runs.tsv")
	require.NoError(t, os.WriteFile(tsv, []byte(strings.Join(runs, "\n")+"\n"), 0o644))

	data := filepath.Join(dir, "latency.json")
	var stdout strings.Builder
	require.NoError(t, run([]string{"latency-data", "-runs", tsv, "-out", data}, &stdout, io.Discard))
	assert.Contains(t, stdout.String(), "4 load runs")
	d, err := latency.ReadFile(data)
	require.NoError(t, err)
	assert.Len(t, d.Series, 4)

	out := filepath.Join(dir, "latency.svg")
	require.NoError(t, run([]string{"latency", "-in", data, "-out", out}, io.Discard, io.Discard))
	wellFormed(t, out)

	err = run([]string{"latency", "-in", data, "-out", out, "-c", "8"}, io.Discard, io.Discard)
	require.Error(t, err)
	assert.Contains(t, err.Error(), "no enterprise runs at c=8")
}

func itoa(n int) string { return strconv.Itoa(n) }

func TestUsageErrors(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string
	}{
		{nil, "no subcommand"},
		{[]string{"bars"}, `unknown subcommand "bars"`},
		{[]string{"timeline", "-in", "x.json"}, "give both"},
		{[]string{"latency", "-out", "x.svg", "-c", "0"}, "-c"},
		{[]string{"timeline", "-in", "x.json", "-out", "y.svg", "z"}, "unexpected arguments"},
		{[]string{"auto-data", "-out", "y.json"}, "give both"},
		{[]string{"auto", "-in", "missing.json", "-out", "y.svg"}, "missing.json"},
	} {
		err := run(tc.args, io.Discard, io.Discard)
		require.Error(t, err, "run(%q)", tc.args)
		assert.Contains(t, err.Error(), tc.want, "run(%q)", tc.args)
	}
}

// surgeRun returns a valid 4 s run of cmd/surge named name in mode:
// calm, a surge of 2 s, calm; one paid tier, pro, at 2 requests a second,
// slow in the surge in manual mode; free in the surge, refused in auto
// mode, whose one node reports DEGRADED at 1.5 s and NORMAL at 3.5 s.
func surgeRun(name, mode string) surge.Run {
	off := func(s float64) surge.Offset { return surge.Offset(time.Duration(s * float64(time.Second))) }
	ints := func() []int { return make([]int, 4) }
	floats := func() []float64 { return make([]float64, 4) }
	tier := func(name string) surge.Tier {
		return surge.Tier{Name: name, Keys: 1, Burst: 100, Limit: 100, Degraded: 2, Admitted: ints(), Refused: ints(), Other: ints(),
			Failed: ints(), TimedOut: ints(), Unsent: ints(), P50: floats(), P99: floats(), Max: floats()}
	}
	free, pro := tier("free"), tier("pro")
	pro.Admitted = []int{2, 2, 2, 2}
	pro.Latency = [][]float64{{100, 102}, {100, 104}, {101, 103}, {101, 103}}
	changes := []surge.Change{{At: off(-0.1), Status: surge.Normal, Version: "1", Mode: mode}}
	if mode == surge.ModeAuto {
		free.Refused[1], free.Refused[2] = 10, 10
		changes = append(changes, surge.Change{At: off(1.5), Status: surge.Degraded, Version: "2", Mode: mode, Why: "auto: up"},
			surge.Change{At: off(3.5), Status: surge.Normal, Version: "3", Mode: mode, Why: "auto: down"})
	} else {
		free.Admitted[1], free.Admitted[2] = 10, 10
		pro.Latency[1], pro.Latency[2] = []float64{900, 2000}, []float64{3000, 4000}
	}
	return surge.Run{Name: name, Mode: mode, Targets: []string{"http://127.0.0.1:1"}, WindowSeconds: 60, Capacity: 4,
		Work: off(0.1), Timeout: off(10), MaxInFlight: 10, Poll: off(0.1),
		Phases: []surge.Phase{
			{Name: "before", Start: off(0), End: off(1), Rates: map[string]float64{"pro": 2}},
			{Name: surge.PhaseSurge, Start: off(1), End: off(3), Rates: map[string]float64{"pro": 2, "free": 10}},
			{Name: "after", Start: off(3), End: off(4), Rates: map[string]float64{"pro": 2}},
		},
		Paid: []string{"pro"}, Tiers: []surge.Tier{free, pro},
		Nodes: []surge.Node{{Target: "http://127.0.0.1:1", Name: "n1", Writer: "n1", Changes: changes,
			LoadPolls: []int{10, 10, 10, 10}, Saturation: floats(), Demand: floats(), Signal: floats(), SignalMax: []float64{0.5, 2, 0.5, 0.5}}},
		Seconds: 4}
}

func TestAuto(t *testing.T) {
	dir := t.TempDir()
	manual, auto := filepath.Join(dir, "manual.json"), filepath.Join(dir, "auto.json")
	require.NoError(t, surge.WriteFile(manual, &surge.File{Commit: "abc", Runs: []surge.Run{surgeRun("manual", surge.ModeManual)}}))
	require.NoError(t, surge.WriteFile(auto, &surge.File{Commit: "abc", Runs: []surge.Run{surgeRun("auto", surge.ModeAuto)}}))

	joined := filepath.Join(dir, "joined.json")
	var stdout strings.Builder
	require.NoError(t, run([]string{"auto-data", "-in", manual + ", " + auto, "-out", joined}, &stdout, io.Discard))
	assert.Contains(t, stdout.String(), "wrote "+joined+": 2 runs")
	assert.Contains(t, stdout.String(), "run manual (manual): surge 1-3 s")
	assert.Contains(t, stdout.String(), "pro p99 after the switch in run auto (s 2-3): manual 4.00 s, auto 103 ms\n")
	f, err := surge.ReadFile(joined)
	require.NoError(t, err)
	assert.Equal(t, "abc", f.Commit, "the runs' commit, once")
	require.Len(t, f.Runs, 2)
	assert.Equal(t, []string{"manual", "auto"}, []string{f.Runs[0].Name, f.Runs[1].Name}, "in the order given")

	out := filepath.Join(dir, "auto.svg")
	stdout.Reset()
	require.NoError(t, run([]string{"auto", "-in", joined, "-out", out}, &stdout, io.Discard))
	wellFormed(t, out)
	assert.Contains(t, stdout.String(), "wrote "+out)
	assert.Contains(t, stdout.String(), "  DEGRADED on every node 0.5 s after the surge began")
	png := filepath.Join(dir, "auto.png")
	require.NoError(t, run([]string{"auto", "-in", joined, "-out", png}, io.Discard, io.Discard))
	b, err := os.ReadFile(png)
	require.NoError(t, err)
	assert.Equal(t, "\x89PNG", string(b[:4]))

	// Runs made at different commits keep both; a run twice is refused.
	require.NoError(t, surge.WriteFile(auto, &surge.File{Commit: "def", Runs: []surge.Run{surgeRun("auto", surge.ModeAuto)}}))
	require.NoError(t, run([]string{"auto-data", "-in", manual + "," + auto, "-out", joined}, io.Discard, io.Discard))
	f, err = surge.ReadFile(joined)
	require.NoError(t, err)
	assert.Equal(t, "abc / def", f.Commit)
	err = run([]string{"auto-data", "-in", auto + "," + auto, "-out", joined}, io.Discard, io.Discard)
	require.Error(t, err)
	assert.Contains(t, err.Error(), "run auto given twice")
}
