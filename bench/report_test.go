package bench

import (
	"bytes"
	"encoding/xml"
	"errors"
	"io"
	"strings"
	"testing"
	"time"
)

// sampleReport is a small report with every kind of cell.
func sampleReport() *Report {
	rp := &Report{Meta: Meta{Date: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC), Command: "strata bench --quick", Kernel: "6.18", CPUs: 2, Reps: 3,
		Contenders: map[string]string{Strata: "child process, passthrough=true"}, Tools: map[string]string{"fio": "fio-3.33"}}}
	rp.add(Result{Workload: WStatWalk, Case: "warm", Contender: Native, Unit: UnitSeconds, Samples: []float64{0.10, 0.11, 0.09}})
	rp.add(Result{Workload: WStatWalk, Case: "warm", Contender: Overlayfs, Unit: UnitSeconds, Samples: []float64{0.12, 0.12, 0.12}})
	rp.add(Result{Workload: WStatWalk, Case: "warm", Contender: FuseOverlayfs, Unit: UnitSeconds, Skip: "fuse-overlayfs is not installed"})
	rp.add(Result{Workload: WStatWalk, Case: "warm", Contender: Strata, Unit: UnitSeconds, Samples: []float64{0.18, 0.3, 0.2}})
	rp.add(Result{Workload: WChmod, Case: "0600", Contender: Overlayfs, Unit: UnitSeconds, Samples: []float64{1.2}})
	rp.add(Result{Workload: WChmod, Case: "0600", Contender: Strata, Unit: UnitSeconds, Samples: []float64{0.0004}})
	rp.add(Result{Workload: WDepth, Case: "walk layers=1", Contender: Strata, Unit: UnitSeconds, Samples: []float64{0.1}})
	rp.add(Result{Workload: WDepth, Case: "walk layers=500", Contender: Strata, Unit: UnitSeconds, Samples: []float64{0.105}})
	rp.add(Result{Workload: WDepth, Case: "walk layers=500", Contender: Overlayfs, Unit: UnitSeconds, Err: "cannot mount: <too many> & \"layers\""})
	rp.add(Result{Workload: WDisk, Case: "3 images", Contender: Overlayfs, Label: "dir per layer", Unit: UnitBytes, Samples: []float64{3 << 20}})
	rp.add(Result{Workload: WDisk, Case: "3 images", Contender: Strata, Unit: UnitBytes, Samples: []float64{1 << 20}})
	rp.describe(WStatWalk+"/warm", "lstat everything")
	rp.Finish()
	return rp
}

func TestReport_Ratios(t *testing.T) {
	rp := sampleReport()
	s := rp.find(WStatWalk+"/warm", Strata)
	if s.VsNative == nil || *s.VsNative != 2 || s.VsOverlayfs == nil || mathAbs(*s.VsOverlayfs-0.2/0.12) > 1e-12 {
		t.Errorf("strata ratios %v %v, want 2 and %v", deref(s.VsNative), deref(s.VsOverlayfs), 0.2/0.12)
	}
	if f := rp.find(WStatWalk+"/warm", FuseOverlayfs); f.VsNative != nil || f.Stats != nil {
		t.Errorf("a skipped cell has a ratio or stats: %+v", f)
	}
	if d := rp.find(WDisk+"/3 images", Strata); d.VsNative != nil || d.VsOverlayfs == nil || *d.VsOverlayfs != 1.0/3 {
		t.Errorf("disk ratios %v %v", deref(d.VsNative), deref(d.VsOverlayfs))
	}
	goals := map[string]Goal{}
	for _, g := range rp.Goals {
		goals[g.Name] = g
	}
	for name, want := range map[string]*bool{
		"warm stat walk":              ptr(false), // 1.67× overlayfs
		"chmod of the big lower file": ptr(true),  // 400 µs
		"depth: walk":                 ptr(true),  // 1.05× at 500 layers
		"depth: mount":                nil,
		"import":                      nil,
	} {
		g, ok := goals[name]
		if !ok {
			t.Errorf("no goal %q", name)
			continue
		}
		if (g.Met == nil) != (want == nil) || (want != nil && *g.Met != *want) {
			t.Errorf("goal %q: met %v (%s), want %v", name, deref(g.Met), g.Got, deref(want))
		}
	}
}

func TestReport_Table(t *testing.T) {
	var b bytes.Buffer
	if err := sampleReport().WriteTable(&b); err != nil {
		t.Fatal(err)
	}
	out := b.String()
	for _, want := range []string{
		"stat-walk/warm", "2.00×", "1.67×", "0.00033×", "±30%", "skipped: fuse-overlayfs is not installed",
		"FAILED: cannot mount", "3 MiB", "overlayfs (dir per layer)", "warm stat walk", "MISSED", "met",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("table lacks %q:\n%s", want, out)
		}
	}
}

