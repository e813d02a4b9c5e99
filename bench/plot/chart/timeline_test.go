package chart

import (
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"gonum.org/v1/plot"

	"github.com/tierlimit/tierlimit/bench/plot/timeline"
)

func ms(n int) timeline.Offset { return timeline.Offset(time.Duration(n) * time.Millisecond) }

// record returns a valid 6 s timeline of three tiers: NORMAL, DEGRADED
// posted to n1 at 2 s, NORMAL posted to n2 at 4 s.
func record() *timeline.Record {
	zeros := func() []int { return make([]int, 6) }
	tier := func(name string, burst, degraded int, rate float64, admitted, refused []int) timeline.Tier {
		return timeline.Tier{Name: name, Keys: 3, Rate: rate, Burst: burst, Limit: degraded, Degraded: degraded,
			Admitted: admitted, Refused: refused, Other: zeros(), Failed: zeros(), LimitMin: zeros(), LimitMax: zeros()}
	}
	return &timeline.Record{
		Targets: []string{"http://127.0.0.1:8081", "http://127.0.0.2:8082", "http://[::1]:8083"}, WindowSeconds: 60, Seconds: 6,
		Phases: []timeline.Phase{
			{Status: "NORMAL", Start: ms(0), End: ms(2000)},
			{Status: "DEGRADED", Start: ms(2000), End: ms(4000), Post: &timeline.Post{Target: "http://n1", Node: "n1", Sent: ms(2001), Answered: ms(2002), HTTPStatus: 200}},
			{Status: "NORMAL", Start: ms(4000), End: ms(6000), Post: &timeline.Post{Target: "http://n2", Node: "n2", Sent: ms(4001), Answered: ms(4002), HTTPStatus: 200}},
		},
		// Out of order on purpose: the panels go by NORMAL limit.
		Tiers: []timeline.Tier{
			tier("enterprise", 1500, 1000, 60, []int{60, 60, 60, 60, 60, 60}, zeros()),
			tier("free", 20, 2, 9, []int{9, 9, 0, 0, 9, 9}, []int{0, 0, 9, 9, 0, 0}),
			tier("pro", 150, 100, 15, []int{15, 15, 15, 15, 15, 15}, zeros()),
		},
		Nodes: []timeline.Node{
			{Target: "http://n1", Name: "n1", Changes: []timeline.Change{{At: ms(-100), Status: "NORMAL"}, {At: ms(2010), Status: "DEGRADED"}, {At: ms(4050), Status: "NORMAL"}}},
			{Target: "http://n2", Name: "n2", Changes: []timeline.Change{{At: ms(-100), Status: "NORMAL"}, {At: ms(2090), Status: "DEGRADED"}, {At: ms(4005), Status: "NORMAL"}}},
			{Target: "http://n3", Name: "n3", Changes: []timeline.Change{{At: ms(-100), Status: "NORMAL"}, {At: ms(2060), Status: "DEGRADED"}, {At: ms(4030), Status: "NORMAL"}}},
		},
	}
}

func TestTimelineSVG(t *testing.T) {
	doc := parseSVG(t, render(t, Timeline(record()), "svg"))
	assert.Equal(t, "600pt", doc.width)

	// Three panels, each with an admitted and a refused line, and the
	// legend's sample of each.
	n, dashed := doc.strokes(admittedColor)
	assert.Equal(t, 4, n, "admitted lines: 3 panels + legend")
	assert.Equal(t, 0, dashed, "admitted lines are solid")
	n, dashed = doc.strokes(refusedColor)
	assert.Equal(t, 4, n, "refused lines: 3 panels + legend")
	assert.Equal(t, 4, dashed, "refused lines are dashed")
	assert.Equal(t, 4, doc.fills(degradedFill), "DEGRADED bands: 3 panels + legend")
	n, _ = doc.strokes(otherColor)
	assert.Equal(t, 0, n, "no other-status line when every answer was a 200 or a 429")

	texts := strings.Join(doc.texts, "\n")
	for _, want := range []string{
		"Requests per second by tier, NORMAL → DEGRADED → NORMAL",
		"3-node cluster on loopback, requests round-robin over the nodes, each tier at a steady rate",
		"POST DEGRADED to n1 at 2.0 s: every node reported it within 89 ms",
		"POST NORMAL to n2 at 4.0 s: every node reported it within 49 ms",
		AdmittedLabel, RefusedLabel, DegradedLabel,
		"free: 9 req/s over 3 keys; per key 20/min NORMAL, 2/min DEGRADED",
		"pro: 15 req/s over 3 keys; per key 150/min NORMAL, 100/min DEGRADED",
		"enterprise: 60 req/s over 3 keys; per key 1500/min NORMAL, 1000/min DEGRADED",
		"seconds since the start of the run", "requests/s",
	} {
		assert.Contains(t, doc.texts, want)
	}
	assert.Less(t, strings.Index(texts, "free:"), strings.Index(texts, "pro:"), "panels in order of their NORMAL limits")
	assert.Less(t, strings.Index(texts, "pro:"), strings.Index(texts, "enterprise:"))
	count := 0
	for _, s := range doc.texts {
		if s == "DEGRADED" {
			count++
		}
	}
	assert.Equal(t, 1, count, "the band is named once, in the top panel")
}

