package main

// Progress of long work (load, import, save, commit) on stderr.
//
// On a terminal: a bar per layer with its bytes, rate and ETA (drawn by
// github.com/vbauerster/mpb, what podman, buildah and skopeo use), then a
// spinner for the phase that follows reading (objects synced and renamed,
// metadata committed), then a one-line summary with the total time. Off a
// terminal: one plain line per layer as it ends, one for the phase, and the
// summary. Quiet: nothing.

import (
	"errors"
	"fmt"
	"io"
	"os"
	"sync"
	"time"

	"github.com/strata-dev/strata/layerstore"
	"github.com/vbauerster/mpb/v8"
	"github.com/vbauerster/mpb/v8/decor"
	"golang.org/x/term"
)

type progressMode int

const (
	progressOff progressMode = iota
	progressPlain
	progressBars
)

// progress shows one piece of work made of layers; layers is how many are
// expected (0: unknown), and the phase starts once that many have finished.
type progress struct {
	w      io.Writer
	mode   progressMode
	verb   string // "Loading", "Importing", "Saving", "Committing"
	phase  string // what follows the layers, e.g. "Writing to the store"
	layers int
	start  time.Time

	mu        sync.Mutex
	p         *mpb.Progress
	bars      map[int]*mpb.Bar
	spinner   *mpb.Bar
	last      map[int]layerstore.Progress
	began     map[int]time.Time
	finished  int
	phaseFrom time.Time
	ended     bool
}

// newProgress prepares progress on w: bars if w is a terminal, plain lines
// if not, nothing if quiet.
func newProgress(w io.Writer, quiet bool, verb, phase string, layers int) *progress {
	pr := &progress{w: w, verb: verb, phase: phase, layers: layers, start: time.Now(),
		bars: map[int]*mpb.Bar{}, last: map[int]layerstore.Progress{}, began: map[int]time.Time{}}
	switch f, ok := w.(*os.File); {
	case quiet:
		pr.mode = progressOff
	case ok && isTerminal(f) && hasSize(f):
		pr.mode = progressBars
		pr.p = mpb.New(mpb.WithOutput(w), mpb.WithWidth(80), mpb.WithRefreshRate(120*time.Millisecond))
	default:
		pr.mode = progressPlain
	}
	return pr
}

// hasSize says whether terminal f says how large it is: a terminal of 0
// columns (a serial console, "script" without a terminal) gets plain lines.
func hasSize(f *os.File) bool {
	w, h, err := term.GetSize(int(f.Fd()))
	return err == nil && w > 0 && h > 0
}

// update takes one layer event (layerstore calls it serialized).
func (pr *progress) update(ev layerstore.Progress) {
	if pr == nil || pr.mode == progressOff {
		return
	}
	pr.mu.Lock()
	defer pr.mu.Unlock()
	prev, seen := pr.last[ev.Layer]
	if seen && prev.Finished {
		return
	}
	if !seen {
		pr.began[ev.Layer] = time.Now()
	}
	pr.last[ev.Layer] = ev
	id := progressID(ev)
	if pr.mode == progressBars {
		bar := pr.bars[ev.Layer]
		if bar == nil {
			bar = pr.newBar(id, ev)
			pr.bars[ev.Layer] = bar
		}
		switch {
		case ev.Skipped:
			bar.SetTotal(1, true)
		case ev.Finished:
			bar.SetTotal(ev.Done, true)
		case ev.Total <= 0:
			// Of unknown size (a tarball on a pipe, a commit): the bar,
			// made with total 0 so that it never completes on its own,
			// grows with what is read.
			bar.SetTotal(ev.Done+1, false)
			bar.SetCurrent(ev.Done)
		default:
			bar.SetCurrent(ev.Done)
		}
	}
	if !ev.Finished {
		return
	}
	if pr.mode == progressPlain {
		if ev.Skipped {
			fmt.Fprintf(pr.w, "%s: already stored\n", id)
		} else {
			took := time.Since(pr.began[ev.Layer])
			fmt.Fprintf(pr.w, "%s: %s %s in %s (%s/s)\n", id, pastTense(pr.verb), humanSize(ev.Done, 4), roundTime(took), humanSize(rate(ev.Done, took), 3))
		}
	}
	pr.finished++
	if pr.layers > 0 && pr.finished == pr.layers {
		pr.startPhase()
	}
}

