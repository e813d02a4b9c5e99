package chart

import (
	"bytes"
	"image/png"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"gonum.org/v1/plot"

	"github.com/tierlimit/tierlimit/bench/plot/surge"
)

// surgeRun returns a valid 10 s run: calm 0-3 s, a surge of free requests
// 3-7 s, calm 7-10 s; pro and enterprise send 2 requests a second each, at
// about 100 ms unloaded. In auto mode free requests are refused from
// second 4, the nodes report DEGRADED at 4.3-4.45 s and NORMAL at 9.1-9.3
// s, and the paid tiers' latency is back to unloaded from second 6; in
// manual mode free requests are admitted, the paid ones in seconds 4-7
// time out and nothing changes state.
func surgeRun(mode string) surge.Run {
	const n = 10
	zeros := func() []int { return make([]int, n) }
	floats := func() []float64 { return make([]float64, n) }
	tier := func(name string, burst int) surge.Tier {
		return surge.Tier{Name: name, Keys: 2, Burst: burst, Limit: burst, Degraded: burst,
			Admitted: zeros(), Refused: zeros(), Other: zeros(), Failed: zeros(), TimedOut: zeros(), Unsent: zeros(),
			P50: floats(), P99: floats(), Max: floats()}
	}
	free, pro, ent := tier("free", 150), tier("pro", 1000), tier("enterprise", 2000)
	free.Degraded = 2
	pro.Latency, ent.Latency = make([][]float64, n), make([][]float64, n)
	for s := range n {
		for _, t := range []*surge.Tier{&pro, &ent} {
			switch {
			case s < 3 || s >= 8 || (mode == surge.ModeAuto && s >= 6):
				t.Admitted[s] = 2
				t.Latency[s] = []float64{101, 104}
			case mode == surge.ModeAuto || s == 3:
				t.Admitted[s] = 2
				t.Latency[s] = []float64{900, 2300}
			default:
				t.Failed[s], t.TimedOut[s] = 2, 2
				t.Latency[s] = []float64{10000, 10000}
			}
		}
		if s >= 3 && s < 7 {
			if mode == surge.ModeAuto && s >= 4 {
				free.Refused[s] = 100
			} else {
				free.Admitted[s] = 100
			}
		}
	}
	written := surge.Offset(4200 * time.Millisecond)
	node := func(name string, degraded, normal time.Duration) surge.Node {
		nd := surge.Node{Target: "http://127.0.0.1:808" + name[1:], Name: name, Writer: "n1",
			Changes:    []surge.Change{{At: surge.Offset(-100 * time.Millisecond), Status: surge.Normal, Version: "1", Mode: mode}},
			LoadPolls:  []int{10, 10, 10, 10, 10, 10, 10, 10, 10, 10},
			Saturation: []float64{0.5, 0.5, 0.5, 10, 10, 4, 0.5, 0.5, 0.5, 0.5},
			Demand:     []float64{0.5, 0.5, 0.5, 10, 10, 10, 10, 0.5, 0.5, 0.5},
			Signal:     floats(), SignalMax: []float64{0.5, 0.75, 0.5, 5, 8, 4, 0.75, 0.5, 0.5, 0.5}}
		if mode == surge.ModeAuto {
			nd.Changes = append(nd.Changes,
				surge.Change{At: surge.Offset(degraded), Status: surge.Degraded, Version: "2", Mode: mode, Why: "auto: up", Written: &written},
				surge.Change{At: surge.Offset(normal), Status: surge.Normal, Version: "3", Mode: mode, Why: "auto: down"})
		}
		return nd
	}
	ms := func(n int) time.Duration { return time.Duration(n) * time.Millisecond }
	return surge.Run{
		Name: mode, Mode: mode, Targets: []string{"http://127.0.0.1:8081", "http://127.0.0.1:8082", "http://127.0.0.1:8083"},
		WindowSeconds: 60, Capacity: 4, Work: surge.Offset(ms(100)), Timeout: surge.Offset(10 * time.Second), MaxInFlight: 6000,
		Poll: surge.Offset(ms(100)), Settings: &surge.Settings{High: 1, Low: 0.75, UpHold: "2s", DownHold: "15s"},
		Phases: []surge.Phase{
			{Name: "before", Start: 0, End: surge.Offset(3 * time.Second), Rates: map[string]float64{"pro": 2, "enterprise": 2}},
			{Name: surge.PhaseSurge, Start: surge.Offset(3 * time.Second), End: surge.Offset(7 * time.Second), Rates: map[string]float64{"pro": 2, "enterprise": 2, "free": 100}},
			{Name: "after", Start: surge.Offset(7 * time.Second), End: surge.Offset(10 * time.Second), Rates: map[string]float64{"pro": 2, "enterprise": 2}},
		},
		Paid:    []string{"pro", "enterprise"},
		Tiers:   []surge.Tier{free, pro, ent},
		Nodes:   []surge.Node{node("n1", ms(4300), ms(9100)), node("n2", ms(4400), ms(9200)), node("n3", ms(4450), ms(9300))},
		Seconds: n,
	}
}

