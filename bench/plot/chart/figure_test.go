package chart

import (
	"bytes"
	"encoding/xml"
	"fmt"
	"image/color"
	"image/png"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/vg"
)

// svgDoc is what a test reads back from an SVG.
type svgDoc struct {
	width, height string
	texts         []string
	paths         []string // the style attribute of every path
}

// parseSVG decodes b as XML, failing the test if it is not a well-formed
// SVG document.
func parseSVG(t *testing.T, b []byte) svgDoc {
	t.Helper()
	var doc svgDoc
	dec := xml.NewDecoder(bytes.NewReader(b))
	var inText bool
	depth := 0
	for {
		tok, err := dec.Token()
		if err == io.EOF {
			break
		}
		require.NoError(t, err, "SVG is not well-formed XML")
		switch el := tok.(type) {
		case xml.StartElement:
			if depth == 0 {
				require.Equal(t, "svg", el.Name.Local, "root element")
				for _, a := range el.Attr {
					switch a.Name.Local {
					case "width":
						doc.width = a.Value
					case "height":
						doc.height = a.Value
					}
				}
			}
			depth++
			switch el.Name.Local {
			case "text":
				inText = true
				doc.texts = append(doc.texts, "")
			case "path":
				for _, a := range el.Attr {
					if a.Name.Local == "style" {
						doc.paths = append(doc.paths, a.Value)
					}
				}
			}
		case xml.EndElement:
			depth--
			if el.Name.Local == "text" {
				inText = false
			}
		case xml.CharData:
			if inText {
				doc.texts[len(doc.texts)-1] += string(el)
			}
		}
	}
	require.Equal(t, 0, depth, "every element closed")
	return doc
}

// strokes counts the paths stroked in c, and how many of those are dashed.
func (d svgDoc) strokes(c color.RGBA) (n, dashed int) {
	want := fmt.Sprintf("stroke:#%02X%02X%02X", c.R, c.G, c.B)
	for _, s := range d.paths {
		if strings.Contains(s, want) {
			n++
			if strings.Contains(s, "stroke-dasharray") {
				dashed++
			}
		}
	}
	return n, dashed
}

func (d svgDoc) fills(c color.RGBA) int {
	want := fmt.Sprintf("fill:#%02X%02X%02X", c.R, c.G, c.B)
	n := 0
	for _, s := range d.paths {
		if strings.Contains(s, want) {
			n++
		}
	}
	return n
}

func render(t *testing.T, f *Figure, format string) []byte {
	t.Helper()
	var b bytes.Buffer
	require.NoError(t, Write(&b, f, format))
	return b.Bytes()
}

func TestSVGNamesFallbackFonts(t *testing.T) {
	b := render(t, Timeline(record()), "svg")
	assert.Contains(t, string(b), "font-family:Liberation Sans,Arimo,Arial,Helvetica,sans-serif;")
	assert.NotContains(t, string(b), "font-family:Liberation Sans;")
}

func TestPNG(t *testing.T) {
	img, err := png.Decode(bytes.NewReader(render(t, Timeline(record()), "png")))
	require.NoError(t, err)
	assert.Equal(t, 1200, img.Bounds().Dx(), "600 pt at 144 dpi")
}

func TestWriteUnknownFormat(t *testing.T) {
	err := Write(io.Discard, Timeline(record()), "gif")
	require.Error(t, err)
	assert.Contains(t, err.Error(), `"gif"`)
}

func TestSaveByExtension(t *testing.T) {
	dir := t.TempDir()
	require.NoError(t, Save(filepath.Join(dir, "t.svg"), Timeline(record())))
	b, err := os.ReadFile(filepath.Join(dir, "t.svg"))
	require.NoError(t, err)
	parseSVG(t, b)
	assert.Error(t, Save(filepath.Join(dir, "t.txt"), Timeline(record())))
}

func TestFloatSteps(t *testing.T) {
	l := floatSteps([]float64{1, 2.5}, color.Black, nil, 1.5)
	assert.Equal(t, plotter.XYs{{X: 0, Y: 1}, {X: 1, Y: 2.5}, {X: 2, Y: 2.5}}, l.XYs, "each value flat over its second")
	assert.Equal(t, plotter.PostStep, l.StepStyle)
	assert.Equal(t, vg.Points(1.5), l.Width)
	assert.Empty(t, floatSteps(nil, color.Black, nil, 1).XYs, "a legend's line")

	counts := stepLine([]int{3, 0}, color.Black, nil)
	assert.Equal(t, plotter.XYs{{X: 0, Y: 3}, {X: 1, Y: 0}, {X: 2, Y: 0}}, counts.XYs)
	assert.Equal(t, vg.Points(2), counts.Width)
}