func (pr *progress) newBar(id string, ev layerstore.Progress) *mpb.Bar {
	if ev.Skipped {
		b := pr.p.New(1, mpb.NopStyle(), mpb.PrependDecorators(decor.Name(id+": Already exists")))
		return b
	}
	return pr.p.New(max(ev.Total, 0),
		mpb.BarStyle().Lbound("[").Filler("=").Tip(">").Padding(" ").Rbound("]"),
		mpb.PrependDecorators(
			decor.Name(id+": "),
			decor.OnComplete(decor.Name(pr.verb+" layer "), pastTense(pr.verb)+" layer "),
		),
		mpb.AppendDecorators(
			decor.Counters(decor.SizeB1000(0), " % .1f / % .1f"),
			decor.OnComplete(decor.AverageSpeed(decor.SizeB1000(0), "  % .1f"), ""),
			decor.OnComplete(decor.Name("  ETA "), ""),
			decor.OnComplete(decor.AverageETA(decor.ET_STYLE_GO), ""),
		),
	)
}

// startPhase shows what follows the layers; called with mu held.
func (pr *progress) startPhase() {
	if pr.phase == "" || !pr.phaseFrom.IsZero() {
		return
	}
	pr.phaseFrom = time.Now()
	switch pr.mode {
	case progressBars:
		pr.spinner = pr.p.New(0, mpb.SpinnerStyle().PositionLeft(),
			mpb.PrependDecorators(decor.Name(" "+pr.phase+" ")),
			mpb.AppendDecorators(decor.Elapsed(decor.ET_STYLE_GO)),
			mpb.BarFillerClearOnComplete(),
		)
	case progressPlain:
		fmt.Fprintf(pr.w, "%s...\n", pr.phase)
	}
}

// beginPhase starts the phase now, whatever the layers did (commit, whose
// reading and writing are one step).
func (pr *progress) beginPhase() {
	if pr == nil || pr.mode == progressOff {
		return
	}
	pr.mu.Lock()
	defer pr.mu.Unlock()
	pr.startPhase()
}

// done ends the display and prints the summary: what was done (e.g.
// "Loaded demo:latest"), its layers and bytes, and the time it all took.
// With err set, the bars are dropped and nothing is summed up.
func (pr *progress) done(what string, err error) {
	if pr == nil || pr.mode == progressOff {
		return
	}
	pr.mu.Lock()
	if pr.ended {
		pr.mu.Unlock()
		return
	}
	pr.ended = true
	var read int64
	stored := 0
	for _, ev := range pr.last {
		if ev.Skipped {
			stored++
		} else {
			read += ev.Done
		}
	}
	if pr.mode == progressBars {
		for _, b := range pr.bars {
			if err != nil {
				b.Abort(false)
			} else {
				b.SetTotal(-1, true)
			}
		}
		if pr.spinner != nil {
			pr.spinner.SetTotal(-1, true)
		}
	}
	phase := time.Duration(0)
	if !pr.phaseFrom.IsZero() {
		phase = time.Since(pr.phaseFrom)
	}
	pr.mu.Unlock()
	if pr.p != nil {
		pr.p.Wait()
	}
	if err != nil || what == "" {
		return
	}
	line := fmt.Sprintf("%s: %s, %s", what, plural(len(pr.last), "layer"), humanSize(read, 4))
	if stored > 0 {
		line += fmt.Sprintf(" (%d already stored)", stored)
	}
	line += " in " + roundTime(time.Since(pr.start))
	if phase > 0 && pr.phase != "" {
		line += fmt.Sprintf(" (%s: %s)", lowerFirst(pr.phase), roundTime(phase))
	}
	fmt.Fprintln(pr.w, line)
}

// abort ends the display without a summary, unless done ended it already.
func (pr *progress) abort() { pr.done("", errAborted) }

var errAborted = errors.New("aborted")

func pastTense(verb string) string {
	switch verb {
	case "Loading":
		return "loaded"
	case "Importing":
		return "imported"
	case "Saving":
		return "saved"
	case "Committing":
		return "committed"
	}
	return verb
}

func lowerFirst(s string) string {
	if s != "" && s[0] >= 'A' && s[0] <= 'Z' {
		return string(s[0]+'a'-'A') + s[1:]
	}
	return s
}

// roundTime is d as a person reads it: 1.234s, 45ms, 2m3s.
func roundTime(d time.Duration) string {
	switch {
	case d < time.Second:
		return d.Round(time.Millisecond).String()
	case d < time.Minute:
		return d.Round(10 * time.Millisecond).String()
	}
	return d.Round(time.Second).String()
}

func rate(n int64, d time.Duration) int64 {
	if d <= 0 {
		return 0
	}
	return int64(float64(n) / d.Seconds())
}

// progressID names a layer's line: its blob's short digest, as docker load
// prints it, or "tarball" for an import, whose blob has no digest until read.
func progressID(ev layerstore.Progress) string {
	if ev.Digest.Validate() != nil {
		return "tarball"
	}
	id := ev.Digest.Encoded()
	if len(id) > 12 {
		id = id[:12]
	}
	return id
}
