package chart

import (
	"cmp"
	"fmt"
	"image/color"
	"math"
	"net"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	xfont "golang.org/x/image/font"
	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/vg"
	"gonum.org/v1/plot/vg/draw"

	"github.com/tierlimit/tierlimit/bench/plot/timeline"
)

// Colours of the timeline.
var (
	admittedColor = color.RGBA{R: 0x1f, G: 0x6f, B: 0xb4, A: 0xff}
	refusedColor  = color.RGBA{R: 0xd6, G: 0x27, B: 0x28, A: 0xff}
	otherColor    = color.RGBA{R: 0x70, G: 0x70, B: 0x70, A: 0xff}
	degradedFill  = color.RGBA{R: 0xfd, G: 0xe3, B: 0xcc, A: 0xff}
	phaseText     = color.RGBA{R: 0x8a, G: 0x4a, B: 0x10, A: 0xff}
	normalText    = color.RGBA{R: 0x55, G: 0x55, B: 0x55, A: 0xff}
)

// Series labels in the timeline's legend; tests look for them.
const (
	AdmittedLabel = "admitted (200)"
	RefusedLabel  = "refused (429)"
	OtherLabel    = "other status or no response"
	DegradedLabel = "DEGRADED in force"
)

// Timeline draws r: one panel per tier (in order of their NORMAL limits),
// the admitted requests per second as a solid line and the refused as a
// dashed one, on a shaded band where DEGRADED was in force (from its POST
// to the POST of NORMAL). r must be valid.
func Timeline(r *timeline.Record) *Figure {
	s := timeline.Summarize(r)
	tiers := slices.Clone(r.Tiers)
	slices.SortStableFunc(tiers, func(a, b timeline.Tier) int { return cmp.Compare(a.Burst, b.Burst) })
	spans := phaseSpans(r)
	other := false
	for _, t := range tiers {
		if sum(t.Other)+sum(t.Failed) > 0 {
			other = true
		}
	}

	f := &Figure{
		Title:    "Requests per second by tier, NORMAL → DEGRADED → NORMAL",
		Subtitle: timelineSubtitle(r, s),
		Width:    vg.Points(600),
		Height:   vg.Points(150 + 165*float64(len(tiers))),
	}
	for i, t := range tiers {
		p := newPlot()
		p.Title.Text = tierTitle(t, r.WindowSeconds)
		p.X.Min, p.X.Max = 0, float64(r.Seconds)
		p.X.Tick.Marker = secondTicks{}
		if i == len(tiers)-1 {
			p.X.Label.Text = "seconds since the start of the run"
		} else {
			p.X.Tick.Marker = blankLabels{secondTicks{}}
		}
		p.Y.Label.Text = "requests/s"
		p.Y.Min = 0
		p.Y.Max = headroom(t)
		p.Y.Tick.Marker = countTicks{}
		for _, sp := range spans { // a copy per panel
			if i > 0 {
				sp.label = "" // the phases are named in the top panel only
			}
			p.Add(&sp)
		}
		p.Add(plotter.NewGrid())
		if other {
			p.Add(stepLine(addSeries(t.Other, t.Failed), otherColor, []vg.Length{vg.Points(1.5), vg.Points(2.5)}))
		}
		p.Add(stepLine(t.Refused, refusedColor, []vg.Length{vg.Points(6), vg.Points(3)}))
		p.Add(stepLine(t.Admitted, admittedColor, nil))
		f.Plots = append(f.Plots, []*plot.Plot{p})
	}
	f.Legend = []LegendEntry{
		{AdmittedLabel, stepLine(nil, admittedColor, nil)},
		{RefusedLabel, stepLine(nil, refusedColor, []vg.Length{vg.Points(6), vg.Points(3)})},
	}
	if other {
		f.Legend = append(f.Legend, LegendEntry{OtherLabel, stepLine(nil, otherColor, []vg.Length{vg.Points(1.5), vg.Points(2.5)})})
	}
	f.Legend = append(f.Legend, LegendEntry{DegradedLabel, &span{fill: degradedFill}})
	return f
}

