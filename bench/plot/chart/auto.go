package chart

import (
	"cmp"
	"fmt"
	"image/color"
	"math"
	"slices"
	"strconv"
	"strings"
	"time"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/vg"
	"gonum.org/v1/plot/vg/draw"

	"github.com/tierlimit/tierlimit/bench/plot/surge"
)

// Colours of the surge picture.
var (
	enterpriseFill = color.RGBA{R: 0x0b, G: 0x3c, B: 0x7a, A: 0xff}
	proFill        = color.RGBA{R: 0x3d, G: 0x85, B: 0xc6, A: 0xff}
	freeFill       = color.RGBA{R: 0x9e, G: 0xc9, B: 0xe8, A: 0xff}
	refusedFill    = color.RGBA{R: 0xe3, G: 0x6b, B: 0x6b, A: 0xff}
	noAnswerFill   = color.RGBA{R: 0x9a, G: 0x9a, B: 0x9a, A: 0xff}
	deferredFill   = color.RGBA{R: 0xd9, G: 0xd9, B: 0xd9, A: 0xff}
	otherFill      = color.RGBA{R: 0x8c, G: 0x56, B: 0x4b, A: 0xff}
	p99Color       = color.RGBA{R: 0xb0, G: 0x1c, B: 0x2e, A: 0xff}
	p50Color       = color.RGBA{R: 0x1f, G: 0x6f, B: 0xb4, A: 0xff}
	targetColor    = color.RGBA{R: 0x1a, G: 0x8a, B: 0x3c, A: 0xff}
	saturationCol  = color.RGBA{R: 0x1f, G: 0x6f, B: 0xb4, A: 0xff}
	demandColor    = color.RGBA{R: 0xd9, G: 0x6c, B: 0x00, A: 0xff}
	offeredColor   = color.RGBA{R: 0x22, G: 0x22, B: 0x22, A: 0xff}
	markColor      = color.RGBA{R: 0x70, G: 0x70, B: 0x70, A: 0xff}
	surgeLine      = color.RGBA{R: 0x40, G: 0x40, B: 0x40, A: 0xff}
)

// Dashes of the surge picture's reference lines.
var (
	markDashes    = []vg.Length{vg.Points(4), vg.Points(3)}
	offeredDashes = []vg.Length{vg.Points(1), vg.Points(2)}
)

// Labels of the surge picture's legend; tests look for them.
const (
	NoAnswerLabel   = "no answer in 10 s, or not sent"
	DeferredLabel   = "not sent: waiting out Retry-After"
	P99Label        = "paid p99"
	P50Label        = "paid p50"
	UnloadedLabel   = "unloaded paid p99"
	TargetLabel     = "1.5 × unloaded p99 (target)"
	SaturationLabel = "cluster saturation"
	DemandLabel     = "cluster demand"
	OfferedLabel    = "jobs sent / capacity"
	CapacityLabel   = "capacity (jobs/s)"
)

// Bounds of the picture's log axes.
const (
	latencyFloor = 0.05 // s
	loadFloor    = 0.25
	loadCeiling  = 12
)

