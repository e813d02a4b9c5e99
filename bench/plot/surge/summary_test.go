package surge

import (
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestSummarizeAuto(t *testing.T) {
	r := sample()
	r.SentLate, r.SendLagMax = 3, ms(61.2)
	s := Summarize(r)
	assert.Equal(t, "auto", s.Run)
	assert.Equal(t, ModeAuto, s.Mode)
	assert.Equal(t, 3.0, s.SurgeStart)
	assert.Equal(t, 7.0, s.SurgeEnd)
	assert.Equal(t, []string{"pro", "enterprise"}, s.Paid)
	// Seconds 1-2: 100 100 101 102 103 104 105 106.
	assert.Equal(t, Span{From: 1, To: 3, N: 8, P50: 102, P99: 106, Max: 106}, s.Unloaded, "second 0 left out")
	assert.Equal(t, Span{From: 3, To: 7, N: 16, P50: 900, P99: 2300, Max: 2300}, s.Surge)

	assert.Equal(t, 1.45, s.ToDegraded, "the last node, n3, at 4.45 s")
	assert.Equal(t, 1.2, s.DegradedWritten)
	assert.Equal(t, "auto: demand 3.50 >= high 1.00 for 2s", s.DegradedWhy)
	// Seconds 5-6: 110 111 112 140 1000 1100 1200 1500.
	assert.Equal(t, &Span{From: 5, To: 7, N: 8, P50: 140, P99: 1500, Max: 1500}, s.AfterSwitch)
	assert.Equal(t, 1.55, s.Drained, "no node queueing from second 6: 1.55 s after 4.45 s")
	assert.Equal(t, 6, s.DrainedBy)
	assert.Equal(t, &Span{From: 6, To: 7, N: 4, P50: 111, P99: 140, Max: 140}, s.AfterDrain)
	assert.Equal(t, 0.0, s.Cleared, "nothing queued after the surge")

	assert.Equal(t, 2.3, s.ToNormal, "the last node, n3, at 9.3 s")
	assert.Equal(t, "auto: demand 0.50 <= low 0.75 for 15s", s.NormalWhy)
	assert.Equal(t, 2, s.Switches)
	assert.Equal(t, 1, s.Up)
	assert.Equal(t, 1, s.Down)
	assert.Equal(t, []Totals{
		{Tier: "free", Due: 400, Admitted: 140, Refused: 260},
		{Tier: "pro", Due: 8, Admitted: 8},
		{Tier: "enterprise", Due: 8, Admitted: 8},
	}, s.Tiers)
	assert.Equal(t, 3, s.SentLate)
	assert.Equal(t, 61.2, s.SendLagMax)

	var b strings.Builder
	require.NoError(t, s.WriteText(&b))
	for _, want := range []string{
		"run auto (auto): surge 3-7 s\n",
		"  pro+enterprise latency, unloaded (s 1-3): p50 102 ms  p99 106 ms  max 106 ms  (8 requests)\n",
		"  pro+enterprise latency, whole surge (s 3-7): p50 900 ms  p99 2.30 s  max 2.30 s  (16 requests)\n",
		"  DEGRADED on every node 1.4 s after the surge began (written 1.2 s after it: auto: demand 3.50 >= high 1.00 for 2s)\n",
		"  pro+enterprise latency, surge after the switch (s 5-7): p50 140 ms  p99 1.50 s  max 1.50 s  (8 requests)\n",
		"  backlog drained 1.6 s after the switch (no node queueing from second 6)\n",
		"  pro+enterprise latency, surge after the drain (s 6-7): p50 111 ms  p99 140 ms  max 140 ms  (4 requests)\n",
		"  NORMAL on every node 2.3 s after the surge ended (auto: demand 0.50 <= low 0.75 for 15s)\n",
		"  state changes: 2 (1 to DEGRADED, 1 to NORMAL)\n",
		"  surge, free       due    400  admitted    140  refused    260\n",
		"  client: 3 requests left more than 50 ms late; the latest 61 ms late\n",
	} {
		assert.Contains(t, b.String(), want)
	}
}

func TestSummarizeEveryNodeDrains(t *testing.T) {
	r := sample()
	r.Nodes[2].SignalMax[6] = 1.25 // n3 still queues in second 6
	s := Summarize(r)
	assert.Equal(t, 2.55, s.Drained, "from second 7, after the surge")
	assert.Equal(t, 7, s.DrainedBy)
	assert.Nil(t, s.AfterDrain, "drained after the surge ended")

	r.Nodes[1].LoadPolls[7] = 0 // n2 did not answer with its load in second 7
	s = Summarize(r)
	assert.Equal(t, 8, s.DrainedBy, "a second without n2's load does not count as calm")
}

func TestSummarizeManual(t *testing.T) {
	r := sample()
	r.Name, r.Mode = "manual", ModeManual
	for i := range r.Nodes {
		n := &r.Nodes[i]
		n.Changes = []Change{{At: ms(-100), Status: Normal, Version: "5", Mode: ModeManual, Why: "admin"}}
		n.SignalMax = []float64{0.5, 0.5, 0.5, 5, 10, 10, 10, 10, 3, 0.5}
	}
	s := Summarize(r)
	assert.Equal(t, -1.0, s.ToDegraded)
	assert.Equal(t, -1.0, s.DegradedWritten)
	assert.Nil(t, s.AfterSwitch)
	assert.Equal(t, -1.0, s.Drained)
	assert.Equal(t, -1, s.DrainedBy)
	assert.Nil(t, s.AfterDrain)
	assert.Equal(t, 2.0, s.Cleared, "queued until second 9")
	assert.Equal(t, -1.0, s.ToNormal, "never DEGRADED")
	assert.Equal(t, 0, s.Switches)

	var b strings.Builder
	require.NoError(t, s.WriteText(&b))
	assert.Contains(t, b.String(), "  DEGRADED: not on every node in the surge\n")
	assert.Contains(t, b.String(), "  after the surge: jobs queued for 2.0 s more\n")
	assert.Contains(t, b.String(), "  state changes: 0 (0 to DEGRADED, 0 to NORMAL)\n")
	assert.NotContains(t, b.String(), "NORMAL on every node")
	assert.NotContains(t, b.String(), "backlog")

	r.Nodes[0].SignalMax[9] = 2
	assert.Equal(t, -1.0, Summarize(r).Cleared, "queued until the run's end")
}

func TestSummarizeFlapping(t *testing.T) {
	r := sample()
	n1 := &r.Nodes[0]
	n1.Changes = append(n1.Changes[:2],
		Change{At: ms(5000), Status: Normal, Version: "3"},
		Change{At: ms(5600), Status: Degraded, Version: "4"},
		Change{At: ms(9500), Status: Normal, Version: "5", Why: "back"})
	s := Summarize(r)
	assert.Equal(t, 4, s.Switches, "n1 went DEGRADED twice")
	assert.Equal(t, 2, s.Up)
	assert.Equal(t, 2, s.Down)
	assert.Equal(t, 1.45, s.ToDegraded, "the first switch up counts")
	assert.Equal(t, 2.5, s.ToNormal, "n1's NORMAL after its last DEGRADED, at 9.5 s")

	// A node still DEGRADED at the end: not back.
	r.Nodes[1].Changes = r.Nodes[1].Changes[:2]
	s = Summarize(r)
	assert.Equal(t, -1.0, s.ToNormal)
	var b strings.Builder
	require.NoError(t, s.WriteText(&b))
	assert.Contains(t, b.String(), "  NORMAL: not on every node by the run's end\n")
}

func TestPaidSeconds(t *testing.T) {
	p50, p99 := PaidSeconds(sample())
	assert.Equal(t, []float64{145, 101, 104, 700, 2100, 1100, 111, 104, 104, 104}, p50)
	assert.Equal(t, []float64{160, 103, 106, 900, 2300, 1500, 140, 105, 105, 105}, p99)
}

func TestPaidSpanCountsFailures(t *testing.T) {
	r := sample()
	pro := r.Tier("pro")
	pro.Admitted[4], pro.Failed[4], pro.TimedOut[4] = 1, 1, 1
	pro.Unsent[5], pro.Admitted[5] = 1, 1
	sp := PaidSpan(r, 3, 7)
	assert.Equal(t, 2, sp.Failed, "one timed out, one not sent")
	assert.Equal(t, 16, sp.N)
	assert.Equal(t, Span{From: 0, To: 10, N: 40, Failed: 2, P50: 106, P99: 2300, Max: 2300}, PaidSpan(r, -5, 50), "clipped to the run")
}

func TestFileWriteTextCompares(t *testing.T) {
	manual := sample()
	manual.Name, manual.Mode = "manual", ModeManual
	for i := range manual.Nodes {
		manual.Nodes[i].Changes = manual.Nodes[i].Changes[:1]
	}
	manual.Tier("pro").Latency[5] = []float64{9000, 10000}
	f := &File{Runs: []Run{*manual, *sample()}}
	var b strings.Builder
	require.NoError(t, f.WriteText(&b))
	out := b.String()
	assert.Contains(t, out, "run manual (manual)")
	assert.Contains(t, out, "run auto (auto)")
	assert.Contains(t, out, "pro+enterprise p99 after the switch in run auto (s 5-7): manual 10.00 s, auto 1.50 s\n")
	assert.Contains(t, out, "pro+enterprise p99 after the drain in run auto (s 6-7): manual 140 ms, auto 140 ms\n")
}