// timelineSubtitle says what was run and how fast the state spread.
func timelineSubtitle(r *timeline.Record, s timeline.Summary) string {
	where := ""
	if loopback(r.Targets) {
		where = " on loopback"
	}
	lines := []string{fmt.Sprintf("%d-node cluster%s, requests round-robin over the nodes, each tier at a steady rate", len(r.Targets), where)}
	for _, p := range s.Phases {
		if p.Post == nil {
			continue
		}
		node := cmp.Or(p.Post.Node, p.Post.Target)
		msg := fmt.Sprintf("POST %s to %s at %.1f s", p.Status, node, p.Post.Sent.Seconds())
		if p.Agreed >= 0 {
			msg += fmt.Sprintf(": every node reported it within %s", millis(p.Agreed))
		} else {
			msg += ": not every node reported it"
		}
		lines = append(lines, msg)
	}
	return strings.Join(lines, "\n")
}

// loopback reports whether every target's host is a loopback address.
func loopback(targets []string) bool {
	for _, t := range targets {
		u, err := url.Parse(t)
		if err != nil {
			return false
		}
		ip := net.ParseIP(u.Hostname())
		if u.Hostname() != "localhost" && (ip == nil || !ip.IsLoopback()) {
			return false
		}
	}
	return len(targets) > 0
}

// millis formats d in whole milliseconds.
func millis(d time.Duration) string {
	return strconv.FormatInt(d.Round(time.Millisecond).Milliseconds(), 10) + " ms"
}

// tierTitle names a tier's panel: its load and its limits.
func tierTitle(t timeline.Tier, window int) string {
	per := fmt.Sprintf("/%d s", window)
	if window == 60 {
		per = "/min"
	}
	return fmt.Sprintf("%s: %s req/s over %d keys; per key %d%s NORMAL, %d%s DEGRADED",
		t.Name, strconv.FormatFloat(t.Rate, 'f', -1, 64), t.Keys, t.Burst, per, t.Degraded, per)
}

// headroom returns the top of a tier's y axis: room above its rate for
// the phase labels.
func headroom(t timeline.Tier) float64 {
	top := t.Rate
	for i := range t.Admitted {
		top = max(top, float64(t.Admitted[i]+t.Refused[i]+t.Other[i]+t.Failed[i]))
	}
	if top <= 0 {
		return 1
	}
	return top * 1.3
}

// phaseSpans returns a span per phase: DEGRADED shaded from its POST to
// the next POST, NORMAL clear; both labelled.
func phaseSpans(r *timeline.Record) []span {
	var out []span
	for i, p := range r.Phases {
		from := p.Start.Seconds()
		if p.Post != nil && p.Post.Error == "" {
			from = p.Post.Sent.Seconds()
		}
		to := p.End.Seconds()
		if i+1 < len(r.Phases) {
			if n := r.Phases[i+1].Post; n != nil && n.Error == "" {
				to = n.Sent.Seconds()
			}
		}
		sp := span{from: from, to: to, label: p.Status, labelColor: normalText}
		if p.Status == "DEGRADED" {
			sp.fill, sp.labelColor = degradedFill, phaseText
		}
		out = append(out, sp)
	}
	return out
}

// span marks a stretch of the x axis: a band the full height of the plot,
// filled if fill is set, with label at its top centre.
type span struct {
	from, to   float64
	fill       color.Color
	label      string
	labelColor color.Color
}

// Plot implements plot.Plotter.
func (s *span) Plot(c draw.Canvas, p *plot.Plot) {
	trX, _ := p.Transforms(&c)
	x0 := max(trX(max(s.from, p.X.Min)), c.Min.X)
	x1 := min(trX(min(s.to, p.X.Max)), c.Max.X)
	if x1 <= x0 {
		return
	}
	if s.fill != nil {
		c.SetColor(s.fill)
		c.Fill(vg.Rectangle{Min: vg.Point{X: x0, Y: c.Min.Y}, Max: vg.Point{X: x1, Y: c.Max.Y}}.Path())
	}
	if s.label != "" {
		st := textStyle(labelSize, s.labelColor)
		st.Font.Weight = xfont.WeightBold
		c.FillText(st, vg.Point{X: (x0 + x1) / 2, Y: c.Max.Y - vg.Points(4)}, s.label)
	}
}