func TestTimelineOtherStatuses(t *testing.T) {
	r := record()
	r.Tiers[1].Failed[3] = 2
	r.Tiers[2].Other[1] = 1
	doc := parseSVG(t, render(t, Timeline(r), "svg"))
	assert.Contains(t, doc.texts, OtherLabel)
	n, dashed := doc.strokes(otherColor)
	assert.Equal(t, 4, n, "other lines: 3 panels + legend")
	assert.Equal(t, 4, dashed)
}

func TestTimelineNotOnLoopback(t *testing.T) {
	r := record()
	r.Targets[1] = "http://10.0.0.2:8080"
	doc := parseSVG(t, render(t, Timeline(r), "svg"))
	assert.Contains(t, doc.texts, "3-node cluster, requests round-robin over the nodes, each tier at a steady rate")
}

func TestTimelineWindowNotAMinute(t *testing.T) {
	r := record()
	r.WindowSeconds = 10
	doc := parseSVG(t, render(t, Timeline(r), "svg"))
	assert.Contains(t, doc.texts, "free: 9 req/s over 3 keys; per key 20/10 s NORMAL, 2/10 s DEGRADED")
}

func TestTicks(t *testing.T) {
	labels := func(ts []plot.Tick) []string {
		var out []string
		for _, t := range ts {
			if t.Label != "" {
				out = append(out, t.Label)
			}
		}
		return out
	}
	assert.Equal(t, []string{"0", "10", "20", "30", "40", "50", "60"}, labels(secondTicks{}.Ticks(0, 60)))
	assert.Equal(t, []string{"0", "5", "10"}, labels(countTicks{}.Ticks(0, 11.7)))
	assert.Equal(t, []string{"0", "20", "40", "60"}, labels(countTicks{}.Ticks(0, 78)))
	assert.Equal(t, []string{"0.2", "0.5", "1", "2", "5"}, labels(logTicks{}.Ticks(0.15, 6)))
	assert.Equal(t, []string{"p50", "p90", "p99"}, labels(ninesTicks{}.Ticks(50, 99.5)))
	for _, tk := range (blankLabels{secondTicks{}}).Ticks(0, 60) {
		assert.Contains(t, []string{"", " "}, tk.Label)
	}
}

// costRecord returns record() as a run of jobs with costs: each tier's
// limits on cost and jobs at once, the cost its admitted jobs were
// charged per second, and free's refusals split by limit.
func costRecord() *timeline.Record {
	r := record()
	r.CostUnit, r.Work = "audio-seconds", ms(100)
	for i := range r.Tiers {
		t := &r.Tiers[i]
		switch t.Name {
		case "free":
			t.Cost, t.Concurrency = &timeline.Limits{Burst: 600, Limit: 300, Degraded: 60}, &timeline.Limits{Burst: 2, Limit: 1, Degraded: 1}
			t.Estimate, t.CostPerJob = 20, 15
			t.RefusedBy = map[string][]int{"requests": {0, 0, 8, 9, 0, 0}, "cost": {0, 0, 1, 0, 0, 0}}
		case "pro":
			t.Cost, t.Concurrency = &timeline.Limits{Burst: 9000, Limit: 6000, Degraded: 6000}, &timeline.Limits{Burst: 15, Limit: 10, Degraded: 10}
			t.Estimate, t.CostPerJob = 40, 40
		case "enterprise":
			t.Concurrency = &timeline.Limits{Burst: 150, Limit: 100, Degraded: 100} // no cost limit
		}
		t.CostAdmitted = make([]int, len(t.Admitted))
		for s, n := range t.Admitted {
			t.CostAdmitted[s] = n * t.CostPerJob
		}
	}
	return r
}

