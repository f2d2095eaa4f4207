package bench

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"slices"
	"strings"
	"text/tabwriter"
	"time"
)

// Units of a Result.
const (
	UnitSeconds = "s"
	UnitBytes   = "bytes"
)

// Result is one cell: a contender on one case of a workload.
type Result struct {
	Workload  string `json:"workload"`
	Case      string `json:"case"`
	Contender string `json:"contender"`
	// Label says what ran when that is not the contender's mount (import:
	// "tar -x"; disk: "a directory per layer").
	Label   string    `json:"label,omitempty"`
	Unit    string    `json:"unit"`
	Samples []float64 `json:"samples,omitempty"`
	Stats   *Stats    `json:"stats,omitempty"`
	// VsNative and VsOverlayfs are Median over the median of native and of
	// kernel overlayfs in the same row; nil where either is missing.
	VsNative    *float64 `json:"vsNative,omitempty"`
	VsOverlayfs *float64 `json:"vsOverlayfs,omitempty"`
	// Skip says why the cell was not measured; Err that it failed.
	Skip string `json:"skip,omitempty"`
	Err  string `json:"error,omitempty"`
	// Load is the highest 1-minute load average sampled while its row ran.
	Load float64 `json:"load,omitempty"`
	// Trace is the FUSE requests the server got per run, by opcode
	// (strata with --trace).
	Trace map[string]float64 `json:"trace,omitempty"`
	// TraceTime is the seconds per run the server spent on them, by opcode
	// (from its arrival at the server to its answer: the round trip
	// through the kernel and the wait for a server thread are not in it).
	TraceTime map[string]float64 `json:"traceTime,omitempty"`
}

// Key is the row of the cell: "stat-walk/cold".
func (r *Result) Key() string { return r.Workload + "/" + r.Case }

// Median of the cell, NaN when not measured.
func (r *Result) Median() float64 {
	if r.Stats == nil {
		return math.NaN()
	}
	return r.Stats.Median
}

// Meta describes the run.
type Meta struct {
	Date       time.Time         `json:"date"`
	Command    string            `json:"command"`
	Kernel     string            `json:"kernel"`
	CPU        string            `json:"cpu"`
	CPUs       int               `json:"cpus"`
	Memory     string            `json:"memory"`
	GoVersion  string            `json:"goVersion"`
	Revision   string            `json:"revision,omitempty"`
	Reps       int               `json:"reps"`
	Spec       Spec              `json:"spec"`
	Dir        string            `json:"dir"`
	FS         string            `json:"fs"`
	Tools      map[string]string `json:"tools,omitempty"`
	Contenders map[string]string `json:"contenders,omitempty"` // name -> how it ran, or why not
	Elapsed    float64           `json:"elapsedSeconds"`
	// Load is /proc/loadavg's 1, 5 and 15 minute averages when the run
	// started and when it ended: how busy the machine was with others.
	Load []string `json:"load,omitempty"`
	// LoadSeries is the 1-minute load average sampled every 2 s through
	// the run; LoadMax its highest.
	LoadSeries []float64 `json:"loadSeries,omitempty"`
	LoadMax    float64   `json:"loadMax,omitempty"`
	// Dataset describes the main image.
	Dataset string `json:"dataset,omitempty"`
}

// UnderLoad reports whether the machine was busier than its cores at some
// point of the run: its figures are then not a baseline.
func (rp *Report) UnderLoad() bool {
	return rp.Meta.CPUs > 0 && rp.Meta.LoadMax > float64(rp.Meta.CPUs)
}

// foreign reports whether r's row ran under more load than the cores.
func (rp *Report) foreign(r *Result) bool {
	return rp.Meta.CPUs > 0 && r.Load > float64(rp.Meta.CPUs)
}

// Goal is a target the issue set for strata, checked against this run.
type Goal struct {
	Name string `json:"name"`
	Want string `json:"want"`
	Got  string `json:"got"`
	// Met is nil when the run did not measure it.
	Met *bool `json:"met,omitempty"`
}