// Thumbnail implements plot.Thumbnailer.
func (s *span) Thumbnail(c *draw.Canvas) {
	c.SetColor(s.fill)
	c.Fill(c.Rectangle.Path())
}

// stepLine returns ys[i] drawn flat over second [i, i+1), in colour c,
// dashed if dashes is not empty. Nil ys gives a line for a legend only.
func stepLine(ys []int, c color.Color, dashes []vg.Length) *plotter.Line {
	pts := make(plotter.XYs, 0, len(ys)+1)
	for i, y := range ys {
		pts = append(pts, plotter.XY{X: float64(i), Y: float64(y)})
	}
	if n := len(ys); n > 0 {
		pts = append(pts, plotter.XY{X: float64(n), Y: float64(ys[n-1])})
	}
	l := &plotter.Line{XYs: pts, StepStyle: plotter.PostStep}
	l.LineStyle = draw.LineStyle{Color: c, Width: vg.Points(2), Dashes: dashes}
	return l
}

func sum(xs []int) int {
	n := 0
	for _, x := range xs {
		n += x
	}
	return n
}

func addSeries(a, b []int) []int {
	out := make([]int, len(a))
	for i := range a {
		out[i] = a[i] + b[i]
	}
	return out
}

// secondTicks marks seconds: a labelled tick at a round step that gives
// at most about 8 labels, and minor ticks between.
type secondTicks struct{}

// Ticks implements plot.Ticker.
func (secondTicks) Ticks(lo, hi float64) []plot.Tick {
	span := hi - lo
	step := 1.0
	for _, s := range []float64{1, 2, 5, 10, 15, 20, 30, 60, 120, 300, 600} {
		step = s
		if span/s <= 8 {
			break
		}
	}
	minor := step / 2
	var ticks []plot.Tick
	for x := math.Ceil(lo/minor) * minor; x <= hi+1e-9; x += minor {
		t := plot.Tick{Value: x}
		if math.Mod(x, step) < 1e-9 {
			t.Label = strconv.FormatFloat(x, 'f', -1, 64)
		}
		ticks = append(ticks, t)
	}
	return ticks
}

// blankLabels keeps a ticker's ticks and drops its labels, for a panel
// whose x axis the panel below labels.
type blankLabels struct{ plot.Ticker }

// Ticks implements plot.Ticker.
func (b blankLabels) Ticks(lo, hi float64) []plot.Tick {
	ts := b.Ticker.Ticks(lo, hi)
	for i := range ts {
		if ts[i].Label != "" {
			ts[i].Label = " "
		}
	}
	return ts
}

var _ plot.Thumbnailer = (*span)(nil)

// countTicks labels whole numbers at a round step (1, 2 or 5 times a power
// of ten) that gives 3 to 6 labels, with a minor tick between.
type countTicks struct{}

// Ticks implements plot.Ticker.
func (countTicks) Ticks(lo, hi float64) []plot.Tick {
	step := 1.0
	for e := 0.0; ; e++ {
		base := math.Pow(10, e)
		found := false
		for _, m := range []float64{1, 2, 5} {
			step = m * base
			if (hi-lo)/step <= 5 {
				found = true
				break
			}
		}
		if found {
			break
		}
	}
	var ticks []plot.Tick
	half := step / 2
	for x := math.Ceil(lo/half) * half; x <= hi+1e-9; x += half {
		t := plot.Tick{Value: x}
		if math.Mod(x, step) < 1e-9 {
			t.Label = strconv.FormatFloat(x, 'f', -1, 64)
		}
		ticks = append(ticks, t)
	}
	return ticks
}