func TestReport_JSON(t *testing.T) {
	rp := sampleReport()
	var b bytes.Buffer
	if err := rp.WriteJSON(&b); err != nil {
		t.Fatal(err)
	}
	back, err := ReadJSON(&b)
	if err != nil {
		t.Fatal(err)
	}
	if len(back.Results) != len(rp.Results) || len(back.Goals) != len(rp.Goals) || back.Meta.Command != rp.Meta.Command {
		t.Fatalf("round trip lost data: %+v", back)
	}
	s := back.find(WStatWalk+"/warm", Strata)
	if s.Stats == nil || s.Stats.Median != 0.2 || s.VsNative == nil || *s.VsNative != 2 || len(s.Samples) != 3 {
		t.Errorf("strata cell after the round trip: %+v", s)
	}
	if f := back.find(WStatWalk+"/warm", FuseOverlayfs); f.Skip == "" || f.Stats != nil {
		t.Errorf("skipped cell after the round trip: %+v", f)
	}
}

func TestReport_SVG(t *testing.T) {
	var b bytes.Buffer
	if err := sampleReport().WriteSVG(&b); err != nil {
		t.Fatal(err)
	}
	dec := xml.NewDecoder(&b)
	var root string
	rects, titles := 0, 0
	var texts []string
	for {
		tok, err := dec.Token()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatalf("the SVG is not well-formed XML: %v", err)
		}
		switch el := tok.(type) {
		case xml.StartElement:
			if root == "" {
				root = el.Name.Local
				if el.Name.Space != "http://www.w3.org/2000/svg" {
					t.Errorf("root namespace %q", el.Name.Space)
				}
			}
			switch el.Name.Local {
			case "rect":
				rects++
			case "title":
				titles++
			}
		case xml.CharData:
			texts = append(texts, string(el))
		}
	}
	if root != "svg" {
		t.Fatalf("root element %q, want svg", root)
	}
	// One bar per measured cell (9) but strata's at 500 layers, whose row
	// lost its overlayfs baseline (a row never changes baseline), plus the
	// background.
	if titles != 8 || rects != 9 {
		t.Errorf("%d bars with %d titles, want 8 and 8 (+1 background rect)", rects, titles)
	}
	all := strings.Join(texts, "\n")
	for _, want := range []string{"stat-walk/warm", "2.00× · 200 ms", "n/a: fuse-overlayfs is not installed", `cannot mount: <too many> & "layers"`, "(relative to overlayfs)", "walk layers=500 (overlayfs failed: no bars)", "Goals (strata)", "0.00033×"} {
		if !strings.Contains(all, want) {
			t.Errorf("SVG text lacks %q", want)
		}
	}
}

func TestReport_Markdown(t *testing.T) {
	var b bytes.Buffer
	if err := sampleReport().WriteMarkdown(&b); err != nil {
		t.Fatal(err)
	}
	out := b.String()
	for _, want := range []string{"- command: `strata bench --quick`", "| workload | contender |", "| **stat-walk/warm** | native |", "**2× slower**", "**3,000× faster**", "goals met", "| goal (strata) |", "`stat-walk/warm`: lstat everything"} {
		if !strings.Contains(out, want) {
			t.Errorf("markdown lacks %q:\n%s", want, out)
		}
	}
}

func TestFormat(t *testing.T) {
	for _, tc := range []struct {
		got, want string
	}{
		{fmtDur(12.34), "12.3 s"},
		{fmtDur(1.5), "1.50 s"},
		{fmtDur(0.0123), "12.3 ms"},
		{fmtDur(0.0000031), "3.1 µs"},
		{fmtBytes(512), "512 B"},
		{fmtBytes(3 << 20), "3 MiB"},
		{fmtBytes(1.5 * (1 << 30)), "1.5 GiB"},
	} {
		if tc.got != tc.want {
			t.Errorf("got %q, want %q", tc.got, tc.want)
		}
	}
}

func ptr[T any](v T) *T { return &v }

func deref[T any](p *T) any {
	if p == nil {
		return nil
	}
	return *p
}

func mathAbs(x float64) float64 {
	if x < 0 {
		return -x
	}
	return x
}

func TestReport_UpdateResults(t *testing.T) {
	doc := []byte("# head\n\nkept above\n\n" + ResultsBegin + "\nold run\n" + ResultsEnd + "\n\n## Reading\nkept below\n")
	rp := sampleReport()
	rp.Meta.CPUs, rp.Meta.LoadMax = 2, 1.5
	out, err := rp.UpdateResults(doc, "results.svg", false)
	if err != nil {
		t.Fatal(err)
	}
	s := string(out)
	for _, want := range []string{"kept above", "kept below", "](results.svg)", "goals met", "| goal (strata) |"} {
		if !strings.Contains(s, want) {
			t.Errorf("updated file lacks %q:\n%s", want, s)
		}
	}
	if strings.Contains(s, "old run") || strings.Contains(s, "foreign load") {
		t.Errorf("updated file keeps the old run or marks a quiet one:\n%s", s)
	}
	rp.Meta.LoadMax = 6.2
	if _, err := rp.UpdateResults(doc, "results.svg", false); !errors.Is(err, ErrUnderLoad) {
		t.Errorf("a run under load 6.2 on 2 CPUs: %v, want ErrUnderLoad", err)
	}
	out, err = rp.UpdateResults(doc, "results.svg", true)
	if err != nil || !strings.Contains(string(out), "**Measured under foreign load**") {
		t.Errorf("--under-load: %v, marked: %v", err, strings.Contains(string(out), "foreign load"))
	}
	if _, err := rp.UpdateResults([]byte("no markers"), "", true); err == nil {
		t.Error("a file without markers was accepted")
	}
}
