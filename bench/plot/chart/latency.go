package chart

import (
	"cmp"
	"fmt"
	"image/color"
	"math"
	"slices"
	"strconv"
	"strings"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/vg"
	"gonum.org/v1/plot/vg/draw"

	"github.com/tierlimit/tierlimit/bench/plot/latency"
)

// MinTail is how many responses must lie above a percentile for Latency to
// draw it.
const MinTail = 10

// designOrder orders the lines of a latency panel and their legend.
func designOrder(d string) int {
	switch d {
	case latency.DesignFloor:
		return 0
	case latency.DesignRedis:
		return 1
	case latency.DesignTierlimit:
		return 2
	}
	return 3
}

// designName is what the legend calls a design.
func designName(d string) string {
	switch d {
	case latency.DesignFloor:
		return "no limiter (floor)"
	case latency.DesignRedis:
		return "central Redis"
	case latency.DesignTierlimit:
		return "tierlimit"
	}
	return d
}

// SeriesLabel names a series in the latency legend, such as "tierlimit, 3
// nodes".
func SeriesLabel(s latency.Series) string {
	l := designName(s.Design) + ", " + strconv.Itoa(s.Nodes) + " node"
	if s.Nodes != 1 {
		l += "s"
	}
	if s.Variant != "" {
		l += " (" + s.Variant + ")"
	}
	return l
}

// seriesStyle gives each configuration its line: a colour per design, a
// dashed line for one node and a solid one for three, another colour for
// a variant.
func seriesStyle(s latency.Series) (draw.LineStyle, draw.GlyphStyle) {
	c := color.Color(color.RGBA{R: 0x60, G: 0x60, B: 0x60, A: 0xff})
	switch {
	case s.Design == latency.DesignRedis:
		c = color.RGBA{R: 0xc6, G: 0x2a, B: 0x1f, A: 0xff}
	case s.Design == latency.DesignTierlimit && s.Variant != "":
		c = color.RGBA{R: 0x2c, G: 0xa0, B: 0x6e, A: 0xff}
	case s.Design == latency.DesignTierlimit:
		c = color.RGBA{R: 0x1f, G: 0x6f, B: 0xb4, A: 0xff}
	}
	ls := draw.LineStyle{Color: c, Width: vg.Points(1.8)}
	var shape draw.GlyphDrawer = draw.CircleGlyph{}
	if s.Nodes == 1 {
		ls.Dashes = []vg.Length{vg.Points(5), vg.Points(3)}
		shape = draw.BoxGlyph{}
	}
	return ls, draw.GlyphStyle{Color: c, Radius: vg.Points(2.2), Shape: shape}
}

// Latency draws the latency distributions of d's runs of load, one panel
// per concurrency in cs, one line per configuration: latency (log scale)
// against percentile, on an axis that spaces 90, 99, 99.9 evenly. A
// percentile with fewer than MinTail responses above it is left out.
func Latency(d *latency.Data, load string, cs []int) (*Figure, error) {
	f := &Figure{
		Title:  latencyTitle(load),
		Width:  vg.Points(600),
		Height: vg.Points(440),
	}
	f.Subtitle = latencySubtitle(d)
	var row []*plot.Plot
	seen := map[string]bool{}
	quantilesOnly := false
	for _, c := range cs {
		var ss []latency.Series
		for _, s := range d.Series {
			if s.Load == load && s.Concurrency == c {
				ss = append(ss, s)
			}
		}
		if len(ss) == 0 {
			return nil, fmt.Errorf("no %s runs at c=%d", load, c)
		}
		slices.SortStableFunc(ss, func(a, b latency.Series) int {
			return cmp.Or(cmp.Compare(designOrder(a.Design), designOrder(b.Design)),
				cmp.Compare(a.Variant, b.Variant), cmp.Compare(a.Nodes, b.Nodes))
		})
		p := newPlot()
		p.Title.Text = concurrencyTitle(c)
		p.X.Label.Text = "percentile"
		p.X.Scale = ninesScale{}
		p.X.Tick.Marker = ninesTicks{}
		p.Y.Label.Text = "latency (ms, log scale)"
		p.Y.Scale = plot.LogScale{}
		p.Y.Tick.Marker = logTicks{}
		p.Add(plotter.NewGrid())
		lo, hi := math.Inf(1), math.Inf(-1)
		pmin, pmax := math.Inf(1), math.Inf(-1)
		for _, s := range ss {
			qs := s.Tail(MinTail)
			if len(qs) == 0 {
				continue
			}
			quantilesOnly = quantilesOnly || s.Quantiles
			pts := make(plotter.XYs, len(qs))
			for i, q := range qs {
				pts[i] = plotter.XY{X: q.Percentile, Y: q.Value / 1000}
				lo, hi = min(lo, pts[i].Y), max(hi, pts[i].Y)
				pmin, pmax = min(pmin, q.Percentile), max(pmax, q.Percentile)
			}
			line, points, err := plotter.NewLinePoints(pts)
			if err != nil {
				return nil, fmt.Errorf("%s c=%d: %w", SeriesLabel(s), c, err)
			}
			line.LineStyle, points.GlyphStyle = seriesStyle(s)
			p.Add(line, points)
			if label := SeriesLabel(s); !seen[label] {
				seen[label] = true
				f.Legend = append(f.Legend, LegendEntry{label, lineGlyph{line, points}})
			}
		}
		if math.IsInf(lo, 0) {
			return nil, fmt.Errorf("%s runs at c=%d: too few responses for any percentile", load, c)
		}
		p.X.Min, p.X.Max = pmin, pmax
		p.Y.Min, p.Y.Max = lo/1.25, hi*1.25
		row = append(row, p)
	}
	// Legend entries in the panels' order, whatever panel named them first.
	slices.SortStableFunc(f.Legend, func(a, b LegendEntry) int { return cmp.Compare(legendRank(d, a.Label), legendRank(d, b.Label)) })
	if quantilesOnly {
		f.Subtitle += "\n(only the reports' p50, p90, p99 and p99.9: the runs had no percentile distribution)"
	}
	f.Plots = [][]*plot.Plot{row}
	return f, nil
}

