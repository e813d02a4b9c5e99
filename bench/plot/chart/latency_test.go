package chart

import (
	"image/color"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/tierlimit/tierlimit/bench/loadreport"
	"github.com/tierlimit/tierlimit/bench/plot/latency"
)

// latencyData returns runs of the enterprise load at c=1 and c=64 of four
// configurations, and a mixed run.
func latencyData() *latency.Data {
	dist := func(scale float64) []loadreport.Quantile {
		var qs []loadreport.Quantile
		for i, p := range []float64{50, 80, 90, 95, 98, 99, 99.5, 99.8, 99.9, 99.95, 99.98, 99.99} {
			qs = append(qs, loadreport.Quantile{Percentile: p, Value: scale * float64(100+40*i)})
		}
		return qs
	}
	d := &latency.Data{Meta: []latency.MetaItem{{Key: "date", Value: "2026-12-02 06:00 UTC"}, {Key: "mode", Value: "quick"}}}
	for _, c := range []int{1, 64} {
		for i, s := range []latency.Series{
			{Design: latency.DesignFloor, Nodes: 1},
			{Design: latency.DesignRedis, Nodes: 3},
			{Design: latency.DesignTierlimit, Nodes: 3},
			{Design: latency.DesignTierlimit, Nodes: 3, Variant: "-lease-ttl -1s"},
		} {
			s.Load, s.Concurrency, s.Count = latency.LoadEnterprise, c, 200_000
			s.Points = dist(float64(c) * float64(i+1))
			d.Series = append(d.Series, s)
		}
	}
	d.Series = append(d.Series, latency.Series{Load: latency.LoadMixed, Design: latency.DesignFloor, Nodes: 3, Concurrency: 64, Count: 1000, Points: dist(1)})
	return d
}

func TestLatencySVG(t *testing.T) {
	f, err := Latency(latencyData(), latency.LoadEnterprise, []int{1, 64})
	require.NoError(t, err)
	doc := parseSVG(t, render(t, f, "svg"))
	for _, want := range []string{
		"Latency by percentile: every request a full check (enterprise keys)",
		"bench/run.sh --quick, 2026-12-02 06:00 UTC",
		"c = 1: one request at a time", "c = 64: 64 requests in flight",
		"percentile", "latency (ms, log scale)",
		"p50", "p90", "p99", "p99.9", "p99.99",
	} {
		assert.Contains(t, doc.texts, want)
	}
	labels := []string{"no limiter (floor), 1 node", "central Redis, 3 nodes", "tierlimit, 3 nodes", "tierlimit, 3 nodes (-lease-ttl -1s)"}
	for _, l := range labels {
		n := 0
		for _, s := range doc.texts {
			if s == l {
				n++
			}
		}
		assert.Equal(t, 1, n, "legend entry %q", l)
	}
	assert.NotContains(t, doc.texts, "no limiter (floor), 3 nodes", "the mixed run is not drawn")
	// The tierlimit line in both panels and in the legend.
	n, dashed := doc.strokes(color.RGBA{R: 0x1f, G: 0x6f, B: 0xb4, A: 0xff})
	assert.GreaterOrEqual(t, n, 3)
	assert.Equal(t, 0, dashed, "3 nodes: solid")
	n, dashed = doc.strokes(color.RGBA{R: 0x60, G: 0x60, B: 0x60, A: 0xff})
	assert.GreaterOrEqual(t, n, 3)
	assert.Equal(t, 3, dashed, "1 node: dashed")
}

func TestLatencyDropsThinTail(t *testing.T) {
	d := latencyData()
	for i := range d.Series {
		d.Series[i].Count = 5000 // p99.9 is 5 responses: too few
	}
	f, err := Latency(d, latency.LoadEnterprise, []int{64})
	require.NoError(t, err)
	doc := parseSVG(t, render(t, f, "svg"))
	assert.Contains(t, doc.texts, "p99")
	assert.NotContains(t, doc.texts, "p99.9")
	assert.Len(t, f.Plots[0], 1)
}

func TestLatencyQuantilesOnly(t *testing.T) {
	d := latencyData()
	d.Series[0].Quantiles = true
	f, err := Latency(d, latency.LoadEnterprise, []int{1})
	require.NoError(t, err)
	assert.Contains(t, f.Subtitle, "the runs had no percentile distribution")
}

func TestLatencyErrors(t *testing.T) {
	_, err := Latency(latencyData(), latency.LoadEnterprise, []int{16})
	require.Error(t, err)
	assert.Contains(t, err.Error(), "no enterprise runs at c=16")

	d := latencyData()
	for i := range d.Series {
		d.Series[i].Count = 1
	}
	_, err = Latency(d, latency.LoadEnterprise, []int{1})
	require.Error(t, err)
	assert.Contains(t, err.Error(), "too few responses")
}

func TestNinesScale(t *testing.T) {
	s := ninesScale{}
	for _, tc := range []struct{ p, want float64 }{{90, 0}, {99, 0.5}, {99.9, 1}} {
		assert.InDelta(t, tc.want, s.Normalize(90, 99.9, tc.p), 1e-9, "Normalize(90, 99.9, %v)", tc.p)
	}
}