// RowInfo describes a row of the table.
type RowInfo struct {
	Key  string `json:"key"`
	Desc string `json:"desc,omitempty"`
}

// Report is the outcome of a run.
type Report struct {
	Meta    Meta      `json:"meta"`
	Rows    []RowInfo `json:"rows"`
	Results []Result  `json:"results"`
	Goals   []Goal    `json:"goals"`
}

func (rp *Report) add(r Result) {
	if len(r.Samples) > 0 {
		st := Summarize(r.Samples)
		r.Stats = &st
	}
	if !slices.ContainsFunc(rp.Rows, func(ri RowInfo) bool { return ri.Key == r.Key() }) {
		rp.Rows = append(rp.Rows, RowInfo{Key: r.Key()})
	}
	rp.Results = append(rp.Results, r)
}

func (rp *Report) describe(key, desc string) {
	for i := range rp.Rows {
		if rp.Rows[i].Key == key {
			if rp.Rows[i].Desc == "" {
				rp.Rows[i].Desc = desc
			}
			return
		}
	}
	rp.Rows = append(rp.Rows, RowInfo{Key: key, Desc: desc})
}

// find returns the cell of contender in row key.
func (rp *Report) find(key, contender string) *Result {
	for i := range rp.Results {
		if rp.Results[i].Key() == key && rp.Results[i].Contender == contender {
			return &rp.Results[i]
		}
	}
	return nil
}

// Finish computes the ratios and the goals.
func (rp *Report) Finish() {
	for i := range rp.Results {
		r := &rp.Results[i]
		r.VsNative, r.VsOverlayfs = nil, nil
		if n := rp.find(r.Key(), Native); n != nil {
			r.VsNative = ratioPtr(r.Median(), n.Median())
		}
		if o := rp.find(r.Key(), Overlayfs); o != nil {
			r.VsOverlayfs = ratioPtr(r.Median(), o.Median())
		}
	}
	rp.Goals = rp.goals()
}

// rangeRatio formats a.Median/b.Median with the range the samples allow,
// and whether the ratio of the medians meets ok.
func rangeRatio(a, b *Stats, ok func(float64) bool) (string, *bool) {
	v := Ratio(a.Median, b.Median)
	if math.IsNaN(v) {
		return "not measured", nil
	}
	met := ok(v)
	got := fmtRatioValue(v)
	if a.N > 1 || b.N > 1 {
		got += fmt.Sprintf(" (%s–%s)", fmtRatioValue(Ratio(a.Min, b.Max)), fmtRatioValue(Ratio(a.Max, b.Min)))
	}
	return got, &met
}

func ratioPtr(a, b float64) *float64 {
	v := Ratio(a, b)
	if math.IsNaN(v) {
		return nil
	}
	return &v
}

