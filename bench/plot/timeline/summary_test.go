package timeline

import (
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestSummarize(t *testing.T) {
	s := Summarize(sample())
	require.Len(t, s.Phases, 3)

	normal, degraded, back := s.Phases[0], s.Phases[1], s.Phases[2]
	assert.Equal(t, [2]int{0, 2}, normal.Steady, "first phase: every whole second")
	assert.Equal(t, [2]int{3, 4}, degraded.Steady, "a posted phase: its first second left out")
	assert.Equal(t, [2]int{5, 6}, back.Steady)

	free := func(p PhaseSummary) TierRate { return p.Tiers[0] }
	assert.Equal(t, "audio-seconds", s.CostUnit)
	assert.Equal(t, TierRate{Tier: "free", Sent: 9, Admitted: 9, Cost: 135, HasCost: true, RefusedBy: map[string]float64{"requests": 0, "cost": 0},
		FirstAdmitted: 9, LimitLow: 20, LimitHigh: 20}, free(normal))
	assert.Equal(t, TierRate{Tier: "free", Sent: 9, Refused: 9, Cost: 0, HasCost: true, RefusedBy: map[string]float64{"requests": 9, "cost": 0},
		FirstAdmitted: 1, FirstRefused: 8, LimitLow: 2, LimitHigh: 2}, free(degraded), "second 3 only: the cost refusal was in second 2")
	assert.Equal(t, TierRate{Tier: "free", Sent: 9, Admitted: 9, Cost: 135, HasCost: true, RefusedBy: map[string]float64{"requests": 0, "cost": 0},
		FirstAdmitted: 8, FirstRefused: 1, LimitLow: 20, LimitHigh: 20}, free(back))
	pro := degraded.Tiers[1]
	assert.Equal(t, 15.0, pro.Admitted)
	assert.Equal(t, 600.0, pro.Cost)
	assert.Nil(t, pro.RefusedBy, "pro refused nothing")
	assert.Equal(t, 1.0, pro.Failed)
	assert.Equal(t, 100, pro.LimitLow)

	assert.Nil(t, normal.Post)
	assert.Empty(t, normal.Seen)
	assert.Equal(t, []NodeSeen{
		{"http://n1", "n1", 9 * time.Millisecond},
		{"http://n2", "n2", 77 * time.Millisecond},
		{"http://n3", "n3", 54 * time.Millisecond},
	}, degraded.Seen)
	assert.Equal(t, 77*time.Millisecond, degraded.Agreed)
	assert.Equal(t, 78*time.Millisecond, back.Agreed, "n1 reported NORMAL at 4080 ms, 78 ms after the POST at 4002")
}

func TestSummarizeCostMeans(t *testing.T) {
	// Means over the steady seconds, to the fraction.
	r := sample()
	r.Tiers[0].CostAdmitted = []int{135, 120, 15, 0, 120, 135}
	r.Tiers[0].Refused = []int{0, 0, 8, 9, 1, 0}
	r.Tiers[0].RefusedBy = map[string][]int{"requests": {0, 0, 7, 4, 1, 0}, "cost": {0, 0, 1, 3, 0, 0}, "concurrency": {0, 0, 0, 2, 0, 0}}
	s := Summarize(r)
	assert.Equal(t, 127.5, s.Phases[0].Tiers[0].Cost, "(135 + 120) / 2")
	assert.Equal(t, map[string]float64{"requests": 4, "cost": 3, "concurrency": 2}, s.Phases[1].Tiers[0].RefusedBy)
	var b strings.Builder
	require.NoError(t, s.WriteText(&b))
	assert.Contains(t, b.String(), "refused    9.0 (by requests 4.0, cost 3.0, concurrency 2.0)  cost 0.0 audio-seconds/s  limit 2")
}

func TestSummarizeNodeThatNeverSawIt(t *testing.T) {
	r := sample()
	r.Nodes[2].Changes = r.Nodes[2].Changes[:1] // n3 stayed NORMAL all along
	s := Summarize(r)
	assert.Equal(t, time.Duration(-1), s.Phases[1].Agreed)
	assert.Equal(t, time.Duration(-1), s.Phases[1].Seen[2].After)
	assert.Equal(t, 77*time.Millisecond, s.Phases[1].Seen[1].After, "the others are still timed")

	var b strings.Builder
	require.NoError(t, s.WriteText(&b))
	assert.Contains(t, b.String(), "NOT every node reported it")
	assert.Contains(t, b.String(), "n3 never")
}

func TestSummarizeLateReport(t *testing.T) {
	// The last phase's state reported only after the load stopped (the
	// poll goes on a while) still counts.
	r := sample()
	r.Nodes[0].Changes[2].At = ms(6300)
	assert.Equal(t, 2298*time.Millisecond, Summarize(r).Phases[2].Agreed)
}

func TestSummaryText(t *testing.T) {
	var b strings.Builder
	require.NoError(t, Summarize(sample()).WriteText(&b))
	got := b.String()
	for _, want := range []string{
		"NORMAL 0-2 s\n",
		"DEGRADED 2-4 s (POST to http://n1 = n1: 200 in 2.0 ms; every node reported it 77 ms after the POST: n1 9 ms n2 77 ms n3 54 ms)",
		"free       sent    9.0  admitted    0.0  refused    9.0 (by requests 9.0)  cost 0.0 audio-seconds/s  limit 2  (first second: 1 admitted, 8 refused)",
		"pro        sent   15.0  admitted   15.0  refused    0.0  cost 600.0 audio-seconds/s  other 0.0  failed 1.0  limit 100",
		"free       sent    9.0  admitted    9.0  refused    0.0  cost 135.0 audio-seconds/s  limit 20\n",
	} {
		assert.Contains(t, got, want)
	}
}
