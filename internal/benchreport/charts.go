package main

import (
	"encoding/xml"
	"fmt"
	"io"
	"math"
	"path"
	"slices"
	"strings"
)

// A chartSpec declares one SVG chart of the report: a horizontal bar per
// sub-benchmark of a family, one panel per unit (or per size), so that a
// reader sees at a glance where Plugbus stands against the alternatives.
type chartSpec struct {
	file, title string
	family      string
	panels      []panelSpec
	bySize      bool // one panel per first path element of the subs ("128B/raw" → 128B), each with panels[0]'s unit
}

// A panelSpec is one set of bars sharing a scale: the median of unit for
// every sub-benchmark matching sub (a path.Match pattern, "" = all).
type panelSpec struct {
	title string
	unit  string
	sub   string
}

var charts = []chartSpec{
	{
		file: "bench-invoke.svg", title: "Invoke round trip, 128 B: calling a plugin",
		family: "Invoke",
		panels: []panelSpec{{title: "p50 latency, µs (shorter is better)", unit: "p50-µs"}},
	},
	{
		file: "bench-oneway.svg", title: "One way to a handler in another process, by event size",
		family: "ProcOneWay", bySize: true,
		panels: []panelSpec{{title: "events/s (longer is better)", unit: "events/s"}},
	},
	{
		file: "bench-durable.svg", title: "Durable delivery (JetStream)",
		family: "Durable",
		panels: []panelSpec{{title: "events/s (longer is better)", unit: "events/s"}},
	},
	{
		file: "bench-coldstart.svg", title: "Cold start: process start → first reply",
		family: "ColdStart",
		panels: []panelSpec{{title: "p50, ms (shorter is better)", unit: "p50-ms"}},
	},
	{
		file: "bench-scale.svg", title: "Scale: plugin instances registering with one coordinator",
		family: "Scale",
		panels: []panelSpec{
			{title: "seconds until every instance is listed (shorter is better)", unit: "listed-s"},
			{title: "coordinator's steady CPU, % of a core (shorter is better)", unit: "coord-steady-cpu-%"},
		},
	},
}

// chart is a chartSpec filled with the figures of one run.
type chart struct {
	file, title string
	panels      []panel
}

type panel struct {
	title string
	bars  []bar
}

// A bar is one sub-benchmark's median; ours marks Plugbus's own rows,
// drawn in the accent colour.
type bar struct {
	label string
	value float64
	unit  string
	ours  bool
}

// buildCharts fills the chart specs from the groups, leaving out panels
// without figures and charts without panels.
func buildCharts(gs []*group) []chart {
	var out []chart
	for _, cs := range charts {
		c := chart{file: cs.file, title: cs.title}
		for _, g := range gs {
			if g.family != cs.family {
				continue
			}
			specs := cs.panels
			if cs.bySize {
				specs = nil
				var seen []string
				for _, be := range g.benches {
					size, _, ok := strings.Cut(be.sub, "/")
					if !ok || slices.Contains(seen, size) {
						continue
					}
					seen = append(seen, size)
					p := cs.panels[0]
					specs = append(specs, panelSpec{title: size + ": " + p.title, unit: p.unit, sub: size + "/*"})
				}
			}
			for _, ps := range specs {
				p := panel{title: ps.title}
				for _, be := range g.benches {
					if ps.sub != "" {
						if ok, _ := path.Match(ps.sub, be.sub); !ok {
							continue
						}
					}
					v := be.median(ps.unit)
					if math.IsNaN(v) {
						continue
					}
					label := be.sub
					if cs.bySize {
						label = path.Base(be.sub)
					}
					p.bars = append(p.bars, bar{label: label, value: v, unit: ps.unit, ours: isOurs(label)})
				}
				if len(p.bars) > 0 {
					c.panels = append(c.panels, p)
				}
			}
		}
		if len(c.panels) > 0 {
			out = append(out, c)
		}
	}
	return out
}

// isOurs reports whether a sub-benchmark is Plugbus's rather than a
// baseline or an alternative.
func isOurs(label string) bool {
	base := path.Base(label)
	return strings.HasPrefix(base, "plugbus") || strings.HasPrefix(base, "pluginkit")
}

// Layout of a chart, in SVG user units (pixels).
const (
	chartWidth = 760
	labelWidth = 190 // the sub-benchmark names, right-aligned
	barMax     = 440 // the longest bar of a panel
	rowHeight  = 22
	barHeight  = 14
	titleH     = 34
	panelTitle = 26
	legendH    = 26
	colourOurs = "#d9480f"
	colourAlt  = "#868e96"
)

// writeSVG draws c as a standalone SVG document: every bar's length is
// proportional to its value within its panel (each panel has its own
// scale), its figure written at its end. Labels are XML-escaped.
func writeSVG(w io.Writer, c chart) error {
	height := titleH + legendH
	for _, p := range c.panels {
		height += panelTitle + len(p.bars)*rowHeight + 8
	}
	var b strings.Builder
	fmt.Fprintf(&b, `<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" viewBox="0 0 %d %d" font-family="sans-serif" font-size="12">`+"\n",
		chartWidth, height, chartWidth, height)
	fmt.Fprintf(&b, `<title>%s</title>`+"\n", esc(c.title))
	fmt.Fprintf(&b, `<rect width="%d" height="%d" fill="#ffffff"/>`+"\n", chartWidth, height)
	fmt.Fprintf(&b, `<text x="10" y="22" font-size="15" font-weight="bold">%s</text>`+"\n", esc(c.title))
	y := titleH
	fmt.Fprintf(&b, `<rect x="%d" y="%d" width="12" height="12" fill="%s"/><text x="%d" y="%d">Plugbus</text>`+"\n",
		labelWidth+10, y, colourOurs, labelWidth+28, y+10)
	fmt.Fprintf(&b, `<rect x="%d" y="%d" width="12" height="12" fill="%s"/><text x="%d" y="%d">baselines and alternatives</text>`+"\n",
		labelWidth+90, y, colourAlt, labelWidth+108, y+10)
	y += legendH
	for _, p := range c.panels {
		fmt.Fprintf(&b, `<text x="10" y="%d" font-weight="bold">%s</text>`+"\n", y+16, esc(p.title))
		y += panelTitle
		top := 0.0
		for _, br := range p.bars {
			top = math.Max(top, br.value)
		}
		for _, br := range p.bars {
			width := 0.0
			if top > 0 && br.value > 0 {
				width = br.value / top * barMax
			}
			fill := colourAlt
			if br.ours {
				fill = colourOurs
			}
			x0 := labelWidth + 10
			fmt.Fprintf(&b, `<text x="%d" y="%d" text-anchor="end">%s</text>`+"\n", labelWidth, y+barHeight-3, esc(br.label))
			fmt.Fprintf(&b, `<rect class="bar" x="%d" y="%d" width="%.2f" height="%d" fill="%s"><title>%s: %s %s</title></rect>`+"\n",
				x0, y+2, width, barHeight, fill, esc(br.label), esc(fmtNum(br.value)), esc(br.unit))
			fmt.Fprintf(&b, `<text x="%.2f" y="%d">%s</text>`+"\n", float64(x0)+width+4, y+barHeight-3, esc(fmtNum(br.value)))
			y += rowHeight
		}
		y += 8
	}
	b.WriteString("</svg>\n")
	_, err := io.WriteString(w, b.String())
	return err
}

// esc escapes s for XML text and attribute values.
func esc(s string) string {
	var b strings.Builder
	_ = xml.EscapeText(&b, []byte(s)) // a strings.Builder does not fail
	return b.String()
}
