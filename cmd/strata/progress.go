package main

import (
	"fmt"
	"io"
	"os"
	"sync"
	"time"

	"github.com/strata-dev/strata/layerstore"
	"golang.org/x/term"
)

// progressBar draws one line per layer on a terminal, docker-load style.
// Off a terminal or with quiet it draws nothing.
type progressBar struct {
	w        io.Writer
	mu       sync.Mutex
	on       bool
	layers   map[int]layerstore.Progress
	order    []int
	drawn    int // lines drawn last time
	lastDraw time.Time
}

func newProgressBar(w io.Writer, quiet bool) *progressBar {
	f, ok := w.(*os.File)
	return &progressBar{w: w, on: !quiet && ok && term.IsTerminal(int(f.Fd())), layers: map[int]layerstore.Progress{}}
}

func (p *progressBar) update(ev layerstore.Progress) {
	if !p.on {
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if _, ok := p.layers[ev.Layer]; !ok {
		p.order = append(p.order, ev.Layer)
	}
	p.layers[ev.Layer] = ev
	if !ev.Finished && time.Since(p.lastDraw) < 100*time.Millisecond {
		return
	}
	p.draw()
}

func (p *progressBar) draw() {
	p.lastDraw = time.Now()
	if p.drawn > 0 {
		fmt.Fprintf(p.w, "\x1b[%dA", p.drawn)
	}
	for _, i := range p.order {
		ev := p.layers[i]
		id := progressID(ev)
		var line string
		switch {
		case ev.Skipped:
			line = fmt.Sprintf("%s: Already exists", id)
		case ev.Finished:
			line = fmt.Sprintf("%s: Loading layer %s done", id, humanSize(ev.Done, 3))
		case ev.Total > 0:
			const width = 40
			n := int(ev.Done * width / ev.Total)
			if n > width {
				n = width
			}
			bar := make([]byte, width)
			for j := range bar {
				switch {
				case j < n:
					bar[j] = '='
				case j == n:
					bar[j] = '>'
				default:
					bar[j] = ' '
				}
			}
			line = fmt.Sprintf("%s: Loading layer [%s] %s/%s", id, bar, humanSize(ev.Done, 3), humanSize(ev.Total, 3))
		default:
			line = fmt.Sprintf("%s: Loading layer %s", id, humanSize(ev.Done, 3))
		}
		fmt.Fprintf(p.w, "\x1b[2K%s\n", line)
	}
	p.drawn = len(p.order)
}

// finish draws the final state.
func (p *progressBar) finish() {
	if !p.on {
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if len(p.order) > 0 {
		p.draw()
	}
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
