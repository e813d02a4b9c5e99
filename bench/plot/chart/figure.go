// Package chart draws the pictures in docs/img with gonum.org/v1/plot: the
// health timeline (Timeline) and the latency distributions of the
// benchmarked designs (Latency). Each returns a Figure, a title and a
// legend above a grid of aligned plots, which Write renders as SVG or PNG.
//
// The text is set in Liberation Sans (gonum's own fonts, metric-compatible
// with Arial); the SVG does not embed it (that would add half a megabyte)
// but names Arimo, Arial and Helvetica after it, fonts of the same
// metrics, so a browser without it keeps the layout.
package chart

import (
	"bytes"
	"fmt"
	"image/color"
	"io"
	"os"
	"path/filepath"
	"strings"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/font"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/text"
	"gonum.org/v1/plot/vg"
	"gonum.org/v1/plot/vg/draw"
	"gonum.org/v1/plot/vg/vgimg"
	"gonum.org/v1/plot/vg/vgsvg"
)

// sans returns the face of every text, at size points.
func sans(size vg.Length) font.Font {
	return font.From(font.Font{Typeface: "Liberation", Variant: "Sans"}, size)
}

// Text sizes, in points.
const (
	titleSize    = 14
	subtitleSize = 10
	panelSize    = 11
	labelSize    = 10.5
	tickSize     = 9.5
	legendSize   = 10.5
)

// Figure is a titled grid of plots with one legend for all of them.
type Figure struct {
	// Title is drawn at the top, Subtitle (lines split on "\n") under it.
	Title, Subtitle string
	// Plots is the grid, row by row; every row has as many plots.
	Plots [][]*plot.Plot
	// Legend is drawn in a row under the titles.
	Legend []LegendEntry
	// Width and Height are the figure's size.
	Width, Height vg.Length
}

// LegendEntry is one item of a Figure's legend.
type LegendEntry struct {
	Label string
	Thumb plot.Thumbnailer
}

// textStyle returns the style of a text of size points.
func textStyle(size vg.Length, c color.Color) text.Style {
	return text.Style{
		Color:   c,
		Font:    sans(size),
		XAlign:  draw.XCenter,
		YAlign:  draw.YTop,
		Handler: plot.DefaultTextHandler,
	}
}

// newPlot returns a plot with the figure's fonts.
func newPlot() *plot.Plot {
	p := plot.New()
	p.Title.TextStyle.Font = sans(panelSize)
	p.Title.Padding = vg.Points(4)
	for _, a := range []*plot.Axis{&p.X, &p.Y} {
		a.Label.TextStyle.Font = sans(labelSize)
		a.Tick.Label.Font = sans(tickSize)
	}
	p.Legend.TextStyle.Font = sans(legendSize)
	return p
}

// Draw draws f on c.
func (f *Figure) Draw(c draw.Canvas) {
	c.SetColor(color.White)
	c.Fill(c.Rectangle.Path())
	pad := vg.Points(8)
	top := c.Max.Y - pad
	if f.Title != "" {
		st := textStyle(titleSize, color.Black)
		c.FillText(st, vg.Point{X: c.Center().X, Y: top}, f.Title)
		top -= st.Height(f.Title) + vg.Points(3)
	}
	if f.Subtitle != "" {
		st := textStyle(subtitleSize, color.Gray{Y: 0x40})
		for line := range strings.SplitSeq(f.Subtitle, "\n") {
			c.FillText(st, vg.Point{X: c.Center().X, Y: top}, line)
			top -= st.Height(line) + vg.Points(1)
		}
		top -= vg.Points(2)
	}
	if len(f.Legend) > 0 {
		top = f.drawLegend(c, top) - vg.Points(4)
	}
	if len(f.Plots) == 0 {
		return
	}
	area := draw.Crop(c, 0, 0, 0, top-c.Max.Y)
	tiles := draw.Tiles{
		Rows: len(f.Plots), Cols: len(f.Plots[0]),
		PadX: vg.Points(14), PadY: vg.Points(8),
		PadLeft: pad, PadRight: pad + vg.Points(6), PadBottom: pad,
	}
	canvases := plot.Align(f.Plots, tiles, area)
	for i, row := range f.Plots {
		for j, p := range row {
			if p != nil {
				p.Draw(canvases[i][j])
			}
		}
	}
}