func (rp *Report) goals() []Goal {
	var out []Goal
	// ratio checks strata's cell in row key against the base contender's;
	// Got shows the ratio of the medians and, in brackets, the range the
	// samples allow (fastest over slowest to slowest over fastest).
	ratio := func(name, key, want, base string, ok func(float64) bool) {
		g := Goal{Name: name, Want: want, Got: "not measured"}
		if r := rp.find(key, Strata); r != nil {
			b := rp.find(key, base)
			switch {
			case r.Skip != "" || r.Err != "":
				g.Got = "not measured: " + r.Skip + r.Err
			case b == nil || b.Stats == nil:
				g.Got = "not measured: no " + base
			case r.Stats != nil:
				g.Got, g.Met = rangeRatio(r.Stats, b.Stats, ok)
			}
		}
		out = append(out, g)
	}
	ratio("warm find", WFind+"/warm", "≤ 1.1× overlayfs", Overlayfs, func(v float64) bool { return v <= 1.1 })
	ratio("warm GNU ls -lR", WLsGNU+"/warm", "≤ 1.2× overlayfs", Overlayfs, func(v float64) bool { return v <= 1.2 })
	ratio("warm read of every file (tar)", WTar+"/warm", "≤ 1.3× overlayfs", Overlayfs, func(v float64) bool { return v <= 1.3 })
	ratio("cold find", WFind+"/cold", "≤ 0.8× overlayfs", Overlayfs, func(v float64) bool { return v <= 0.8 })
	ratio("dd bs=4k into the top layer", WDD+"/bs=4k", "time ≤ 1.25× overlayfs (≥ 0.8× its throughput)", Overlayfs, func(v float64) bool { return v <= 1.25 })
	ratio("1,000 small creates", WCreate+"/1 KiB", "≤ 1.5× overlayfs", Overlayfs, func(v float64) bool { return v <= 1.5 })
	ratio("read back a top-layer file", WReadBack+"/warm", "time ≤ 1.11× overlayfs (≥ 0.9× its throughput)", Overlayfs, func(v float64) bool { return v <= 1/0.9 })
	ratio("apt-get install in a Debian image", WApt+"/"+strings.Join(aptPackages, " "), "≤ 1.2× overlayfs", Overlayfs, func(v float64) bool { return v <= 1.2 })
	// Every row ahead of fuse-overlayfs.
	ahead, rows := 0, 0
	var behind []string
	for _, ri := range rp.Rows {
		st, fo := rp.find(ri.Key, Strata), rp.find(ri.Key, FuseOverlayfs)
		if st == nil || fo == nil || st.Stats == nil || fo.Stats == nil {
			continue
		}
		rows++
		if st.Stats.Median < fo.Stats.Median {
			ahead++
		} else {
			behind = append(behind, ri.Key)
		}
	}
	g0 := Goal{Name: "every row ahead of fuse-overlayfs", Want: "all rows", Got: "not measured"}
	if rows > 0 {
		met := ahead == rows
		g0.Met = &met
		g0.Got = fmt.Sprintf("%d of %d rows", ahead, rows)
		if len(behind) > 0 {
			g0.Got += "; behind on " + strings.Join(behind, ", ")
		}
	}
	out = append(out, g0)
	ratio("warm stat walk", WStatWalk+"/warm", "≤ 1.2× overlayfs", Overlayfs, func(v float64) bool { return v <= 1.2 })
	ratio("warm ls -lR", WLsLR+"/warm", "≤ 1.2× overlayfs", Overlayfs, func(v float64) bool { return v <= 1.2 })
	ratio("cold stat walk", WStatWalk+"/cold", "≤ 1.0× overlayfs", Overlayfs, func(v float64) bool { return v <= 1.0 })
	// Throughput at least 0.9× native is time at most 1/0.9 of native's.
	ratio("warm sequential read", WSeqRead+"/warm", "time ≤ 1.11× native (≥ 0.9× its throughput)", Native, func(v float64) bool { return v <= 1/0.9 })
	g := Goal{Name: "chmod of the big lower file", Want: "< 1 ms", Got: "not measured"}
	if r := rp.find(WChmod+"/0600", Strata); r != nil && r.Stats != nil {
		met := r.Stats.Median < 1e-3
		g.Met, g.Got = &met, fmtDur(r.Stats.Median)
	}
	out = append(out, g)
	ratio("append 1 byte to the big lower file", WAppend+"/1 byte", "≤ 0.5× overlayfs", Overlayfs, func(v float64) bool { return v <= 0.5 })
	// Depth: the deepest measured against one layer, mount and walk.
	for _, what := range []string{"mount", "tree load", "walk"} {
		one := rp.find(WDepth+"/"+what+" layers=1", Strata)
		var deep *Result
		deepN := 0
		for i := range rp.Results {
			r := &rp.Results[i]
			var n int
			if r.Workload == WDepth && r.Contender == Strata && r.Stats != nil {
				if _, err := fmt.Sscanf(r.Case, what+" layers=%d", &n); err == nil && n > deepN {
					deep, deepN = r, n
				}
			}
		}
		g := Goal{Name: "depth: " + what, Want: "deepest within 10% of 1 layer", Got: "not measured"}
		if one != nil && one.Stats != nil && deep != nil && deepN > 1 {
			g.Got, g.Met = rangeRatio(deep.Stats, one.Stats, func(v float64) bool { return v <= 1.1 })
			g.Got = fmt.Sprintf("%d layers: %s", deepN, g.Got)
		}
		out = append(out, g)
	}
	var imp *Result
	for i := range rp.Results {
		if rp.Results[i].Workload == WImport && rp.Results[i].Contender == Strata {
			imp = &rp.Results[i]
		}
	}
	if imp != nil {
		ratio("import", imp.Key(), "≤ 1.0× tar -x", Native, func(v float64) bool { return v <= 1.0 })
	} else {
		out = append(out, Goal{Name: "import", Want: "≤ 1.0× tar -x", Got: "not measured"})
	}
	return out
}

