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
	admittedColor    = color.RGBA{R: 0x1f, G: 0x6f, B: 0xb4, A: 0xff}
	refusedColor     = color.RGBA{R: 0xd6, G: 0x27, B: 0x28, A: 0xff}
	costRefusedColor = color.RGBA{R: 0xe8, G: 0x8a, B: 0x00, A: 0xff}
	slotRefusedColor = color.RGBA{R: 0x8e, G: 0x44, B: 0xad, A: 0xff}
	unnamedColor     = color.RGBA{R: 0x8c, G: 0x56, B: 0x4b, A: 0xff}
	costColor        = color.RGBA{R: 0x1a, G: 0x8a, B: 0x3c, A: 0xff}
	otherColor       = color.RGBA{R: 0x70, G: 0x70, B: 0x70, A: 0xff}
	degradedFill     = color.RGBA{R: 0xfd, G: 0xe3, B: 0xcc, A: 0xff}
	phaseText        = color.RGBA{R: 0x8a, G: 0x4a, B: 0x10, A: 0xff}
	normalText       = color.RGBA{R: 0x55, G: 0x55, B: 0x55, A: 0xff}
)

// Series labels in the timeline's legend; tests look for them.
const (
	AdmittedLabel = "admitted (200)"
	RefusedLabel  = "refused (429)"
	OtherLabel    = "other status or no response"
	DegradedLabel = "DEGRADED in force"
)

// RefusedByLabel is the legend's label of the requests refused by limit
// (a key of timeline.Tier.RefusedBy).
func RefusedByLabel(limit string) string {
	if limit == timeline.RefusedUnnamed {
		return "refused (429), no limit named"
	}
	return "refused (429) by the " + limit + " limit"
}

// CostLabel is the legend's label of the cost admitted, in unit.
func CostLabel(unit string) string {
	return cmp.Or(unit, "cost") + " admitted"
}

// Line styles of the timeline.
var (
	refusedDashes = []vg.Length{vg.Points(6), vg.Points(3)}
	otherDashes   = []vg.Length{vg.Points(1.5), vg.Points(2.5)}
)

// refusedStyle returns the colour and dashes of the line of the requests
// refused by limit.
func refusedStyle(limit string) (color.Color, []vg.Length) {
	switch limit {
	case timeline.RefusedRequests:
		return refusedColor, refusedDashes
	case timeline.RefusedCost:
		return costRefusedColor, []vg.Length{vg.Points(3), vg.Points(2)}
	case timeline.RefusedConcurrency:
		return slotRefusedColor, []vg.Length{vg.Points(8), vg.Points(2), vg.Points(2), vg.Points(2)}
	default:
		return unnamedColor, []vg.Length{vg.Points(4), vg.Points(4)}
	}
}

// Timeline draws r: one row per tier (in order of their NORMAL limits),
// on a shaded band where DEGRADED was in force (from its POST to the POST
// of NORMAL). On the left, the admitted requests per second as a solid
// line and the refused as a dashed one, one per limit that refused the
// tier's requests when the record says which (a tier that refused nothing
// has its zeros in the first limit's style); on the right, when a tier
// limits cost, the cost its admitted jobs were charged per second. r must
// be valid.
func Timeline(r *timeline.Record) *Figure {
	s := timeline.Summarize(r)
	tiers := slices.Clone(r.Tiers)
	slices.SortStableFunc(tiers, func(a, b timeline.Tier) int { return cmp.Compare(a.Burst, b.Burst) })
	spans := phaseSpans(r)
	other, costs := false, false
	refusals := map[string]bool{} // the limits that refused anything
	for _, t := range tiers {
		if sum(t.Other)+sum(t.Failed) > 0 {
			other = true
		}
		if t.Cost != nil && t.CostAdmitted != nil {
			costs = true
		}
		for by, counts := range t.RefusedBy {
			if sum(counts) > 0 {
				refusals[by] = true
			}
		}
	}
	byLimit := timeline.Refusals(refusals)

	f := &Figure{
		Title:    "Requests per second by tier, NORMAL → DEGRADED → NORMAL",
		Subtitle: timelineSubtitle(r, s, costs),
		Width:    vg.Points(600),
		Height:   vg.Points(150 + 165*float64(len(tiers))),
	}
	if costs {
		f.Title = "Requests and " + cmp.Or(r.CostUnit, "cost") + " per second by tier, NORMAL → DEGRADED → NORMAL"
		f.Width = vg.Points(900)
		f.Height = vg.Points(170 + 175*float64(len(tiers)))
	}
	// panel returns a plot of the row of tier i: the time axis, labelled
	// in the last row, and the phases, named in the first.
	panel := func(i int) *plot.Plot {
		p := newPlot()
		p.X.Min, p.X.Max = 0, float64(r.Seconds)
		p.X.Tick.Marker = secondTicks{}
		if i == len(tiers)-1 {
			p.X.Label.Text = "seconds since the start of the run"
		} else {
			p.X.Tick.Marker = blankLabels{secondTicks{}}
		}
		p.Y.Min = 0
		p.Y.Tick.Marker = countTicks{}
		for _, sp := range spans { // a copy per panel
			if i > 0 {
				sp.label = "" // the phases are named in the top row only
			}
			p.Add(&sp)
		}
		p.Add(plotter.NewGrid())
		return p
	}
	for i, t := range tiers {
		p := panel(i)
		p.Title.Text = tierTitle(t, r.WindowSeconds)
		if costs {
			p.Title.Text = tierTitleTwoLines(t, r.WindowSeconds)
		}
		p.Y.Label.Text = "requests/s"
		p.Y.Max = headroom(t)
		if other {
			p.Add(stepLine(addSeries(t.Other, t.Failed), otherColor, otherDashes))
		}
		// A line per limit that refused this tier's requests, the first
		// checked on top; with none, its refusals (none, or not split) in
		// the style of the first limit in the legend.
		drawn := false
		for _, by := range slices.Backward(byLimit) {
			if sum(t.RefusedBy[by]) > 0 {
				c, dashes := refusedStyle(by)
				p.Add(stepLine(t.RefusedBy[by], c, dashes))
				drawn = true
			}
		}
		if !drawn {
			c, dashes := color.Color(refusedColor), refusedDashes
			if len(byLimit) > 0 {
				c, dashes = refusedStyle(byLimit[0])
			}
			p.Add(stepLine(t.Refused, c, dashes))
		}
		p.Add(stepLine(t.Admitted, admittedColor, nil))
		row := []*plot.Plot{p}
		if costs {
			c := panel(i)
			c.Title.Text = costTitle(t, r.WindowSeconds, r.CostUnit)
			c.Y.Label.Text = cmp.Or(r.CostUnit, "cost") + "/s"
			c.Y.Max = costHeadroom(t)
			c.Add(stepLine(orZeros(t.CostAdmitted, r.Seconds), costColor, nil))
			row = append(row, c)
		}
		f.Plots = append(f.Plots, row)
	}
	f.Legend = []LegendEntry{{AdmittedLabel, stepLine(nil, admittedColor, nil)}}
	if len(byLimit) == 0 {
		f.Legend = append(f.Legend, LegendEntry{RefusedLabel, stepLine(nil, refusedColor, refusedDashes)})
	}
	for _, by := range byLimit {
		c, dashes := refusedStyle(by)
		f.Legend = append(f.Legend, LegendEntry{RefusedByLabel(by), stepLine(nil, c, dashes)})
	}
	if other {
		f.Legend = append(f.Legend, LegendEntry{OtherLabel, stepLine(nil, otherColor, otherDashes)})
	}
	if costs {
		f.Legend = append(f.Legend, LegendEntry{CostLabel(r.CostUnit), stepLine(nil, costColor, nil)})
	}
	f.Legend = append(f.Legend, LegendEntry{DegradedLabel, &span{fill: degradedFill}})
	return f
}