// Auto draws f: a column per run (a record of cmd/surge), three rows. On
// top, the requests per second by what came of them, stacked: each tier's
// admitted, the refused, those with no answer; with the cluster's capacity
// as a line. In the middle, the paid tiers' p99 and p50 per second on a
// log axis, against their unloaded p99 and 1.5 times it. At the bottom,
// the cluster's saturation and demand as the switch's writer saw them, on
// a log axis, against the switch's marks and the load actually sent. Every
// panel shades where a node reported DEGRADED and marks the surge. f must
// be valid.
func Auto(f *surge.File) *Figure {
	sums := make([]surge.Summary, len(f.Runs))
	for i := range f.Runs {
		sums[i] = surge.Summarize(&f.Runs[i])
	}
	fig := &Figure{
		Title:    "A surge of free requests, with the automatic switch off and on",
		Subtitle: autoSubtitle(f, sums),
		Width:    vg.Points(450 * float64(max(len(f.Runs), 1))),
		Height:   vg.Points(790),
	}
	if len(f.Runs) == 1 {
		fig.Width = vg.Points(600)
	}
	// Shared axes, so that the columns compare at a glance.
	reqTop, latTop := 1.0, latencyFloor*2
	for _, r := range f.Runs {
		for s := range r.Seconds {
			due := 0
			for i := range r.Tiers {
				due += r.Tiers[i].Due(s)
			}
			reqTop = max(reqTop, float64(due))
		}
		reqTop = max(reqTop, capacity(&r))
		_, p99 := surge.PaidSeconds(&r)
		for _, v := range p99 {
			latTop = max(latTop, v/1000)
		}
		latTop = max(latTop, r.Timeout.Seconds())
	}
	reqTop *= 1.15
	latTop *= 1.6

	var requests, latencies, loads []*plot.Plot
	var stacked []layer // the layers drawn, each once, for the legend
	for i := range f.Runs {
		r, s := &f.Runs[i], sums[i]
		bands := degradedSpans(r)
		frame := func(p *plot.Plot, label bool) {
			p.X.Min, p.X.Max = 0, float64(r.Seconds)
			p.X.Tick.Marker = blankLabels{secondTicks{}}
			for _, b := range bands {
				p.Add(&b)
			}
			p.Add(plotter.NewGrid())
			surgeAt := &surgeMarks{from: s.SurgeStart, to: s.SurgeEnd, label: label}
			p.Add(surgeAt)
		}

		// Requests per second, stacked.
		rq := newPlot()
		rq.Title.Text = runTitle(r)
		frame(rq, true)
		rq.Y.Min, rq.Y.Max = 0, reqTop
		rq.Y.Tick.Marker = countTicks{}
		if i == 0 {
			rq.Y.Label.Text = "requests/s (by second due)"
		}
		layers := requestLayers(r)
		lo := make([]float64, r.Seconds)
		for _, l := range layers {
			if sumF(l.values) == 0 {
				continue // nothing to stack, and no shape the legend would not explain
			}
			hi := make([]float64, r.Seconds)
			for s := range hi {
				hi[s] = lo[s] + l.values[s]
			}
			rq.Add(&stackBand{lo: lo, hi: hi, fill: l.fill})
			lo = hi
			if !slices.ContainsFunc(stacked, func(s layer) bool { return s.label == l.label }) {
				stacked = append(stacked, l)
			}
		}
		if c := capacity(r); c > 0 {
			l := hline(c, surgeLine, []vg.Length{vg.Points(5), vg.Points(3)}, 1.2)
			l.label = "capacity " + strconv.FormatFloat(c, 'f', -1, 64) + " jobs/s"
			rq.Add(l)
		}
		requests = append(requests, rq)

		// Paid latency per second.
		lt := newPlot()
		lt.Title.Text = paidLatencyTitle(r, s)
		frame(lt, false)
		logAxis(&lt.Y, latencyFloor, latTop)
		if i == 0 {
			lt.Y.Label.Text = "latency (s, log scale)"
		}
		if u := s.Unloaded.P99 / 1000; u > 0 {
			lt.Add(hline(math.Log10(u), markColor, []vg.Length{vg.Points(1.5), vg.Points(2)}, 1.2))
			lt.Add(hline(math.Log10(1.5*u), targetColor, []vg.Length{vg.Points(6), vg.Points(3)}, 1.2))
		}
		p50, p99 := surge.PaidSeconds(r)
		lt.Add(floatSteps(logs(scale(p50, 0.001), latencyFloor), p50Color, nil, 1.5))
		lt.Add(floatSteps(logs(scale(p99, 0.001), latencyFloor), p99Color, nil, 2))
		latencies = append(latencies, lt)

		// The cluster's load as the writer saw it.
		ld := newPlot()
		ld.Title.Text = loadTitle(r)
		frame(ld, false)
		ld.X.Tick.Marker = secondTicks{}
		ld.X.Label.Text = "seconds since the start of the run"
		logAxis(&ld.Y, loadFloor, loadCeiling)
		if i == 0 {
			ld.Y.Label.Text = "load (1 = full, log scale)"
		}
		if st := r.Settings; st != nil {
			high := hline(math.Log10(st.High), markColor, markDashes, 1)
			high.label = "high " + strconv.FormatFloat(st.High, 'f', -1, 64)
			low := hline(math.Log10(st.Low), markColor, markDashes, 1)
			low.label, low.below = "low "+strconv.FormatFloat(st.Low, 'f', -1, 64), true
			ld.Add(high, low)
		}
		if c := capacity(r); c > 0 {
			ld.Add(floatSteps(logs(scale(sent(r), 1/c), loadFloor), offeredColor, offeredDashes, 1.5))
		}
		if n := writerNode(r); n != nil {
			ld.Add(floatSteps(logs(n.Saturation, loadFloor), saturationCol, nil, 2))
			ld.Add(floatSteps(logs(n.Demand, loadFloor), demandColor, []vg.Length{vg.Points(6), vg.Points(2)}, 2))
		}
		loads = append(loads, ld)
	}
	fig.Plots = [][]*plot.Plot{requests, latencies, loads}

	// The stack's layers in the order they are stacked.
	order := requestLayers(&f.Runs[0])
	slices.SortStableFunc(stacked, func(a, b layer) int {
		rank := func(l layer) int {
			if i := slices.IndexFunc(order, func(o layer) bool { return o.label == l.label }); i >= 0 {
				return i
			}
			return len(order)
		}
		return cmp.Compare(rank(a), rank(b))
	})
	for _, l := range stacked {
		fig.Legend = append(fig.Legend, LegendEntry{l.label, &stackBand{fill: l.fill}})
	}
	fig.Legend = append(fig.Legend,
		LegendEntry{CapacityLabel, hline(0, surgeLine, []vg.Length{vg.Points(5), vg.Points(3)}, 1.2)},
		LegendEntry{P99Label, floatSteps(nil, p99Color, nil, 2)},
		LegendEntry{P50Label, floatSteps(nil, p50Color, nil, 1.5)},
		LegendEntry{UnloadedLabel, hline(0, markColor, []vg.Length{vg.Points(1.5), vg.Points(2)}, 1.2)},
		LegendEntry{TargetLabel, hline(0, targetColor, []vg.Length{vg.Points(6), vg.Points(3)}, 1.2)},
		LegendEntry{SaturationLabel, floatSteps(nil, saturationCol, nil, 2)},
		LegendEntry{DemandLabel, floatSteps(nil, demandColor, []vg.Length{vg.Points(6), vg.Points(2)}, 2)},
		LegendEntry{OfferedLabel, floatSteps(nil, offeredColor, offeredDashes, 1.5)},
		LegendEntry{DegradedLabel, &span{fill: degradedFill}},
	)
	return fig
}