// WriteJSON writes the report as indented JSON.
func (rp *Report) WriteJSON(w io.Writer) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(rp)
}

// ReadJSON parses what WriteJSON wrote.
func ReadJSON(r io.Reader) (*Report, error) {
	var rp Report
	if err := json.NewDecoder(r).Decode(&rp); err != nil {
		return nil, fmt.Errorf("read report: %w", err)
	}
	return &rp, nil
}

// cells formats a result as table cells: label, median, spread, ×native,
// ×overlayfs, note.
func (r *Result) cells() [6]string {
	name := r.Contender
	if r.Label != "" {
		name += " (" + r.Label + ")"
	}
	c := [6]string{name, "", "", "", "", ""}
	switch {
	case r.Skip != "":
		c[5] = "skipped: " + r.Skip
	case r.Err != "":
		c[5] = "FAILED: " + r.Err
	case r.Stats == nil:
		c[5] = "no samples"
	default:
		c[1] = fmtValue(r.Stats.Median, r.Unit)
		if r.Stats.N > 1 {
			c[2] = fmt.Sprintf("±%.0f%%", r.Stats.Spread*100)
		}
		c[3], c[4] = fmtRatio(r.VsNative), fmtRatio(r.VsOverlayfs)
	}
	return c
}

func fmtRatio(v *float64) string {
	if v == nil {
		return "—"
	}
	return fmtRatioValue(*v)
}

func fmtValue(v float64, unit string) string {
	if unit == UnitBytes {
		return fmtBytes(v)
	}
	return fmtDur(v)
}

func fmtDur(sec float64) string {
	switch {
	case math.IsNaN(sec):
		return "—"
	case sec >= 10:
		return fmt.Sprintf("%.1f s", sec)
	case sec >= 1:
		return fmt.Sprintf("%.2f s", sec)
	case sec >= 1e-3:
		return fmt.Sprintf("%.3g ms", sec*1e3)
	}
	return fmt.Sprintf("%.3g µs", sec*1e6)
}

func fmtBytes(b float64) string {
	units := []string{"B", "KiB", "MiB", "GiB", "TiB"}
	i := 0
	for b >= 1024 && i < len(units)-1 {
		b /= 1024
		i++
	}
	if i == 0 {
		return fmt.Sprintf("%.0f B", b)
	}
	return fmt.Sprintf("%.3g %s", b, units[i])
}

// results of row key in contender order (AllContenders first, others after).
func (rp *Report) row(key string) []*Result {
	var rs []*Result
	for i := range rp.Results {
		if rp.Results[i].Key() == key {
			rs = append(rs, &rp.Results[i])
		}
	}
	order := func(c string) int {
		if c == OverlayfsMount2 {
			return 2 // beside overlayfs
		}
		if i := slices.Index(AllContenders, c); i >= 0 {
			return i
		}
		return len(AllContenders)
	}
	slices.SortStableFunc(rs, func(a, b *Result) int { return order(a.Contender) - order(b.Contender) })
	return rs
}