func surgeFile() *surge.File {
	return &surge.File{Commit: "abc1234", Runs: []surge.Run{surgeRun(surge.ModeManual), surgeRun(surge.ModeAuto)}}
}

func TestAutoSVG(t *testing.T) {
	f := surgeFile()
	require.NoError(t, f.Validate())
	doc := parseSVG(t, render(t, Auto(f), "svg"))
	assert.Equal(t, "900pt", doc.width, "two columns")

	for _, want := range []string{
		"A surge of free requests, with the automatic switch off and on",
		"3 nodes on loopback, each running 4 jobs of 100 ms at once (120 jobs/s in all), requests round-robin over them; at abc1234",
		"enterprise 2 + pro 2 req/s throughout; free 100 req/s in 3-7 s; client timeout 10 s",
		"auto: DEGRADED on every node 1.4 s into the surge, NORMAL 2.3 s after it; 1 switch up, 1 down; backlog drained 1.6 s after the switch",
		"manual: paid p99 unloaded 104 ms, whole surge 10.00 s (12 of 16 paid requests unanswered, counted at the timeout)",
		"auto: paid p99 unloaded 104 ms, whole surge 2.30 s, after the switch (s 5-7) 2.30 s, after the drain (s 6-7) 104 ms",
		"manual: NORMAL pinned (the switch off)", "auto: the automatic switch on",
		"pro + enterprise latency per second (unloaded p99 104 ms)",
		"the cluster's load as n1 saw it (a node reports at most 10)",
		"capacity 120 jobs/s", "high 1", "low 0.75",
		"enterprise admitted", "pro admitted", "free admitted", RefusedLabel, NoAnswerLabel,
		CapacityLabel, P99Label, P50Label, UnloadedLabel, TargetLabel, SaturationLabel, DemandLabel, OfferedLabel, DegradedLabel,
		"requests/s (by second due)", "latency (s, log scale)", "load (1 = full, log scale)",
	} {
		assert.Contains(t, doc.texts, want)
	}
	assert.NotContains(t, doc.texts, OtherLabel, "no other status: not in the legend")
	texts := strings.Join(doc.texts, "\n")
	assert.Less(t, strings.Index(texts, "enterprise admitted"), strings.Index(texts, "pro admitted"), "the legend in the stack's order")
	assert.Less(t, strings.Index(texts, "free admitted"), strings.Index(texts, RefusedLabel))
	count := func(s string) int {
		n := 0
		for _, t := range doc.texts {
			if t == s {
				n++
			}
		}
		return n
	}
	assert.Equal(t, 2, count("free surge"), "named in each column's top panel")
	assert.Equal(t, 2, count("seconds since the start of the run"))

	assert.Equal(t, 4, doc.fills(degradedFill), "DEGRADED: the auto column's 3 panels + legend")
	assert.Equal(t, 2, doc.fills(refusedFill), "refused: the auto column's panel + legend")
	assert.Equal(t, 2, doc.fills(noAnswerFill), "no answer: the manual column's panel + legend")
	assert.Equal(t, 3, doc.fills(freeFill), "free admitted: both columns + legend")
	n, _ := doc.strokes(p99Color)
	assert.Equal(t, 3, n, "paid p99: 2 panels + legend")
	n, dashed := doc.strokes(demandColor)
	assert.Equal(t, 3, n, "demand: 2 panels + legend")
	assert.Equal(t, 3, dashed)
	n, _ = doc.strokes(targetColor)
	assert.Equal(t, 3, n, "the target: 2 panels + legend")
}