// runTitle names a run's column, and what its nodes ran with besides.
func runTitle(r *surge.Run) string {
	title := r.Name
	switch r.Mode {
	case surge.ModeManual:
		title += ": NORMAL pinned (the switch off)"
	case surge.ModeAuto:
		title += ": the automatic switch on"
	}
	if r.Setup != "" {
		title += ", " + r.Setup
	}
	return title
}

// paidLatencyTitle names a run's latency panel: its paid tiers and their
// unloaded p99.
func paidLatencyTitle(r *surge.Run, s surge.Summary) string {
	return fmt.Sprintf("%s latency per second (unloaded p99 %s)", strings.Join(r.Paid, " + "), latencyText(s.Unloaded.P99))
}

// loadTitle names a run's load panel: whose view, and the marks.
func loadTitle(r *surge.Run) string {
	who := "the first node"
	if n := writerNode(r); n != nil && n.Name != "" {
		who = n.Name
	}
	return "the cluster's load as " + who + " saw it (a node reports at most 10)"
}

// latencyText formats milliseconds: "105 ms", "6.90 s".
func latencyText(v float64) string {
	if v >= 1000 {
		return fmt.Sprintf("%.2f s", v/1000)
	}
	return fmt.Sprintf("%.0f ms", v)
}

// autoSubtitle says what was run and what came of it.
func autoSubtitle(f *surge.File, sums []surge.Summary) string {
	if len(f.Runs) == 0 {
		return ""
	}
	r := &f.Runs[0]
	where := ""
	if loopback(r.Targets) {
		where = " on loopback"
	}
	var lines []string
	head := fmt.Sprintf("%d nodes%s, each running %d jobs of %s at once (%s jobs/s in all), requests round-robin over them",
		len(r.Targets), where, r.Capacity, millis(r.Work.Duration()), strconv.FormatFloat(capacity(r), 'f', -1, 64))
	lines = append(lines, head)
	lines = append(lines, loadText(r.Phases)+fmt.Sprintf("; client timeout %s", secondsText(r.Timeout.Duration())))
	for i, s := range sums {
		if f.Runs[i].Mode != surge.ModeAuto {
			continue
		}
		line := f.Runs[i].Name + ": "
		if s.ToDegraded >= 0 {
			line += fmt.Sprintf("DEGRADED on every node %.1f s into the surge", s.ToDegraded)
		} else {
			line += "not DEGRADED on every node in the surge"
		}
		switch {
		case s.Normal && s.ToNormal >= 0:
			line += fmt.Sprintf(", NORMAL %.1f s after it", s.ToNormal)
		case s.Normal:
			line += fmt.Sprintf(", NORMAL %.1f s before it ended", -s.ToNormal)
		}
		line += fmt.Sprintf("; %d switch%s up, %d down", s.Up, plural(s.Up, "", "es"), s.Down)
		if s.Drained >= 0 {
			line += fmt.Sprintf("; backlog drained %.1f s after the switch", s.Drained)
		}
		lines = append(lines, line)
	}
	for i, s := range sums {
		part := fmt.Sprintf("%s: paid p99 unloaded %s, whole surge %s", f.Runs[i].Name, latencyText(s.Unloaded.P99), latencyText(s.Surge.P99))
		if s.Surge.Failed > 0 {
			part += fmt.Sprintf(" (%d of %d paid requests unanswered, counted at the timeout)", s.Surge.Failed, s.Surge.N)
		}
		if s.AfterSwitch != nil {
			part += fmt.Sprintf(", after the switch (s %d-%d) %s", s.AfterSwitch.From, s.AfterSwitch.To, latencyText(s.AfterSwitch.P99))
		}
		if s.AfterDrain != nil {
			part += fmt.Sprintf(", after the drain (s %d-%d) %s", s.AfterDrain.From, s.AfterDrain.To, latencyText(s.AfterDrain.P99))
		}
		lines = append(lines, part)
	}
	if f.Commit != "" {
		lines[0] += "; at " + f.Commit
	}
	return strings.Join(lines, "\n")
}