func TestTimelineWithCosts(t *testing.T) {
	r := costRecord()
	doc := parseSVG(t, render(t, Timeline(r), "svg"))
	assert.Equal(t, "900pt", doc.width, "two columns")

	n, dashed := doc.strokes(costColor)
	assert.Equal(t, 4, n, "cost lines: 3 panels + legend")
	assert.Equal(t, 0, dashed, "cost lines are solid")
	n, _ = doc.strokes(admittedColor)
	assert.Equal(t, 4, n, "admitted lines: 3 request panels + legend")
	n, dashed = doc.strokes(refusedColor)
	assert.Equal(t, 4, n, "refused by requests: free's panel, pro's and enterprise's zeros, legend")
	assert.Equal(t, 4, dashed)
	n, dashed = doc.strokes(costRefusedColor)
	assert.Equal(t, 2, n, "refused by cost: free's panel + legend; pro and enterprise refused nothing")
	assert.Equal(t, 2, dashed)
	n, _ = doc.strokes(slotRefusedColor)
	assert.Equal(t, 0, n, "nothing refused by concurrency: no line")
	assert.Equal(t, 7, doc.fills(degradedFill), "DEGRADED bands: 6 panels + legend")

	for _, want := range []string{
		"Requests and audio-seconds per second by tier, NORMAL → DEGRADED → NORMAL",
		"each request a job of 100 ms: its estimate of audio-seconds reserved when it is admitted, its cost charged when it ends",
		AdmittedLabel, "refused (429) by the requests limit", "refused (429) by the cost limit",
		"audio-seconds admitted", DegradedLabel,
		"free: 9 req/s over 3 keys; limits per key:", "20/min and 2 at once NORMAL, 2/min and 1 DEGRADED",
		"free: jobs of 15 audio-seconds, 20 reserved; limits per key:", "600/min NORMAL, 60/min DEGRADED",
		"pro: jobs of 40 audio-seconds; limits per key:", "9000/min NORMAL, 6000/min DEGRADED",
		"enterprise: no cost limit",
		"audio-seconds/s", "requests/s",
	} {
		assert.Contains(t, doc.texts, want)
	}
	assert.NotContains(t, doc.texts, RefusedLabel, "the refusals are split by limit")
	texts := strings.Join(doc.texts, "\n")
	assert.Less(t, strings.Index(texts, "refused (429) by the requests limit"), strings.Index(texts, "refused (429) by the cost limit"),
		"the limits in the order they are checked")
	count := 0
	for _, s := range doc.texts {
		if s == "seconds since the start of the run" {
			count++
		}
	}
	assert.Equal(t, 2, count, "the time axis named under each column")
}

func TestTimelineRefusedByEveryLimit(t *testing.T) {
	r := costRecord()
	free := r.Tier("free")
	free.RefusedBy = map[string][]int{"concurrency": {0, 0, 3, 3, 0, 0}, "unnamed": {0, 0, 6, 6, 0, 0}}
	doc := parseSVG(t, render(t, Timeline(r), "svg"))
	for _, want := range []string{"refused (429) by the concurrency limit", "refused (429), no limit named"} {
		assert.Contains(t, doc.texts, want)
	}
	assert.NotContains(t, doc.texts, "refused (429) by the requests limit", "no line for a limit that refused nothing")
	n, _ := doc.strokes(slotRefusedColor)
	assert.Equal(t, 4, n, "refused by concurrency: free's panel, pro's and enterprise's zeros in the first limit's style, legend")
	n, _ = doc.strokes(unnamedColor)
	assert.Equal(t, 2, n, "refused, no limit named: free's panel + legend")
	n, _ = doc.strokes(refusedColor)
	assert.Equal(t, 0, n, "no line in a style the legend does not explain")
}

func TestCostHeadroom(t *testing.T) {
	tier := timeline.Tier{Rate: 9, CostPerJob: 15, CostAdmitted: []int{135, 150, 0}}
	assert.InDelta(t, 195.0, costHeadroom(tier), 1e-9, "the most admitted in a second, 150, and 30 % more")
	tier.CostAdmitted = []int{0, 0, 0}
	assert.InDelta(t, 175.5, costHeadroom(tier), 1e-9, "the rate sent: 9 × 15, and 30 % more")
	assert.Equal(t, 1.0, costHeadroom(timeline.Tier{}))
}