func TestAutoOneRun(t *testing.T) {
	r := surgeRun(surge.ModeAuto)
	r.Name, r.Setup = "queue", "-queue-wait 10s"
	f := &surge.File{Runs: []surge.Run{r}}
	doc := parseSVG(t, render(t, Auto(f), "svg"))
	assert.Equal(t, "600pt", doc.width)
	assert.Contains(t, doc.texts, "queue: the automatic switch on, -queue-wait 10s", "the nodes' setup in the title")
	assert.NotContains(t, doc.texts, DeferredLabel, "no request deferred")

	free := r.Tier("free")
	free.Deferred = make([]int, r.Seconds)
	free.Deferred[4] = 30
	require.NoError(t, f.Validate())
	doc = parseSVG(t, render(t, Auto(f), "svg"))
	assert.Contains(t, doc.texts, DeferredLabel, "deferred requests drawn")
	assert.NotContains(t, doc.texts, NoAnswerLabel, "every request answered")
	img, err := png.Decode(bytes.NewReader(render(t, Auto(f), "png")))
	require.NoError(t, err)
	assert.Equal(t, 1200, img.Bounds().Dx())
}

func TestDegradedSpans(t *testing.T) {
	r := surgeRun(surge.ModeAuto)
	spans := degradedSpans(&r)
	require.Len(t, spans, 1)
	assert.InDelta(t, 4.3, spans[0].from, 1e-9, "from the first node's report")
	assert.InDelta(t, 9.3, spans[0].to, 1e-9, "to the last node's NORMAL")

	// n3 never reports NORMAL again: the band runs to the end.
	r.Nodes[2].Changes = r.Nodes[2].Changes[:2]
	spans = degradedSpans(&r)
	require.Len(t, spans, 1)
	assert.InDelta(t, 10, spans[0].to, 1e-9)

	// n1 goes DEGRADED twice: two bands where no node overlaps.
	r = surgeRun(surge.ModeAuto)
	for i := range r.Nodes {
		r.Nodes[i].Changes = append(r.Nodes[i].Changes[:3], surge.Change{At: surge.Offset(9500 * time.Millisecond), Status: surge.Degraded, Version: "4"})
	}
	spans = degradedSpans(&r)
	require.Len(t, spans, 2)
	assert.InDelta(t, 9.5, spans[1].from, 1e-9)
	assert.InDelta(t, 10, spans[1].to, 1e-9)
}

func TestPowerTicks(t *testing.T) {
	var labels []string
	for _, tk := range (powerTicks{}).Ticks(-1.3, 1.2) {
		if tk.Label != "" {
			labels = append(labels, tk.Label)
		}
	}
	assert.Equal(t, []string{"0.1", "0.2", "0.5", "1", "2", "5", "10"}, labels)
	var a plot.Axis
	logAxis(&a, 0.25, 12)
	assert.InDelta(t, -0.60206, a.Min, 1e-5)
	assert.InDelta(t, 1.07918, a.Max, 1e-5)
}

func TestPhaseRates(t *testing.T) {
	assert.Equal(t, "free 360 + enterprise 30 + pro 30 req/s", phaseRates(map[string]float64{"pro": 30, "free": 360, "enterprise": 30, "gold": 0}))
}

func TestLoadText(t *testing.T) {
	ph := func(from, to float64, rates map[string]float64) surge.Phase {
		return surge.Phase{Start: surge.Offset(from * float64(time.Second)), End: surge.Offset(to * float64(time.Second)), Rates: rates}
	}
	assert.Equal(t, "pro 30 req/s throughout; free 360 + enterprise 10 req/s in 15-45 s; enterprise 20 req/s in 45-75 s",
		loadText([]surge.Phase{ph(0, 15, map[string]float64{"pro": 30}),
			ph(15, 45, map[string]float64{"pro": 30, "free": 360, "enterprise": 10}),
			ph(45, 75, map[string]float64{"pro": 30, "enterprise": 20})}))
}