// loadText says what each tier sent: "enterprise 30 + pro 30 req/s
// throughout; free 360 req/s in 15-45 s", the rates that are the same in
// every phase first.
func loadText(phases []surge.Phase) string {
	steady := map[string]float64{}
	for t, r := range phases[0].Rates {
		same := r > 0
		for _, p := range phases[1:] {
			same = same && p.Rates[t] == r
		}
		if same {
			steady[t] = r
		}
	}
	var parts []string
	if len(steady) > 0 {
		parts = append(parts, phaseRates(steady)+" throughout")
	}
	for _, p := range phases {
		rest := map[string]float64{}
		for t, r := range p.Rates {
			if _, ok := steady[t]; !ok && r > 0 {
				rest[t] = r
			}
		}
		if len(rest) > 0 {
			parts = append(parts, fmt.Sprintf("%s in %.0f-%.0f s", phaseRates(rest), p.Start.Seconds(), p.End.Seconds()))
		}
	}
	return strings.Join(parts, "; ")
}

// plural returns one if n is 1, else many.
func plural(n int, one, many string) string {
	if n == 1 {
		return one
	}
	return many
}

// secondsText formats a whole number of seconds, or milliseconds.
func secondsText(d time.Duration) string {
	if d%time.Second == 0 {
		return strconv.FormatInt(int64(d/time.Second), 10) + " s"
	}
	return millis(d)
}

// phaseRates formats a phase's rates, largest first: "free 360 + pro 30 +
// enterprise 30 req/s".
func phaseRates(m map[string]float64) string {
	names := make([]string, 0, len(m))
	for n, r := range m {
		if r > 0 {
			names = append(names, n)
		}
	}
	slices.SortFunc(names, func(a, b string) int { return cmp.Or(cmp.Compare(m[b], m[a]), cmp.Compare(a, b)) })
	parts := make([]string, len(names))
	for i, n := range names {
		parts[i] = n + " " + strconv.FormatFloat(m[n], 'f', -1, 64)
	}
	return strings.Join(parts, " + ") + " req/s"
}

// capacity returns the jobs per second the run's cluster runs: its nodes'
// slots over the length of a job; 0 if either is unknown.
func capacity(r *surge.Run) float64 {
	if r.Capacity <= 0 || r.Work <= 0 {
		return 0
	}
	return float64(len(r.Targets)*r.Capacity) / r.Work.Seconds()
}

// sent returns the requests due per second, every tier.
func sent(r *surge.Run) []float64 {
	out := make([]float64, r.Seconds)
	for s := range out {
		for i := range r.Tiers {
			out[s] += float64(r.Tiers[i].Due(s))
		}
	}
	return out
}