// legendRank orders legend labels as the lines are drawn.
func legendRank(d *latency.Data, label string) int {
	ss := slices.Clone(d.Series)
	slices.SortStableFunc(ss, func(a, b latency.Series) int {
		return cmp.Or(cmp.Compare(designOrder(a.Design), designOrder(b.Design)),
			cmp.Compare(a.Variant, b.Variant), cmp.Compare(a.Nodes, b.Nodes))
	})
	for i, s := range ss {
		if SeriesLabel(s) == label {
			return i
		}
	}
	return len(ss)
}

func latencyTitle(load string) string {
	switch load {
	case latency.LoadEnterprise:
		return "Latency by percentile: every request a full check (enterprise keys)"
	case latency.LoadMixed:
		return "Latency by percentile: mixed load (60% free, 30% pro, 10% enterprise)"
	}
	return "Latency by percentile: " + load + " load"
}

func concurrencyTitle(c int) string {
	if c == 1 {
		return "c = 1: one request at a time"
	}
	return fmt.Sprintf("c = %d: %d requests in flight", c, c)
}

// latencySubtitle says where the numbers come from: the run, its date
// and length on one line, the machine on the next.
func latencySubtitle(d *latency.Data) string {
	run := "bench/run.sh"
	if mode := d.MetaValue("mode"); mode != "" && mode != "full" {
		run += " --" + mode
	}
	parts := []string{run}
	if date := d.MetaValue("date"); date != "" {
		parts = append(parts, date)
	}
	if runs, _, _ := strings.Cut(d.MetaValue("runs"), " after"); runs != "" {
		parts = append(parts, strings.Replace(runs, "s each", " s per run", 1))
	}
	lines := []string{strings.Join(parts, ", ")}
	if m := d.MetaValue("machine"); m != "" {
		lines = append(lines, m)
	} else {
		lines = append(lines, "all processes on one machine, on loopback")
	}
	return strings.Join(lines, "\n")
}

// lineGlyph is a legend thumbnail of a line with its points.
type lineGlyph struct {
	line   *plotter.Line
	points *plotter.Scatter
}

// Thumbnail implements plot.Thumbnailer.
func (l lineGlyph) Thumbnail(c *draw.Canvas) {
	l.line.Thumbnail(c)
	l.points.Thumbnail(c)
}

// ninesScale places a percentile p at log10(100 / (100 - p)): 50 at 0.3,
// 90 at 1, 99 at 2, 99.9 at 3, so each "nine" gets the same width.
type ninesScale struct{}

func nines(p float64) float64 { return math.Log10(100 / (100 - p)) }

// Normalize implements plot.Normalizer.
func (ninesScale) Normalize(lo, hi, x float64) float64 {
	a, b := nines(lo), nines(hi)
	if b == a {
		return 0.5
	}
	return (nines(x) - a) / (b - a)
}

// ninesTicks labels p50, p90, p99, p99.9, … and marks 80, 95, 98, … as
// minor ticks.
type ninesTicks struct{}

// Ticks implements plot.Ticker.
func (ninesTicks) Ticks(lo, hi float64) []plot.Tick {
	major := []float64{50, 90, 99, 99.9, 99.99, 99.999}
	minor := []float64{80, 95, 98, 99.5, 99.8, 99.95, 99.98, 99.995, 99.998}
	var ts []plot.Tick
	for _, v := range major {
		if v >= lo-1e-9 && v <= hi+1e-9 {
			ts = append(ts, plot.Tick{Value: v, Label: "p" + strconv.FormatFloat(v, 'f', -1, 64)})
		}
	}
	for _, v := range minor {
		if v >= lo && v <= hi {
			ts = append(ts, plot.Tick{Value: v})
		}
	}
	return ts
}

// logTicks labels 1, 2 and 5 of each decade of milliseconds, with minor
// ticks between, so a short range still gets labels.
type logTicks struct{}

// Ticks implements plot.Ticker.
func (logTicks) Ticks(lo, hi float64) []plot.Tick {
	var ts []plot.Tick
	for e := math.Floor(math.Log10(lo)); math.Pow(10, e) <= hi; e++ {
		base := math.Pow(10, e)
		for m := 1; m < 10; m++ {
			v := float64(m) * base
			if v < lo || v > hi {
				continue
			}
			t := plot.Tick{Value: v}
			if m == 1 || m == 2 || m == 5 {
				t.Label = strconv.FormatFloat(v, 'g', 3, 64)
			}
			ts = append(ts, t)
		}
	}
	return ts
}