// WriteTable writes the results as an aligned text table, then the goals.
func (rp *Report) WriteTable(w io.Writer) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "WORKLOAD\tCONTENDER\tMEDIAN\tSPREAD\t×NATIVE\t×OVERLAYFS\t")
	for _, ri := range rp.Rows {
		for i, r := range rp.row(ri.Key) {
			k := ""
			if i == 0 {
				k = ri.Key
			}
			c := rp.noted(r)
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", k, c[0], c[1], c[2], c[3], c[4], c[5])
			if len(r.Trace) > 0 {
				fmt.Fprintf(tw, "\t  FUSE requests/run\t%s\t\t\t\t\n", fmtTrace(r.Trace, r.TraceTime, 8))
			}
		}
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	fmt.Fprintln(w)
	tw = tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "GOAL (strata)\tWANT\tGOT\t")
	for _, g := range rp.Goals {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", g.Name, g.Want, g.Got, metMark(g.Met))
	}
	return tw.Flush()
}

func metMark(m *bool) string {
	switch {
	case m == nil:
		return ""
	case *m:
		return "met"
	}
	return "MISSED"
}

// noted is r's cells with its row's load marked when it ran under more
// load than the machine has cores.
func (rp *Report) noted(r *Result) [6]string {
	c := r.cells()
	if rp.foreign(r) {
		mark := fmt.Sprintf("under foreign load (1-min load up to %.1f on %d CPUs)", r.Load, rp.Meta.CPUs)
		if c[5] != "" {
			mark = c[5] + "; " + mark
		}
		c[5] = mark
	}
	return c
}

// fmtTrace lists the n most frequent opcodes of a trace, each with the
// server's time on them where known (tt).
func fmtTrace(t, tt map[string]float64, n int) string {
	type kv struct {
		k string
		v float64
	}
	var kvs []kv
	for k, v := range t {
		kvs = append(kvs, kv{k, v})
	}
	slices.SortFunc(kvs, func(a, b kv) int {
		if a.v != b.v {
			if a.v > b.v {
				return -1
			}
			return 1
		}
		return strings.Compare(a.k, b.k)
	})
	var parts []string
	for i, e := range kvs {
		if i == n {
			parts = append(parts, "…")
			break
		}
		p := fmt.Sprintf("%s %s", e.k, fmtCount(e.v))
		if sec := tt[e.k]; sec > 0 {
			p += " (" + fmtDur(sec) + ")"
		}
		parts = append(parts, p)
	}
	return strings.Join(parts, ", ")
}

func fmtCount(v float64) string {
	if v >= 10 || v == math.Trunc(v) {
		return groupDigits(int64(math.Round(v)))
	}
	return fmt.Sprintf("%.1f", v)
}

// groupDigits writes n with thousands separators: 55281 -> "55,281".
func groupDigits(n int64) string {
	s := fmt.Sprint(n)
	neg := strings.HasPrefix(s, "-")
	s = strings.TrimPrefix(s, "-")
	var b strings.Builder
	for i, c := range s {
		if i > 0 && (len(s)-i)%3 == 0 {
			b.WriteByte(',')
		}
		b.WriteRune(c)
	}
	if neg {
		return "-" + b.String()
	}
	return b.String()
}

// plainRatio says a ratio of a contender's figure to a baseline's in
// words: "3.2× slower", "1,000× faster", "about the same". Bytes rows
// say more and less.
func plainRatio(v *float64, unit string) string {
	if v == nil || math.IsNaN(*v) || *v <= 0 {
		return "—"
	}
	more, less := "slower", "faster"
	if unit == UnitBytes {
		more, less = "more", "less"
	}
	x := *v
	switch {
	case x >= 0.95 && x <= 1.05:
		return "about the same"
	case x > 1:
		return fmtTimes(x) + " " + more
	}
	return fmtTimes(1/x) + " " + less
}

func fmtTimes(x float64) string {
	switch {
	case x >= 100:
		return groupDigits(int64(math.Round(x))) + "×"
	case x >= 10:
		return fmt.Sprintf("%.0f×", x)
	}
	return fmt.Sprintf("%.2g×", x)
}

