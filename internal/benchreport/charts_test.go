package main

import (
	"encoding/xml"
	"errors"
	"io"
	"math"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// svgBar is a bar as the SVG shows it: its width and its tooltip.
type svgBar struct {
	width float64
	title string
}

// readSVG parses an SVG document strictly, failing the test on malformed
// XML, and returns its bars and its text.
func readSVG(t *testing.T, doc string) (bars []svgBar, texts []string) {
	t.Helper()
	d := xml.NewDecoder(strings.NewReader(doc))
	d.Strict = true
	var inBar *svgBar
	var stack []string
	for {
		tok, err := d.Token()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatalf("not well-formed XML: %v\n%s", err, doc)
		}
		switch tok := tok.(type) {
		case xml.StartElement:
			stack = append(stack, tok.Name.Local)
			if tok.Name.Local == "rect" && attr(tok, "class") == "bar" {
				w, err := strconv.ParseFloat(attr(tok, "width"), 64)
				if err != nil {
					t.Fatalf("bar width: %v", err)
				}
				bars = append(bars, svgBar{width: w})
				inBar = &bars[len(bars)-1]
			}
		case xml.EndElement:
			if tok.Name.Local == "rect" {
				inBar = nil
			}
			stack = stack[:len(stack)-1]
		case xml.CharData:
			switch {
			case inBar != nil && stack[len(stack)-1] == "title":
				inBar.title += string(tok)
			case len(stack) > 0 && stack[len(stack)-1] == "text":
				texts = append(texts, string(tok))
			}
		}
	}
	if len(stack) != 0 {
		t.Fatalf("unclosed elements %v", stack)
	}
	return bars, texts
}

func attr(e xml.StartElement, name string) string {
	for _, a := range e.Attr {
		if a.Name.Local == name {
			return a.Value
		}
	}
	return ""
}

func TestWriteSVG(t *testing.T) {
	c := chart{
		file:  "x.svg",
		title: `latency <p50> & "friends"`,
		panels: []panel{
			{title: "µs", bars: []bar{
				{label: "nats-raw", value: 80, unit: "p50-µs"},
				{label: "plugbus<&>", value: 120, unit: "p50-µs", ours: true},
				{label: "direct", value: 0, unit: "p50-µs"},
			}},
			{title: "second panel, its own scale", bars: []bar{
				{label: "a", value: 1e6, unit: "events/s"},
				{label: "b", value: 250000, unit: "events/s"},
			}},
		},
	}
	var b strings.Builder
	if err := writeSVG(&b, c); err != nil {
		t.Fatal(err)
	}
	bars, texts := readSVG(t, b.String())
	if len(bars) != 5 {
		t.Fatalf("got %d bars, want 5", len(bars))
	}
	// Within a panel, lengths are proportional to the values, the longest
	// the full length; a zero value draws no bar.
	if bars[1].width != barMax {
		t.Errorf("the largest bar is %v long, want %v", bars[1].width, barMax)
	}
	if got, want := bars[0].width/bars[1].width, 80.0/120; math.Abs(got-want) > 1e-3 {
		t.Errorf("bar ratio %v, want %v", got, want)
	}
	if bars[2].width != 0 {
		t.Errorf("a zero value drew a bar %v long", bars[2].width)
	}
	if bars[3].width != barMax || math.Abs(bars[4].width/bars[3].width-0.25) > 1e-3 {
		t.Errorf("second panel's bars %v, %v: want its own scale, 4:1", bars[3].width, bars[4].width)
	}
	// Labels come back intact once the XML is parsed: they were escaped.
	if bars[1].title != "plugbus<&>: 120 p50-µs" {
		t.Errorf("bar title = %q", bars[1].title)
	}
	joined := strings.Join(texts, "\n")
	for _, want := range []string{`latency <p50> & "friends"`, "plugbus<&>", "1,000,000", "250,000"} {
		if !strings.Contains(joined, want) {
			t.Errorf("texts lack %q: %q", want, texts)
		}
	}
	if strings.Contains(b.String(), "plugbus<&>") {
		t.Error("a label written unescaped")
	}
}

func TestBuildCharts(t *testing.T) {
	rs, _, err := parse(strings.NewReader(sample))
	if err != nil {
		t.Fatal(err)
	}
	cs := buildCharts(collect(rs))
	byFile := map[string]chart{}
	for _, c := range cs {
		byFile[c.file] = c
	}
	inv, ok := byFile["bench-invoke.svg"]
	if !ok || len(inv.panels) != 1 {
		t.Fatalf("invoke chart = %+v", inv)
	}
	var labels []string
	for _, br := range inv.panels[0].bars {
		labels = append(labels, br.label)
		if br.label == "plugbus" && (br.value != 110 || !br.ours) {
			t.Errorf("plugbus bar = %+v, want the median 110, drawn as ours", br)
		}
		if br.label == "nats-raw" && br.ours {
			t.Error("nats-raw drawn as Plugbus's")
		}
	}
	if got := strings.Join(labels, ","); got != "nats-raw,goplugin-netrpc,plugbus" {
		t.Errorf("invoke bars = %s", got)
	}
	// One way: a panel per size, bars named without the size.
	ow := byFile["bench-oneway.svg"]
	if len(ow.panels) != 1 || !strings.HasPrefix(ow.panels[0].title, "1KiB: ") || ow.panels[0].bars[1].label != "plugbus" {
		t.Errorf("one-way chart = %+v", ow)
	}
	// Scale: the unit the sample lacks (coord-steady-cpu-%) has no panel;
	// no durable or cold start figures, no chart.
	if sc := byFile["bench-scale.svg"]; len(sc.panels) != 1 {
		t.Errorf("scale chart = %+v", sc)
	}
	if _, ok := byFile["bench-durable.svg"]; ok {
		t.Error("a chart without figures")
	}
}

func TestRunWritesCharts(t *testing.T) {
	dir := t.TempDir()
	in := filepath.Join(dir, "bench.txt")
	if err := os.WriteFile(in, []byte(sample), 0o644); err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(dir, "report.md")
	if err := run(out, "", "make bench", "go1.26.8", dir, []string{in}); err != nil {
		t.Fatal(err)
	}
	md, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	svg, err := os.ReadFile(filepath.Join(dir, "bench-invoke.svg"))
	if err != nil {
		t.Fatal(err)
	}
	readSVG(t, string(svg))
	if !strings.Contains(string(md), "(bench-invoke.svg)") {
		t.Errorf("the report does not show the chart beside it:\n%s", md)
	}
}