// orZeros returns xs, or n zeros if xs is nil.
func orZeros(xs []int, n int) []int {
	if xs == nil {
		return make([]int, n)
	}
	return xs
}

// timelineSubtitle says what was run and how fast the state spread; with
// costs, what a request's job was.
func timelineSubtitle(r *timeline.Record, s timeline.Summary, costs bool) string {
	where := ""
	if loopback(r.Targets) {
		where = " on loopback"
	}
	lines := []string{fmt.Sprintf("%d-node cluster%s, requests round-robin over the nodes, each tier at a steady rate", len(r.Targets), where)}
	if costs {
		job := "each request a job"
		if r.Work > 0 {
			job = "each request a job of " + millis(r.Work.Duration())
		}
		lines = append(lines, fmt.Sprintf("%s: its estimate of %s reserved when it is admitted, its cost charged when it ends", job, cmp.Or(r.CostUnit, "cost")))
	}
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
	per := perWindow(window)
	return fmt.Sprintf("%s: %s req/s over %d keys; per key %d%s NORMAL, %d%s DEGRADED",
		t.Name, strconv.FormatFloat(t.Rate, 'f', -1, 64), t.Keys, t.Burst, per, t.Degraded, per)
}

// tierTitleTwoLines is tierTitle over two lines, with the tier's
// concurrency limits, for a panel half as wide.
func tierTitleTwoLines(t timeline.Tier, window int) string {
	per := perWindow(window)
	head := fmt.Sprintf("%s: %s req/s over %d keys; limits per key:\n", t.Name, strconv.FormatFloat(t.Rate, 'f', -1, 64), t.Keys)
	if c := t.Concurrency; c != nil {
		return head + fmt.Sprintf("%d%s and %d at once NORMAL, %d%s and %d DEGRADED", t.Burst, per, c.Burst, t.Degraded, per, c.Degraded)
	}
	return head + fmt.Sprintf("%d%s NORMAL, %d%s DEGRADED", t.Burst, per, t.Degraded, per)
}

// costTitle names a tier's cost panel: its jobs and its cost limits.
func costTitle(t timeline.Tier, window int, unit string) string {
	if t.Cost == nil {
		return t.Name + ": no cost limit\n "
	}
	per := perWindow(window)
	job := fmt.Sprintf("%s: jobs of %d %s", t.Name, t.CostPerJob, cmp.Or(unit, "cost"))
	if t.Estimate != t.CostPerJob {
		job += fmt.Sprintf(", %d reserved", t.Estimate)
	}
	return fmt.Sprintf("%s; limits per key:\n%d%s NORMAL, %d%s DEGRADED", job, t.Cost.Burst, per, t.Cost.Degraded, per)
}

// perWindow names the window after a count: "/min", or "/10 s".
func perWindow(window int) string {
	if window == 60 {
		return "/min"
	}
	return fmt.Sprintf("/%d s", window)
}

// costHeadroom returns the top of a tier's cost axis: room above its
// cost per second, sent or admitted, for the phase labels.
func costHeadroom(t timeline.Tier) float64 {
	top := t.Rate * float64(t.CostPerJob)
	for _, c := range t.CostAdmitted {
		top = max(top, float64(c))
	}
	if top <= 0 {
		return 1
	}
	return top * 1.3
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

// stepLine returns counts ys as floatSteps 2 points wide.
func stepLine(ys []int, c color.Color, dashes []vg.Length) *plotter.Line {
	return floatSteps(ints(ys), c, dashes, 2)
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
