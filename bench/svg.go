package bench

import (
	"bytes"
	"encoding/xml"
	"fmt"
	"io"
	"math"
)

var contenderColor = map[string]string{
	Native:          "#8c8c8c",
	Overlayfs:       "#4e79a7",
	OverlayfsMount2: "#a0cbe8",
	FuseOverlayfs:   "#f28e2b",
	Strata:          "#59a14f",
	StrataWriteback: "#8cd17d",
}

// WriteSVG draws the report as horizontal bars, one group per row and one
// bar per contender, each the contender's median relative to native's (to
// overlayfs's in rows without native) on a log scale, so that 1× is the
// baseline and a bar twice as long in log space is twice as slow, or big.
func (rp *Report) WriteSVG(w io.Writer) error {
	const (
		width  = 1000
		left   = 230 // contender names end here
		barW   = 520 // the bar area
		barH   = 14
		gap    = 4
		header = 22 // a group's title line
	)
	top := 70
	type bar struct {
		r     *Result
		ratio float64 // NaN: no bar
	}
	type group struct {
		title string
		base  float64
		bars  []bar
	}
	var groups []group
	lo, hi := 1.0, 1.0
	for _, ri := range rp.Rows {
		rs := rp.row(ri.Key)
		// One baseline per row, fixed before looking at the figures: a
		// baseline that failed leaves the row without bars rather than
		// measured against something else.
		prefer := []string{Native, Overlayfs}
		if len(rs) > 0 && (rs[0].Workload == WAppend || rs[0].Workload == WChmod) {
			// A plain directory has nothing to copy up.
			prefer = []string{Overlayfs}
		}
		var baseRes *Result
		baseName := prefer[0]
	pick:
		for _, name := range prefer {
			for _, r := range rs {
				if r.Contender == name && r.Skip == "" {
					baseRes, baseName = r, name
					break pick
				}
			}
		}
		if baseRes == nil && len(prefer) > 1 {
			// Rows neither takes part in: the first measured, named.
			for _, r := range rs {
				if r.Stats != nil && r.Stats.Median > 0 {
					baseRes, baseName = r, r.Contender
					break
				}
			}
		}
		base := math.NaN()
		title := ri.Key
		switch {
		case baseRes == nil:
			title += " (no " + baseName + " figure: no bars)"
		case baseRes.Err != "":
			title += " (" + baseName + " failed: no bars)"
		case baseRes.Stats == nil || baseRes.Stats.Median <= 0:
			title += " (" + baseName + " not measured: no bars)"
		default:
			base = baseRes.Stats.Median
			if baseName != Native {
				title += " (relative to " + baseName + ")"
			}
		}
		g := group{title: title, base: base}
		for _, r := range rs {
			v := math.NaN()
			if r.Stats != nil && !math.IsNaN(base) && r.Stats.Median > 0 {
				v = r.Stats.Median / base
				lo, hi = math.Min(lo, v), math.Max(hi, math.Max(v, r.Stats.Max/base))
				if r.Stats.Min > 0 {
					lo = math.Min(lo, r.Stats.Min/base)
				}
			}
			g.bars = append(g.bars, bar{r, v})
		}
		groups = append(groups, g)
	}
	// The axis spans whole decades around 1×, at most 0.001× to 1000×;
	// bars beyond are cut at the edge and say their value.
	lo = math.Max(math.Pow(10, math.Floor(math.Log10(lo))), 1e-3)
	hi = math.Min(math.Pow(10, math.Ceil(math.Log10(hi))), 1e3)
	if hi <= lo {
		hi = lo * 10
	}
	clamp := func(v float64) float64 { return math.Min(math.Max(v, lo), hi) }
	x := func(v float64) float64 {
		v = clamp(v)
		return left + barW*(math.Log10(v)-math.Log10(lo))/(math.Log10(hi)-math.Log10(lo))
	}
	// The goals first, as a headline panel.
	const goalH = 16
	goalsTop := top
	top += 24 + len(rp.Goals)*goalH + 20
	height := top + 30
	for _, g := range groups {
		height += header + len(g.bars)*(barH+gap) + 8
	}

	var b bytes.Buffer
	text := func(xp, yp float64, anchor, style, s string) {
		fmt.Fprintf(&b, `<text x="%.1f" y="%.1f" text-anchor="%s" %s>`, xp, yp, anchor, style)
		xml.EscapeText(&b, []byte(s))
		b.WriteString("</text>\n")
	}
	fmt.Fprintf(&b, `<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" viewBox="0 0 %d %d" font-family="sans-serif" font-size="12">`+"\n", width, height, width, height)
	fmt.Fprintf(&b, `<rect width="%d" height="%d" fill="white"/>`+"\n", width, height)
	m := rp.Meta
	text(10, 20, "start", `font-size="15" font-weight="bold"`, "strata bench: median of each contender relative to native (log scale from 1×: left is faster; whiskers: min to max)")
	text(10, 38, "start", `fill="#555"`, fmt.Sprintf("%s · kernel %s · %d CPUs · %d reps · %s", m.Date.UTC().Format("2006-01-02 15:04 MST"), m.Kernel, m.CPUs, m.Reps, m.Command))
	if rp.UnderLoad() {
		text(10, 54, "start", `fill="#a00"`, fmt.Sprintf("measured under foreign load: 1-minute load up to %.1f on %d CPUs; read ratios within a row", m.LoadMax, m.CPUs))
	}
	text(10, float64(goalsTop+4), "start", `font-size="14" font-weight="bold"`, "Goals (strata)")
	for i, gl := range rp.Goals {
		yp := float64(goalsTop + 22 + i*goalH)
		mark, col := "·", "#555"
		if gl.Met != nil {
			if *gl.Met {
				mark, col = "met", "#2a7a2a"
			} else {
				mark, col = "MISSED", "#a00"
			}
		}
		text(20, yp, "start", fmt.Sprintf(`fill="%s" font-weight="bold"`, col), mark)
		text(90, yp, "start", "", gl.Name)
		text(360, yp, "start", `fill="#555"`, "want "+gl.Want)
		text(640, yp, "start", "", gl.Got)
	}
	// Decade grid lines.
	for v := lo; v <= hi*1.0001; v *= 10 {
		xp := x(v)
		stroke := "#ddd"
		if v == 1 {
			stroke = "#333"
		}
		fmt.Fprintf(&b, `<line x1="%.1f" y1="%d" x2="%.1f" y2="%d" stroke="%s"/>`+"\n", xp, top-8, xp, height-24, stroke)
		text(xp, float64(top-12), "middle", `fill="#555"`, fmtRatioValue(v))
		text(xp, float64(height-10), "middle", `fill="#555"`, fmtRatioValue(v))
	}
	y := top
	for _, g := range groups {
		text(10, float64(y+15), "start", `font-weight="bold"`, g.title)
		y += header
		for _, br := range g.bars {
			r := br.r
			name := r.Contender
			if r.Label != "" {
				name = r.Label
			}
			text(left-6, float64(y+barH-3), "end", "", name)
			col, ok := contenderColor[r.Contender]
			if !ok {
				col = "#b07aa1"
			}
			switch {
			case !math.IsNaN(br.ratio):
				// From 1× to the ratio: left of 1× is faster (or smaller).
				x0, x1 := x(1), x(br.ratio)
				fmt.Fprintf(&b, `<rect x="%.1f" y="%d" width="%.1f" height="%d" fill="%s"><title>`, math.Min(x0, x1), y, math.Max(math.Abs(x1-x0), 1), barH, col)
				xml.EscapeText(&b, []byte(fmt.Sprintf("%s %s: median %s, spread ±%.0f%%", g.title, r.Contender, fmtValue(r.Stats.Median, r.Unit), r.Stats.Spread*100)))
				b.WriteString("</title></rect>\n")
				if r.Stats.N > 1 && r.Stats.Min > 0 {
					// The spread: a whisker from min to max.
					ym := float64(y) + barH/2
					fmt.Fprintf(&b, `<line x1="%.1f" y1="%.1f" x2="%.1f" y2="%.1f" stroke="#222" stroke-width="1.5"/>`+"\n", x(r.Stats.Min/g.base), ym, x(r.Stats.Max/g.base), ym)
					x1 = math.Max(x1, x(r.Stats.Max/g.base))
				}
				text(math.Max(x1, x0)+4, float64(y+barH-3), "start", "", fmt.Sprintf("%s · %s", fmtRatioValue(br.ratio), fmtValue(r.Stats.Median, r.Unit)))
			case r.Stats != nil:
				text(left+4, float64(y+barH-3), "start", `fill="#555"`, fmtValue(r.Stats.Median, r.Unit)+" (no baseline)")
			default:
				why := r.Skip
				if r.Err != "" {
					why = "failed: " + r.Err
				}
				if len(why) > 90 {
					why = why[:87] + "..."
				}
				text(left+4, float64(y+barH-3), "start", `fill="#a00"`, "n/a: "+why)
			}
			y += barH + gap
		}
		y += 8
	}
	b.WriteString("</svg>\n")
	_, err := w.Write(b.Bytes())
	return err
}

func fmtRatioValue(v float64) string {
	switch {
	case v >= 100:
		return fmt.Sprintf("%.0f×", v)
	case v >= 10:
		return fmt.Sprintf("%.1f×", v)
	case v >= 0.01:
		return fmt.Sprintf("%.2f×", v)
	}
	return fmt.Sprintf("%.2g×", v) // 0.00033×, not 3.3e-04×
}