// Summary is a few sentences on the run: goals met and missed, and the load
// it ran under.
func (rp *Report) Summary() string {
	var met, missed, unmeasured []string
	for _, g := range rp.Goals {
		switch {
		case g.Met == nil:
			unmeasured = append(unmeasured, g.Name)
		case *g.Met:
			met = append(met, g.Name)
		default:
			missed = append(missed, fmt.Sprintf("%s (%s, want %s)", g.Name, g.Got, g.Want))
		}
	}
	var b strings.Builder
	fmt.Fprintf(&b, "%d of %d goals met", len(met), len(rp.Goals))
	if len(met) > 0 {
		fmt.Fprintf(&b, " (%s)", strings.Join(met, "; "))
	}
	b.WriteString(".")
	if len(missed) > 0 {
		fmt.Fprintf(&b, " Missed: %s.", strings.Join(missed, "; "))
	}
	if len(unmeasured) > 0 {
		fmt.Fprintf(&b, " Not measured in this run: %s.", strings.Join(unmeasured, "; "))
	}
	if rp.UnderLoad() {
		fmt.Fprintf(&b, " The machine was busier than its %d CPUs during the run (1-minute load up to %.1f): rows so marked ran under foreign load; compare ratios within a row, not figures across runs.", rp.Meta.CPUs, rp.Meta.LoadMax)
	}
	return b.String()
}

// WriteMarkdown writes the run's machine, the table and the goals as
// Markdown (what bench/RESULTS.md shows).
func (rp *Report) WriteMarkdown(w io.Writer) error {
	if _, err := fmt.Fprintf(w, "%s\n\n", rp.Summary()); err != nil {
		return err
	}
	return rp.writeMarkdownBody(w)
}

// writeMarkdownBody is WriteMarkdown without the summary.
func (rp *Report) writeMarkdownBody(w io.Writer) error {
	m := rp.Meta
	var b strings.Builder
	fmt.Fprintf(&b, "- date: %s\n", m.Date.UTC().Format(time.RFC3339))
	fmt.Fprintf(&b, "- command: `%s`\n", m.Command)
	if m.Revision != "" {
		fmt.Fprintf(&b, "- revision: %s\n", m.Revision)
	}
	fmt.Fprintf(&b, "- machine: %s, %d CPUs, %s RAM; kernel %s; %s\n", m.CPU, m.CPUs, m.Memory, m.Kernel, m.GoVersion)
	fmt.Fprintf(&b, "- work directory: %s (%s)\n", m.Dir, m.FS)
	if len(m.Load) > 0 {
		fmt.Fprintf(&b, "- load average (1, 5, 15 min) at start and end: %s; highest 1-min load sampled during the run: %.2f\n", strings.Join(m.Load, "; "), m.LoadMax)
	}
	if m.Dataset != "" {
		fmt.Fprintf(&b, "- main image: %s\n", m.Dataset)
	}
	fmt.Fprintf(&b, "- synthetic dataset: %d files in %d directories over %d layers, a %s file; depths %v; %d repetitions per cell; run took %s\n",
		m.Spec.Files, m.Spec.Dirs, m.Spec.Layers, fmtBytes(float64(m.Spec.BigSize)), m.Spec.Depths, m.Reps, fmtDur(m.Elapsed))
	for _, c := range AllContenders {
		if v, ok := m.Contenders[c]; ok {
			fmt.Fprintf(&b, "- %s: %s\n", c, v)
		}
	}
	for _, k := range sortedKeys(m.Tools) {
		fmt.Fprintf(&b, "- %s: %s\n", k, m.Tools[k])
	}
	b.WriteString("\n| workload | contender | median | spread | vs native | vs overlayfs | note |\n|---|---|--:|--:|--:|--:|---|\n")
	for _, ri := range rp.Rows {
		for i, r := range rp.row(ri.Key) {
			k := ""
			if i == 0 {
				k = "**" + ri.Key + "**"
			}
			c := rp.noted(r)
			if r.Stats != nil {
				c[3], c[4] = plainRatio(r.VsNative, r.Unit), plainRatio(r.VsOverlayfs, r.Unit)
			}
			if len(r.Trace) > 0 {
				t := "FUSE requests/run: " + fmtTrace(r.Trace, r.TraceTime, 6)
				if c[5] != "" {
					t = c[5] + "; " + t
				}
				c[5] = t
			}
			if r.Contender == Strata {
				for j := range 5 {
					if c[j] != "" && c[j] != "—" {
						c[j] = "**" + c[j] + "**"
					}
				}
			}
			fmt.Fprintf(&b, "| %s | %s | %s | %s | %s | %s | %s |\n", k, c[0], c[1], c[2], c[3], c[4], mdEscape(c[5]))
		}
	}
	b.WriteString("\n| goal (strata) | want | got | |\n|---|---|---|---|\n")
	for _, g := range rp.Goals {
		fmt.Fprintf(&b, "| %s | %s | %s | %s |\n", g.Name, g.Want, mdEscape(g.Got), metMark(g.Met))
	}
	b.WriteString("\nRows:\n\n")
	for _, ri := range rp.Rows {
		if ri.Desc != "" {
			fmt.Fprintf(&b, "- `%s`: %s\n", ri.Key, ri.Desc)
		}
	}
	_, err := io.WriteString(w, b.String())
	return err
}