// drawLegend draws the legend in rows centred under y and returns the y
// below it.
func (f *Figure) drawLegend(c draw.Canvas, y vg.Length) vg.Length {
	st := textStyle(legendSize, color.Black)
	st.XAlign, st.YAlign = draw.XLeft, draw.YCenter
	thumbW, gap, sep := vg.Points(26), vg.Points(5), vg.Points(18)
	h := st.Height("Mg") + vg.Points(2)
	width := func(e LegendEntry) vg.Length { return thumbW + gap + st.Width(e.Label) }
	maxW := c.Max.X - c.Min.X - vg.Points(24)
	var rows [][]LegendEntry
	var rowW vg.Length
	for _, e := range f.Legend {
		w := width(e)
		if n := len(rows); n == 0 || rowW+sep+w > maxW {
			rows = append(rows, []LegendEntry{e})
			rowW = w
			continue
		}
		rows[len(rows)-1] = append(rows[len(rows)-1], e)
		rowW += sep + w
	}
	for _, row := range rows {
		var total vg.Length
		for i, e := range row {
			if i > 0 {
				total += sep
			}
			total += width(e)
		}
		x := c.Center().X - total/2
		mid := y - h/2
		for _, e := range row {
			tc := draw.Canvas{Canvas: c.Canvas, Rectangle: vg.Rectangle{
				Min: vg.Point{X: x, Y: mid - h/2 + vg.Points(1)}, Max: vg.Point{X: x + thumbW, Y: mid + h/2 - vg.Points(1)},
			}}
			e.Thumb.Thumbnail(&tc)
			c.FillText(st, vg.Point{X: x + thumbW + gap, Y: mid}, e.Label)
			x += width(e) + sep
		}
		y -= h + vg.Points(2)
	}
	return y
}

// Write renders f as format ("svg" or "png") to w.
func Write(w io.Writer, f *Figure, format string) error {
	var c vg.CanvasWriterTo
	switch format {
	case "svg":
		c = vgsvg.New(f.Width, f.Height)
	case "png":
		c = vgimg.PngCanvas{Canvas: vgimg.NewWith(vgimg.UseWH(f.Width, f.Height), vgimg.UseDPI(144))}
	default:
		return fmt.Errorf("format %q: want svg or png", format)
	}
	f.Draw(draw.New(c))
	var b bytes.Buffer
	if _, err := c.WriteTo(&b); err != nil {
		return fmt.Errorf("render %s: %w", format, err)
	}
	out := b.Bytes()
	if format == "svg" {
		out = fontFallback(out)
	}
	_, err := w.Write(out)
	return err
}

// Save writes f to path in the format its extension names.
func Save(path string, f *Figure) error {
	format := strings.TrimPrefix(strings.ToLower(filepath.Ext(path)), ".")
	var b bytes.Buffer
	if err := Write(&b, f, format); err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	return os.WriteFile(path, b.Bytes(), 0o644)
}

// fontFallback names generic families after the Liberation ones in an SVG,
// so that a viewer without them uses a font of the same metrics.
func fontFallback(svg []byte) []byte {
	svg = bytes.ReplaceAll(svg, []byte("font-family:Liberation Sans;"), []byte("font-family:Liberation Sans,Arimo,Arial,Helvetica,sans-serif;"))
	return bytes.ReplaceAll(svg, []byte("font-family:Liberation Serif;"), []byte("font-family:Liberation Serif,Tinos,Times New Roman,serif;"))
}

// floatSteps returns ys[i] drawn flat over second [i, i+1), in colour c,
// dashed if dashes is not empty. Nil ys gives a line for a legend only.
func floatSteps(ys []float64, c color.Color, dashes []vg.Length, width float64) *plotter.Line {
	pts := make(plotter.XYs, 0, len(ys)+1)
	for i, y := range ys {
		pts = append(pts, plotter.XY{X: float64(i), Y: y})
	}
	if n := len(ys); n > 0 {
		pts = append(pts, plotter.XY{X: float64(n), Y: ys[n-1]})
	}
	l := &plotter.Line{XYs: pts, StepStyle: plotter.PostStep}
	l.LineStyle = draw.LineStyle{Color: c, Width: vg.Points(width), Dashes: dashes}
	return l
}

// ints returns xs as floats.
func ints(xs []int) []float64 {
	out := make([]float64, len(xs))
	for i, x := range xs {
		out[i] = float64(x)
	}
	return out
}