// writerNode returns the node that names itself the switch's writer, or
// the first.
func writerNode(r *surge.Run) *surge.Node {
	for i := range r.Nodes {
		if n := &r.Nodes[i]; n.Name != "" && n.Name == n.Writer {
			return n
		}
	}
	if len(r.Nodes) > 0 {
		return &r.Nodes[0]
	}
	return nil
}

// layer is one stacked series of the requests panel.
type layer struct {
	label  string
	values []float64
	fill   color.Color
}

// requestLayers returns the stack, bottom first: each tier's admitted
// requests, the tier with the largest limit at the bottom, then the
// refused of every tier, those with no answer or not sent, those with
// another status, those the client deferred (waiting out Retry-After).
func requestLayers(r *surge.Run) []layer {
	n := r.Seconds
	tiers := slices.Clone(r.Tiers)
	slices.SortStableFunc(tiers, func(a, b surge.Tier) int { return cmp.Compare(b.Burst, a.Burst) }) // the largest limit at the bottom
	refused, noAnswer, other, deferred := make([]float64, n), make([]float64, n), make([]float64, n), make([]float64, n)
	var out []layer
	for _, t := range tiers {
		out = append(out, layer{label: t.Name + " admitted", values: ints(t.Admitted), fill: tierFill(t.Name, slices.Contains(r.Paid, t.Name))})
		for s := range n {
			refused[s] += float64(t.Refused[s])
			noAnswer[s] += float64(t.Failed[s] + t.Unsent[s])
			other[s] += float64(t.Other[s])
			if t.Deferred != nil {
				deferred[s] += float64(t.Deferred[s])
			}
		}
	}
	return append(out,
		layer{label: RefusedLabel, values: refused, fill: refusedFill},
		layer{label: NoAnswerLabel, values: noAnswer, fill: noAnswerFill},
		layer{label: OtherLabel, values: other, fill: otherFill},
		layer{label: DeferredLabel, values: deferred, fill: deferredFill})
}

// tierFill is the colour of a tier's admitted requests.
func tierFill(name string, paid bool) color.Color {
	switch {
	case name == "enterprise":
		return enterpriseFill
	case name == "pro":
		return proFill
	case paid:
		return costColor
	}
	return freeFill
}

func sumF(xs []float64) float64 {
	t := 0.0
	for _, x := range xs {
		t += x
	}
	return t
}

func scale(xs []float64, k float64) []float64 {
	out := make([]float64, len(xs))
	for i, x := range xs {
		out[i] = x * k
	}
	return out
}

// degradedSpans returns a shaded span for each stretch in which a node of
// r reported DEGRADED (from the first node's report to the last node's
// report of NORMAL again).
func degradedSpans(r *surge.Run) []span {
	type edge struct {
		at float64
		up bool
	}
	var edges []edge
	for _, n := range r.Nodes {
		for i, c := range n.Changes {
			prev := ""
			if i > 0 {
				prev = n.Changes[i-1].Status
			}
			switch {
			case c.Status == surge.Degraded && prev != surge.Degraded:
				edges = append(edges, edge{c.At.Seconds(), true})
			case c.Status != surge.Degraded && prev == surge.Degraded:
				edges = append(edges, edge{c.At.Seconds(), false})
			}
		}
	}
	slices.SortStableFunc(edges, func(a, b edge) int { return cmp.Compare(a.at, b.at) })
	var out []span
	in, from := 0, 0.0
	for _, e := range edges {
		if e.up {
			if in == 0 {
				from = e.at
			}
			in++
			continue
		}
		in--
		if in == 0 {
			out = append(out, span{from: from, to: e.at, fill: degradedFill})
		}
	}
	if in > 0 {
		out = append(out, span{from: from, to: float64(r.Seconds), fill: degradedFill})
	}
	return out
}

// stackBand fills between two step series: lo and hi over each second
// [i, i+1).
type stackBand struct {
	lo, hi []float64
	fill   color.Color
}