func mdEscape(s string) string { return strings.ReplaceAll(s, "|", `\|`) }

func sortedKeys(m map[string]string) []string {
	var ks []string
	for k := range m {
		ks = append(ks, k)
	}
	slices.Sort(ks)
	return ks
}

// Markers of the part of bench/RESULTS.md a run writes (UpdateResults);
// everything outside them is left alone.
const (
	ResultsBegin = "<!-- bench:run:begin -->"
	ResultsEnd   = "<!-- bench:run:end -->"
)

// ErrUnderLoad is UpdateResults refusing a run made on a machine busier
// than its cores.
var ErrUnderLoad = errors.New("the run was made under foreign load")

// UpdateResults replaces the part of the results file doc between
// ResultsBegin and ResultsEnd with this run's summary, chart (chart, a
// path relative to the file) and tables. It refuses a run whose load
// exceeded the cores (ErrUnderLoad) unless underLoad says to write it
// anyway, marked as such.
func (rp *Report) UpdateResults(doc []byte, chart string, underLoad bool) ([]byte, error) {
	if rp.UnderLoad() && !underLoad {
		return nil, fmt.Errorf("%w: the 1-minute load reached %.1f on %d CPUs; rerun on a quiet machine, or pass --under-load to record it marked as such",
			ErrUnderLoad, rp.Meta.LoadMax, rp.Meta.CPUs)
	}
	s := string(doc)
	i, j := strings.Index(s, ResultsBegin), strings.Index(s, ResultsEnd)
	if i < 0 || j < i {
		return nil, fmt.Errorf("the results file has no %s … %s section to replace", ResultsBegin, ResultsEnd)
	}
	var b strings.Builder
	b.WriteString(ResultsBegin + "\n")
	if rp.UnderLoad() {
		fmt.Fprintf(&b, "\n**Measured under foreign load** (1-minute load up to %.1f on %d CPUs): the figures are not a baseline; the ratios within a row, contenders interleaved, are what this run shows.\n", rp.Meta.LoadMax, rp.Meta.CPUs)
	}
	fmt.Fprintf(&b, "\n%s\n", rp.Summary())
	if chart != "" {
		fmt.Fprintf(&b, "\n![strata bench: the goals, then every row relative to its baseline](%s)\n", chart)
	}
	b.WriteString("\n")
	if err := rp.writeMarkdownBody(&b); err != nil {
		return nil, err
	}
	b.WriteString("\n")
	return []byte(s[:i] + b.String() + s[j:]), nil
}