// Plot implements plot.Plotter.
func (b *stackBand) Plot(c draw.Canvas, p *plot.Plot) {
	n := len(b.hi)
	if n == 0 {
		return
	}
	trX, trY := p.Transforms(&c)
	pt := func(x, y float64) vg.Point { return vg.Point{X: trX(x), Y: trY(min(max(y, p.Y.Min), p.Y.Max))} }
	var path vg.Path
	path.Move(pt(0, b.lo[0]))
	for i := range n {
		path.Line(pt(float64(i), b.hi[i]))
		path.Line(pt(float64(i+1), b.hi[i]))
	}
	for i := n - 1; i >= 0; i-- {
		path.Line(pt(float64(i+1), b.lo[i]))
		path.Line(pt(float64(i), b.lo[i]))
	}
	path.Close()
	c.SetColor(b.fill)
	c.Fill(path)
}

// Thumbnail implements plot.Thumbnailer.
func (b *stackBand) Thumbnail(c *draw.Canvas) {
	c.SetColor(b.fill)
	c.Fill(c.Rectangle.Path())
}

// surgeMarks draws the surge's bounds as thin vertical lines, named at
// the top if label is set.
type surgeMarks struct {
	from, to float64
	label    bool
}

// Plot implements plot.Plotter.
func (m *surgeMarks) Plot(c draw.Canvas, p *plot.Plot) {
	trX, _ := p.Transforms(&c)
	st := draw.LineStyle{Color: surgeLine, Width: vg.Points(0.8), Dashes: []vg.Length{vg.Points(3), vg.Points(2)}}
	for _, x := range []float64{m.from, m.to} {
		if x < p.X.Min || x > p.X.Max {
			continue
		}
		c.StrokeLine2(st, trX(x), c.Min.Y, trX(x), c.Max.Y)
	}
	if m.label {
		ts := textStyle(labelSize, surgeLine)
		c.FillText(ts, vg.Point{X: (trX(m.from) + trX(m.to)) / 2, Y: c.Max.Y - vg.Points(4)}, "free surge")
	}
}

// hline returns a horizontal line at y across the plot (nil-safe for a
// legend: y 0).
func hline(y float64, col color.Color, dashes []vg.Length, width float64) *levelLine {
	return &levelLine{y: y, style: draw.LineStyle{Color: col, Width: vg.Points(width), Dashes: dashes}}
}

// levelLine is a horizontal line at y, named by label at its right end,
// above it or below.
type levelLine struct {
	y     float64
	style draw.LineStyle
	label string
	below bool
}

// Plot implements plot.Plotter.
func (l *levelLine) Plot(c draw.Canvas, p *plot.Plot) {
	if l.y < p.Y.Min || l.y > p.Y.Max {
		return
	}
	_, trY := p.Transforms(&c)
	y := trY(l.y)
	c.StrokeLine2(l.style, c.Min.X, y, c.Max.X, y)
	if l.label != "" {
		st := textStyle(tickSize, l.style.Color)
		st.XAlign, st.YAlign = draw.XRight, draw.YBottom
		y += vg.Points(1.5)
		if l.below {
			st.YAlign = draw.YTop
			y -= vg.Points(3)
		}
		c.FillText(st, vg.Point{X: c.Max.X - vg.Points(3), Y: y}, l.label)
	}
}

// Thumbnail implements plot.Thumbnailer.
func (l *levelLine) Thumbnail(c *draw.Canvas) {
	y := c.Center().Y
	c.StrokeLine2(l.style, c.Min.X, y, c.Max.X, y)
}

// logs returns the base-10 logarithms of xs, each no lower than floor's (a
// log axis has no 0).
func logs(xs []float64, floor float64) []float64 {
	out := make([]float64, len(xs))
	for i, x := range xs {
		out[i] = math.Log10(max(x, floor))
	}
	return out
}

// logAxis makes a a log axis from lo to hi: it holds base-10 logarithms
// (see logs) on a linear scale, so that its label is placed as on any
// other axis, and its ticks name the values (1, 2 and 5 of each decade).
func logAxis(a *plot.Axis, lo, hi float64) {
	a.Min, a.Max = math.Log10(lo), math.Log10(hi)
	a.Tick.Marker = powerTicks{}
}

// powerTicks are logTicks on an axis of base-10 logarithms.
type powerTicks struct{}

// Ticks implements plot.Ticker.
func (powerTicks) Ticks(lo, hi float64) []plot.Tick {
	ts := logTicks{}.Ticks(math.Pow(10, lo), math.Pow(10, hi))
	for i := range ts {
		ts[i].Value = math.Log10(ts[i].Value)
	}
	return ts
}
